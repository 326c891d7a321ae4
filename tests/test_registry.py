from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric.errors import RegistryError
from fabric.registry import Address, Lineage, Registry

LINEAGE = Lineage(
    dataset_fingerprint="sha256:abc", spec_hash="1234", code_version="deadbeef", study="fraud-1", trial=3,
    parent=None, stack="dev", family="lightgbm",
)  # fmt: skip


def _register(registry: Registry, name: str = "fraud", **kwargs: object):  # noqa: ANN202
    with registry.stage() as staged:
        (staged / "model.onnx").write_bytes(b"onnx-bytes")
        (staged / "schema.json").write_text(json.dumps({"features": []}))
        return registry.register(name, staged, kwargs.pop("lineage", LINEAGE), {"test": {"roc_auc": 0.8}}, {"p99_ms": 0.01}, **kwargs)


def test_versions_aliases_and_addresses(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = _register(registry), _register(registry)
    assert (first.version, second.version) == (1, 2)
    assert registry.get("fraud").version == 2  # latest
    assert registry.get("fraud:1").artifact("model.onnx").read_bytes() == b"onnx-bytes"
    assert registry.get("fraud@candidate").version == 2
    registry.set_alias("fraud:1", "champion")
    assert registry.get("fraud@champion").version == 1
    assert registry.get("fraud:1").aliases == ("champion",)
    assert [v.address for v in registry.list("fraud")] == ["fraud:1", "fraud:2"]


def test_rollback_restores_the_previous_target(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for _ in range(3):
        _register(registry)
    registry.set_alias("fraud:1", "champion")
    registry.set_alias("fraud:3", "champion")
    before, now = registry.rollback("fraud", "champion")
    assert (before, now.version) == (3, 1)
    _, explicit = registry.rollback("fraud", "champion", to=2)
    assert explicit.version == 2
    with pytest.raises(RegistryError, match="fraud:9 does not exist"):
        registry.rollback("fraud", "champion", to=9)
    kinds = [e["kind"] for e in registry.events("fraud")]
    assert kinds.count("alias") == 3 + 2 + 2  # 3 candidate moves, 2 sets, 2 rollbacks


def test_failed_registration_leaves_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _register(registry)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), registry.stage() as staged:
        (staged / "model.onnx").write_bytes(b"half")
        raise Boom()
    with pytest.raises(RegistryError, match="pickle-like"), registry.stage() as staged:
        (staged / "model.onnx").write_bytes(b"x")
        (staged / "model.pkl").write_bytes(b"x")
        registry.register("fraud", staged, LINEAGE, {}, {})
    assert [v.version for v in registry.list()] == [1]
    assert sorted(p.name for p in (tmp_path / "artifacts/fraud").iterdir()) == ["1"]
    assert list((tmp_path / ".staging").iterdir()) == []


def test_orphaned_artifacts_from_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _register(registry)
    orphan = tmp_path / "artifacts/fraud/2"  # moved into place, then the process died before COMMIT
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"x")
    Registry(tmp_path)
    assert not orphan.exists()
    assert _register(Registry(tmp_path)).version == 2


def test_lineage_chain_and_approvals(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _register(registry)
    child = _register(registry, lineage=Lineage(**{**LINEAGE.__dict__, "parent": "fraud:1"}))
    assert [v.address for v in registry.lineage_chain(child.address)] == ["fraud:2", "fraud:1"]
    approved = registry.approve("fraud:2", by="risk-team")
    assert approved.lineage.approvals[0]["by"] == "risk-team"
    assert LINEAGE.missing() == []
    assert Lineage(**{**LINEAGE.__dict__, "study": None, "code_version": "unknown"}).missing() == ["code_version", "study"]


@pytest.mark.parametrize("text", ["Fraud", "fraud:x", "fraud@", "fraud:1@champion", ""])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(RegistryError, match="not valid; write name, name:version or name@alias"):
        Address.parse(text)


def test_reserved_aliases_are_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _register(registry)
    for alias in ("latest", "7"):
        with pytest.raises(RegistryError, match="reserved or invalid"):
            registry.set_alias("fraud:1", alias)
    with pytest.raises(RegistryError, match="alias 'champion' is not set"):
        registry.get("fraud@champion")

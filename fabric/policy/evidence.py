"""Evidence of a pinned model version that travels with the repository.

`fabric policy check` needs facts about the model a stack pins (measured p99, lineage, approvals,
artifact digests). They live in the stack's registry under $FABRIC_HOME, which a pull request's CI
runner does not have. So `fabric promote` also writes them, for exactly the version it pins, to
`stacks/evidence/<stack>/<name>-<version>.json`: committed next to the stack file, reviewed in the
same pull request as the one-line pin, and read by the check when the registry lacks the version.

A record is only evidence for the pin it names: its `stack` and `address` must be the pinned ones,
and where the registry has the version too, its artifact digests must match the registry's bytes
(the same address in another FABRIC_HOME may be another model).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabric.errors import FabricError
from fabric.registry import Address, Lineage, ModelVersion, Registry

FORMAT = 1
EVIDENCE_DIR = Path("stacks") / "evidence"


class EvidenceError(FabricError):
    """An evidence file that is unreadable or is not for the version it would vouch for."""


def evidence_path(root: Path, stack: str, address: str) -> Path:
    parsed = Address.parse(address)
    if parsed.version is None:
        raise EvidenceError(f"{address}: evidence is kept per version; pin name:version (e.g. {parsed.name}:3)")
    return root / EVIDENCE_DIR / stack / f"{parsed.name}-{parsed.version}.json"


def relative(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file in a version's folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def record(stack: str, version: ModelVersion, sha256: dict[str, str], promotion: dict[str, Any]) -> dict[str, Any]:
    """The committed evidence of `version` as registered in `stack` (promotion calls this)."""
    return {
        "format": FORMAT,
        "stack": stack,
        "address": version.address,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "lineage": asdict(version.lineage),
        "metrics": version.metrics,
        "latency": version.latency,
        "artifacts": {name: {**meta, "sha256": sha256[name]} for name, meta in version.artifacts.items()},
        "promotion": promotion,
    }


def render(data: dict[str, Any]) -> str:
    # sorted, indented, newline-terminated: a diff a reviewer can read
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def load(root: Path, stack: str, address: str) -> ModelVersion | None:
    """The version that `stacks/evidence/<stack>/<name>-<version>.json` describes, None without a file."""
    path = evidence_path(root, stack, address)
    if not path.exists():
        return None
    where = relative(root, path)
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise EvidenceError(f"{where}: format={raw.get('format')!r} is not {FORMAT}")
        if raw.get("stack") != stack or raw.get("address") != address:
            raise EvidenceError(
                f"{where}: is evidence for {raw.get('stack')}/{raw.get('address')}, not the pinned {stack}/{address}"
            )
        name, version = address.split(":")
        return ModelVersion(
            name=name,
            version=int(version),
            created_at=str(raw["created_at"]),
            created_by=str(raw["created_by"]),
            lineage=Lineage.from_dict(raw["lineage"]),
            metrics=dict(raw["metrics"]),
            latency=dict(raw["latency"]),
            artifacts={str(k): dict(v) for k, v in raw["artifacts"].items()},
            path=path,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise EvidenceError(f"{where}: not a valid evidence record ({type(error).__name__}: {error})") from None


def refresh(root: Path, stack: str, version: ModelVersion) -> Path | None:
    """Rewrite the committed evidence of `version` with its current approvals and lineage (after
    `fabric models approve` in the target stack), so CI keeps the registry's verdict. Only a file
    that is for this very version (same stack, address and bytes) is touched."""
    try:
        committed = load(root, stack, version.address)
    except FabricError:
        return None
    if committed is None or mismatch(committed, version):
        return None
    path = evidence_path(root, stack, version.address)
    raw = json.loads(path.read_text())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render({**raw, "lineage": asdict(version.lineage)}))
    os.replace(tmp, path)
    return path


def mismatch(evidence: ModelVersion, registered: ModelVersion) -> list[str]:
    """Artifacts whose bytes in the registry differ from the evidence's digests (or are missing)."""
    actual = digests(registered.path) if registered.path.is_dir() else {}
    wanted = {name: meta.get("sha256") for name, meta in evidence.artifacts.items()}
    return sorted(name for name in set(wanted) | set(actual) if wanted.get(name) != actual.get(name))


@dataclass
class PinnedEvidence:
    """What the check knows about each endpoint's pinned version, and from where."""

    pinned: dict[str, ModelVersion | None]
    sources: dict[str, str]  # endpoint -> "registry" or the evidence file
    problems: dict[str, str]  # endpoint -> why the evidence cannot be trusted or is absent


def gather(stack: str, endpoints: dict[str, str | None], registry: Registry, root: Path) -> PinnedEvidence:
    """The registry first, then the committed evidence file, for each endpoint's pinned address."""
    out = PinnedEvidence({}, {}, {})
    home = os.environ.get("FABRIC_HOME") or "./.fabric"
    for endpoint, address in endpoints.items():
        if address is None:
            continue
        try:
            registered = registry.find(address)
        except FabricError:
            registered = None
        try:
            committed = load(root, stack, address)
        except FabricError as error:
            out.pinned[endpoint], out.problems[endpoint] = registered, str(error)
            continue
        out.pinned[endpoint] = registered or committed
        if registered is not None:
            out.sources[endpoint] = "registry"
            differ = mismatch(committed, registered) if committed is not None else []
            if differ:
                where = relative(root, evidence_path(root, stack, address))
                out.problems[endpoint] = (
                    f"{where} does not describe the {stack} registry's {address} (artifacts {differ} differ): "
                    f"the registry under {home} holds another {address}"
                )
        elif committed is not None:
            out.sources[endpoint] = relative(root, committed.path)
        else:
            try:
                where = relative(root, evidence_path(root, stack, address))
            except FabricError as error:
                out.problems[endpoint] = f"pinned model {address} is not in the {stack} registry ({home}); {error}"
                continue
            out.problems[endpoint] = f"pinned model {address} is not in the {stack} registry ({home}) and {where} does not exist"
    return out

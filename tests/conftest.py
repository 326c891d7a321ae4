from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FABRIC_HOME, and the project's stacks as the project root."""
    folder = tmp_path / "home"
    monkeypatch.setenv("FABRIC_HOME", str(folder))
    monkeypatch.setenv("FABRIC_PROJECT_ROOT", str(ROOT))
    return folder


def write_spec(folder: Path, **overrides: object) -> Path:
    """A small, fast fraud spec (3,000 rows, a few seconds of search) with `overrides` merged in."""
    spec: dict = {
        "name": "fraud",
        "data": {"source": "builtin:fraud", "target": "is_fraud", "time_column": "event_time",
                 "id_column": "transaction_id", "rows": 4000},
        "task": "binary",
        "metric": "roc_auc",
        "search": {"budget_s": 4, "families": ["lightgbm"]},
        "latency_budget": {"p99_ms": 5.0},
    }  # fmt: skip
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def fabric_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("fabric", path=str(Path(sys.executable).parent)) or "fabric"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def moto_url():  # noqa: ANN201 - Iterator[str]
    """moto in server mode on a free loopback port: a real AWS API emulator, never a fake of boto3."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()

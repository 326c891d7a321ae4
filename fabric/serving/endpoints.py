"""Local endpoints: one model-server process per endpoint, its state in
`$FABRIC_HOME/<stack>/endpoints/<name>/state.json` (port, pid, versions, history) and its capture
beside it. The process is started by the project itself and controlled over loopback admin routes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fabric.errors import FabricError
from fabric.registry import now

START_TIMEOUT_S = 30.0


@dataclass
class EndpointState:
    name: str
    stack: str
    port: int
    pid: int
    champion: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Endpoints:
    def __init__(self, home: Path, stack: str) -> None:
        self.root, self.stack = home / "endpoints", stack

    def folder(self, name: str) -> Path:
        return self.root / name

    def capture_dir(self, name: str) -> Path:
        return self.folder(name) / "capture"

    def load(self, name: str) -> EndpointState | None:
        path = self.folder(name) / "state.json"
        return EndpointState(**json.loads(path.read_text())) if path.is_file() else None

    def get(self, name: str) -> EndpointState:
        state = self.load(name)
        if state is None:
            known = self.names()
            raise FabricError(f"endpoint {name!r} does not exist in stack {self.stack}; known: {known or 'none'} (deploy one with `fabric deploy`)")
        return state

    def save(self, state: EndpointState) -> None:
        folder = self.folder(state.name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, folder / "state.json")

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/state.json")) if self.root.is_dir() else []

    def alive(self, state: EndpointState) -> bool:
        if state.pid <= 0:
            return False
        try:
            os.kill(state.pid, 0)
        except OSError:
            return False
        return self.ping(state) is not None

    def ping(self, state: EndpointState) -> dict[str, Any] | None:
        import httpx

        try:
            response = httpx.get(f"{state.url}/ping", timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def start(self, name: str, model_dir: Path, version: str, capture_rate: float, max_body_bytes: int) -> EndpointState:
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        log = open(folder / "server.log", "ab")  # noqa: SIM115 - handed to the child process
        command = [sys.executable, "-m", "fabric.serving", "serve", "--model-dir", str(model_dir), "--version", version,
                   "--port", str(port), "--capture-dir", str(self.capture_dir(name)),
                   "--capture-rate", str(capture_rate), "--max-body-bytes", str(max_body_bytes), "--stack", self.stack]  # fmt: skip
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        state = EndpointState(name=name, stack=self.stack, port=port, pid=process.pid, champion=version)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.ping(state) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (folder / "server.log").read_text(errors="replace")[-400:]
                raise FabricError(f"endpoint {name}: the server did not become healthy ({tail.strip()})")
            time.sleep(0.05)
        self.save(state)
        return state

    def admin(self, state: EndpointState, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        try:
            if payload is None and action == "state":
                response = httpx.get(f"{state.url}/admin/state", timeout=10.0)
            else:
                response = httpx.post(f"{state.url}/admin/{action}", json=payload or {}, timeout=60.0)
        except httpx.HTTPError as exc:
            raise FabricError(f"endpoint {state.name} at {state.url} does not answer ({exc}); `fabric endpoints status {state.name}`") from None
        if response.status_code != 200:
            raise FabricError(f"endpoint {state.name}: {action} refused: {response.json().get('error')}")
        return response.json()

    def record(self, state: EndpointState, event: str, **details: Any) -> None:
        state.history.append({"at": now(), "event": event, **details})
        self.save(state)

    def stop(self, name: str) -> EndpointState:
        state = self.get(name)
        if state.pid > 0:
            _terminate(state.pid)
        state.pid = 0
        self.record(state, "stopped")
        return state


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _reaped(pid):
                return
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        _reaped(pid)
    except OSError:
        pass  # already gone


def _reaped(pid: int) -> bool:
    """True once a child of this process has exited (reaping it); False for other processes."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

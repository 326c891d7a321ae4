"""A real PostgreSQL server for tests, started in a temporary folder on a free loopback port.

PostgreSQL refuses to run as root, so under root (CI containers) the server runs as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_CANDIDATES = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in BIN_CANDIDATES if (d / name).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package (apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(folder: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    os.chown(folder, 65534, 65534)
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh database; stop the server and remove its files after.

    The folder is a fresh one under /tmp (not pytest's tmp_path, whose parents `nobody` cannot enter)."""
    folder = Path(tempfile.mkdtemp(prefix="fabric-pg-"))
    prefix = _as_server_user(folder)
    data = folder / "data"
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync=off"
    try:
        _run([*prefix, _binary("initdb"), "-D", str(data), "-U", "fabric", "--auth=trust", "-E", "UTF8"])
        _run([*prefix, _binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"])
        try:
            url = f"postgresql+psycopg2://fabric@127.0.0.1:{port}/postgres"
            _wait_ready(url)
            yield url
        finally:
            subprocess.run([*prefix, _binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(url: str, timeout_s: float = 20.0) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with engine.connect():
                return
        except sqlalchemy.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            engine.dispose()

"""The local model registry: immutable versions with lineage, aliases, rollback, events.

One SQLite file and one artifact folder per stack (`$FABRIC_HOME/<stack>/registry`). Addresses
follow MLflow's vocabulary: `fraud` (latest version), `fraud:3` (a version), `fraud@champion`
(an alias). Aliases are pointers with a history, so `rollback` can restore any earlier target.

Registration is atomic: artifacts are written to a staging folder first, moved into place and
recorded in one transaction; a crash between the two leaves an orphan folder that the next open
removes, never a half-written version. Artifacts are ONNX and JSON/Markdown/HTML, never pickle.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric.errors import RegistryError

ALIASES = ("candidate", "challenger", "champion", "archived")
RESERVED = ("latest",)
FORBIDDEN_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth")
_ADDRESS = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)(?::(?P<version>[0-9]+)|@(?P<alias>[a-z][a-z0-9_-]*))?$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    lineage TEXT NOT NULL, metrics TEXT NOT NULL, latency TEXT NOT NULL, artifacts TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, version INTEGER, kind TEXT NOT NULL,
    at TEXT NOT NULL, actor TEXT NOT NULL, payload TEXT NOT NULL);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def actor() -> str:
    return os.environ.get("FABRIC_ACTOR") or getpass.getuser()


@dataclass(frozen=True)
class Lineage:
    """Where a version came from. Required for every version; promotion copies it whole."""

    dataset_fingerprint: str
    spec_hash: str
    code_version: str
    study: str | None
    trial: int | None
    parent: str | None  # address of the version this one replaces or was copied from
    stack: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    training_rows: int | None = None
    source: str = ""  # the data source
    approvals: tuple[dict[str, str], ...] = ()
    promoted_from: str | None = None  # e.g. "staging/fraud:4"
    precision: str = "fp32"  # of the served model.onnx (quantization's choice)
    # trained on feature tables: training_set_fingerprint, events_fingerprint, tables (name -> version
    # and definition hash), rows and rejected_rows of the point-in-time join
    features: dict[str, Any] = field(default_factory=dict)

    def missing(self) -> list[str]:
        """Fields a complete lineage must have (the policy rule reads this)."""
        required = {
            "dataset_fingerprint": self.dataset_fingerprint,
            "spec_hash": self.spec_hash,
            "code_version": self.code_version,
            "study": self.study,
            "trial": self.trial,
        }
        return [k for k, v in required.items() if v in (None, "", "unknown")]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Lineage:
        raw = dict(raw)
        raw["approvals"] = tuple(raw.get("approvals", ()))
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    created_at: str
    created_by: str
    lineage: Lineage
    metrics: dict[str, Any]
    latency: dict[str, Any]
    artifacts: dict[str, dict[str, Any]]  # file name -> {bytes, sha256?, precision?}
    path: Path
    aliases: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.name}:{self.version}"

    def artifact(self, file_name: str) -> Path:
        if file_name not in self.artifacts:
            raise RegistryError(f"{self.address} has no artifact {file_name!r}; it has {sorted(self.artifacts)}")
        return self.path / file_name

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["address"] = self.address
        return out


@dataclass(frozen=True)
class Address:
    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        match = _ADDRESS.match(text.strip())
        if not match:
            raise RegistryError(f"model address {text!r} is not valid; write name, name:version or name@alias (e.g. fraud@champion)")
        version = match["version"]
        return cls(match["name"], int(version) if version else None, match["alias"])

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def code_version() -> str:
    """The git commit of the project (with `-dirty` if the tree has changes), else the package version."""
    import subprocess

    from fabric import __version__

    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"mlfabric-{__version__}"


class Registry:
    """One stack's registry. Safe for several processes: writes take SQLite's write lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.artifacts = self.root / "artifacts"
        self.staging = self.root / ".staging"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._clean_orphans()

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "registry.db", timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _clean_orphans(self) -> None:
        """Remove artifact folders without a version row (a crash between move and commit).

        Under the write lock: another process's `register` moves its folder in before it commits the
        row, and a cleaner that read the rows without the lock would delete that folder."""
        with self._write() as db:
            known = {(r["name"], r["version"]) for r in db.execute("SELECT name, version FROM versions")}
            for model_dir in self.artifacts.iterdir():
                for version_dir in model_dir.iterdir() if model_dir.is_dir() else []:
                    if version_dir.name.isdigit() and (model_dir.name, int(version_dir.name)) not in known:
                        shutil.rmtree(version_dir, ignore_errors=True)

    @contextmanager
    def stage(self) -> Iterator[Path]:
        """A private folder to write a version's artifacts into before `register` moves it."""
        folder = self.staging / uuid.uuid4().hex
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- writes -----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        staged: Path,
        lineage: Lineage,
        metrics: dict[str, Any],
        latency: dict[str, Any],
        alias: str | None = "candidate",
    ) -> ModelVersion:
        Address.parse(name)
        files = sorted(p for p in staged.iterdir() if p.is_file())
        if not any(p.suffix == ".onnx" for p in files):
            raise RegistryError(f"{name}: a version needs at least one .onnx artifact")
        for p in files:
            if p.suffix.lower() in FORBIDDEN_SUFFIXES:
                raise RegistryError(f"{name}: artifact {p.name} is a pickle-like format; export to ONNX instead")
        # the digest is what promotion checks the bytes against, at the source and after the copy
        artifacts = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files}
        with self._write() as db:
            row = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()
            version = (row[0] or 0) + 1
            final = self.artifacts / name / str(version)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # an orphan from a crash in another process
                shutil.rmtree(final)
            os.replace(staged, final)
            try:
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, version, now(), actor(), json.dumps(asdict(lineage)), json.dumps(metrics),
                     json.dumps(latency), json.dumps(artifacts)),
                )  # fmt: skip
                self._event(db, name, version, "registered", {"lineage": asdict(lineage)})
                if alias:
                    self._set_alias(db, name, alias, version, "registered")
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
        return self.get(f"{name}:{version}")

    def _event(self, db: sqlite3.Connection, name: str, version: int | None, kind: str, payload: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO events (name, version, kind, at, actor, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (name, version, kind, now(), actor(), json.dumps(payload, default=str)),
        )

    def _set_alias(self, db: sqlite3.Connection, name: str, alias: str, version: int, reason: str) -> int | None:
        previous = db.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        db.execute(
            "INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT(name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (name, alias, version, now()),
        )
        before = previous["version"] if previous else None
        self._event(db, name, version, "alias", {"alias": alias, "from": before, "to": version, "reason": reason})
        return before

    @staticmethod
    def check_alias(alias: str) -> None:
        if alias in RESERVED or alias.isdigit() or not re.match(r"^[a-z][a-z0-9_-]*$", alias):
            raise RegistryError(f"alias {alias!r} is reserved or invalid; use e.g. {list(ALIASES)}")

    def set_alias(self, address: str, alias: str, reason: str = "") -> ModelVersion:
        self.check_alias(alias)
        target = self.get(address)
        with self._write() as db:
            self._set_alias(db, target.name, alias, target.version, reason or "set")
        return self.get(f"{target.name}:{target.version}")

    def rollback(self, name: str, alias: str = "champion", to: int | None = None) -> tuple[int | None, ModelVersion]:
        """Point `alias` back at `to`, or at the version it pointed to before its last change."""
        Address.parse(name)
        with self._write() as db:
            current = db.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
            if current is None:
                raise RegistryError(f"{name}@{alias} is not set; nothing to roll back")
            if to is None:
                history = db.execute(
                    "SELECT payload FROM events WHERE name = ? AND kind = 'alias' ORDER BY id DESC", (name,)
                ).fetchall()
                targets = [json.loads(r["payload"]) for r in history]
                previous = [t["from"] for t in targets if t["alias"] == alias and t["from"] not in (None, current["version"])]
                if not previous:
                    raise RegistryError(f"{name}@{alias} has no earlier version to roll back to; pass --to VERSION")
                to = previous[0]
            exists = db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, to)).fetchone()
            if not exists:
                raise RegistryError(f"{name}:{to} does not exist; see `fabric models list {name}`")
            self._set_alias(db, name, alias, to, "rollback")
        return current["version"], self.get(f"{name}:{to}")

    def withdraw(self, address: str) -> None:
        """Undo the registration of a version that a promotion could not complete: its row, events and
        folder go, and an alias it took points back where it pointed before (or is removed), as if
        the version had never been copied. Only promotion calls this, before anything served it."""
        target = self.get(address)
        with self._write() as db:
            for alias in target.aliases:
                history = db.execute(
                    "SELECT payload FROM events WHERE name = ? AND version = ? AND kind = 'alias' ORDER BY id DESC",
                    (target.name, target.version),
                ).fetchall()
                before = next((json.loads(r["payload"])["from"] for r in history if json.loads(r["payload"])["alias"] == alias), None)
                if before is None:
                    db.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (target.name, alias))
                else:
                    db.execute("UPDATE aliases SET version = ? WHERE name = ? AND alias = ?", (before, target.name, alias))
            for table in ("versions", "events"):
                db.execute(f"DELETE FROM {table} WHERE name = ? AND version = ?", (target.name, target.version))  # noqa: S608
        shutil.rmtree(target.path, ignore_errors=True)

    def add_event(self, address: str, kind: str, payload: dict[str, Any]) -> None:
        target = self.get(address)
        with self._write() as db:
            self._event(db, target.name, target.version, kind, payload)

    def approve(self, address: str, by: str, note: str = "") -> ModelVersion:
        target = self.get(address)
        self.add_event(target.address, "approval", {"by": by, "note": note})
        return self.get(target.address)

    # -- reads ------------------------------------------------------------------------------
    def _row_to_version(self, db: sqlite3.Connection, row: sqlite3.Row) -> ModelVersion:
        aliases = tuple(
            r["alias"]
            for r in db.execute(
                "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", (row["name"], row["version"])
            )
        )
        lineage = json.loads(row["lineage"])
        approvals = [
            {"by": json.loads(r["payload"]).get("by", r["actor"]), "at": r["at"]}
            for r in db.execute(
                "SELECT actor, at, payload FROM events WHERE name = ? AND version = ? AND kind = 'approval' ORDER BY id",
                (row["name"], row["version"]),
            )
        ]
        lineage["approvals"] = [*lineage.get("approvals", []), *approvals]
        return ModelVersion(
            name=row["name"],
            version=row["version"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            lineage=Lineage.from_dict(lineage),
            metrics=json.loads(row["metrics"]),
            latency=json.loads(row["latency"]),
            artifacts=json.loads(row["artifacts"]),
            path=self.artifacts / row["name"] / str(row["version"]),
            aliases=aliases,
        )

    def get(self, address: str) -> ModelVersion:
        parsed = Address.parse(address)
        with self._connect() as db:
            if parsed.alias:
                ref = db.execute(
                    "SELECT version FROM aliases WHERE name = ? AND alias = ?", (parsed.name, parsed.alias)
                ).fetchone()
                if ref is None:
                    raise RegistryError(f"{address}: alias {parsed.alias!r} is not set for {parsed.name}; see `fabric models show {parsed.name}`")
                version = ref["version"]
            elif parsed.version is not None:
                version = parsed.version
            else:
                latest = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", (parsed.name,)).fetchone()
                version = latest[0]
            row = db.execute("SELECT * FROM versions WHERE name = ? AND version = ?", (parsed.name, version)).fetchone()
            if row is None:
                names = [r[0] for r in db.execute("SELECT DISTINCT name FROM versions ORDER BY name")]
                raise RegistryError(f"{address}: no such model version in {self.root}; registered models: {names or 'none'}")
            return self._row_to_version(db, row)

    def find(self, address: str) -> ModelVersion | None:
        """`get`, or None where the address names nothing (yet)."""
        try:
            return self.get(address)
        except RegistryError:
            return None

    def list(self, name: str | None = None) -> list[ModelVersion]:
        with self._connect() as db:
            query, args = "SELECT * FROM versions ORDER BY name, version", ()
            if name:
                query, args = "SELECT * FROM versions WHERE name = ? ORDER BY version", (name,)
            return [self._row_to_version(db, r) for r in db.execute(query, args)]

    def events(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        with self._connect() as db:
            query, args = "SELECT * FROM events WHERE name = ? ORDER BY id", (name,)
            if version is not None:
                query, args = "SELECT * FROM events WHERE name = ? AND version = ? ORDER BY id", (name, version)
            return [
                {"id": r["id"], "version": r["version"], "kind": r["kind"], "at": r["at"], "actor": r["actor"], **json.loads(r["payload"])}
                for r in db.execute(query, args)
            ]

    def lineage_chain(self, address: str) -> list[ModelVersion]:
        """The version and its ancestors through `parent`, within this registry."""
        chain = [self.get(address)]
        seen = {chain[0].address}
        while chain[-1].lineage.parent:
            parent = chain[-1].lineage.parent
            try:
                version = self.get(parent)
            except RegistryError:
                break
            if version.address in seen:
                break
            seen.add(version.address)
            chain.append(version)
        return chain


def fabric_home() -> Path:
    return Path(os.environ.get("FABRIC_HOME") or Path.cwd() / ".fabric").resolve()


def open_registry(stack: str) -> Registry:
    return Registry(fabric_home() / stack / "registry")

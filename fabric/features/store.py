"""A stack's feature store: the catalog of applied definitions, the offline tables and the online
store, under `$FABRIC_HOME/<stack>/features/`:

    catalog.db                    (table, version) -> definition hash, applied once, never changed
    offline/<table>/v<N>.parquet  the computed table, sorted by time, with what it was computed from
    online.db                     the embedded online store (unless another online URL is given)

Tables are computed once per (definition, source) and reused by every training set, skew check and
materialisation until the source changes; `refresh=True` recomputes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fabric.errors import SpecError
from fabric.features.definitions import FeatureSet, FeatureTable, load_feature_set
from fabric.features.offline import JoinResult, Rejected, TableFrame, compute_table, point_in_time_join
from fabric.features.online import OnlineStore
from fabric.features.values import ns_to_text
from fabric.spec import DataSpec, PipelineSpec

_CATALOG = """
CREATE TABLE IF NOT EXISTS definitions (
    name TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, definition TEXT NOT NULL,
    origin TEXT NOT NULL, applied_at TEXT NOT NULL, applied_by TEXT NOT NULL, PRIMARY KEY (name, version));
"""
ONLINE_URL_ENV = "FABRIC_FEATURES_ONLINE_URL"


@dataclass(frozen=True)
class Applied:
    table: str
    version: int
    hash: str
    status: str  # created | unchanged


@dataclass
class Materialized:
    table: str
    version: int
    offline_rows: int
    online_rows: int
    computed: bool  # False: the offline table was reused
    rejected: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    end: str | None = None


@dataclass
class TrainingSet:
    frame: pd.DataFrame
    fingerprint: str
    rejected: Rejected
    lineage: dict[str, Any]


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class FeatureStore:
    def __init__(self, root: Path, online: OnlineStore | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._online = online
        with self._catalog() as db:
            db.executescript(_CATALOG)

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            from fabric.features.online import open_online_store

            self._online = open_online_store(os.environ.get(ONLINE_URL_ENV) or f"sqlite:///{self.root / 'online.db'}")
        return self._online

    @contextmanager
    def _catalog(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "catalog.db", timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    # -- definitions ------------------------------------------------------------------------
    def apply(self, features: FeatureSet) -> list[Applied]:
        """Record each table's definition; refuse, all or nothing, one that changed under its version."""
        from fabric.registry import actor, now

        with self._catalog() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                results = []
                for table in features.tables:
                    digest = table.definition_hash()
                    row = db.execute(
                        "SELECT hash, definition, applied_at FROM definitions WHERE name = ? AND version = ?",
                        (table.name, table.version),
                    ).fetchone()
                    if row is None:
                        db.execute(
                            "INSERT INTO definitions VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (table.name, table.version, digest, json.dumps(table.definition()), features.origin, now(), actor()),
                        )
                        results.append(Applied(table.name, table.version, digest, "created"))
                    elif row[0] == digest:
                        results.append(Applied(table.name, table.version, digest, "unchanged"))
                    else:
                        latest = db.execute("SELECT MAX(version) FROM definitions WHERE name = ?", (table.name,)).fetchone()[0]
                        changed = _diff(json.loads(row[1]), table.definition())
                        raise SpecError(
                            f"{features.origin}: feature table {table.name} version {table.version} changed since it was "
                            f"applied on {row[2]} ({', '.join(changed)} differ; {row[0]} -> {digest}); a changed "
                            f"definition needs a new version: set version: {latest + 1}, or restore the definition"
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return results

    def definitions(self) -> list[dict[str, Any]]:
        with self._catalog() as db:
            rows = db.execute("SELECT name, version, hash, origin, applied_at, applied_by FROM definitions ORDER BY name, version")
            keys = ("name", "version", "hash", "origin", "applied_at", "applied_by")
            return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- offline ----------------------------------------------------------------------------
    def _offline_path(self, table: FeatureTable) -> Path:
        return self.root / "offline" / table.name / f"v{table.version}.parquet"

    def offline_table(
        self, table: FeatureTable, data: DataSpec, data_frame: pd.DataFrame | None = None, refresh: bool = False
    ) -> tuple[TableFrame, bool]:
        """The computed table (and whether it was computed now rather than read back)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self._offline_path(table)
        if table.source == "data" and data_frame is None:
            data_frame = _load_data(data)
        identity = source_identity(table, data, data_frame)
        if path.is_file() and not refresh:
            meta = pq.read_schema(path).metadata or {}
            stored = json.loads(meta.get(b"fabric", b"{}"))
            if stored.get("definition_hash") == table.definition_hash() and stored.get("source") == identity:
                frame = TableFrame.from_frame(table, pd.read_parquet(path))
                frame.rejected = Rejected(stored.get("rejected", {}))
                frame.duplicates = stored.get("duplicates", 0)
                return frame, False
        source = load_source(table, data, data_frame)
        computed = compute_table(table, source)
        arrow = pa.Table.from_pandas(computed.to_frame(), preserve_index=False)
        info = {
            "definition_hash": table.definition_hash(),
            "source": identity,
            "rows": len(computed),
            "rejected": computed.rejected.rows,
            "duplicates": computed.duplicates,
        }
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), b"fabric": json.dumps(info).encode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".parquet.partial")
        pq.write_table(arrow, partial)
        os.replace(partial, path)  # readers never see half a file
        return computed, True

    def training_set(
        self, features: FeatureSet, data: DataSpec, events: pd.DataFrame, refresh: bool = False
    ) -> TrainingSet:
        """Apply the definitions, then join every table to `events` as of each event's time."""
        self.apply(features)
        tables = [self.offline_table(t, data, events, refresh)[0] for t in features.tables]
        joined = join(features, data, events, tables)
        return training_set(features, events, joined)

    # -- online -----------------------------------------------------------------------------
    def materialize(
        self, features: FeatureSet, data: DataSpec, end: int | None = None, refresh: bool = False
    ) -> list[Materialized]:
        """Compute (or reuse) each table offline, then write its latest rows as of `end` online."""
        self.apply(features)
        report = []
        data_frame = None
        for table in features.tables:
            if table.source == "data" and data_frame is None:
                data_frame = _load_data(data)
            frame, computed = self.offline_table(table, data, data_frame, refresh)
            latest = frame.latest(end)
            self.online.write(table, latest.keys, latest.times, latest.values, end)
            report.append(
                Materialized(table.name, table.version, len(frame), len(latest), computed, frame.rejected.summary(),
                             frame.duplicates, None if end is None else ns_to_text(end))  # fmt: skip
            )
        return report


def join(features: FeatureSet, data: DataSpec, events: pd.DataFrame, tables: Sequence[TableFrame]) -> JoinResult:
    if data.time_column is None:
        raise SpecError("data.time_column is not set; the point-in-time join of features: needs the events' time column")
    return point_in_time_join(events, features.entity, data.time_column, tables, where=f"data.source={data.source}")


def training_set(features: FeatureSet, events: pd.DataFrame, joined: JoinResult) -> TrainingSet:
    from fabric.data.dataset import fingerprint

    digest = fingerprint(joined.frame)
    lineage = {
        "training_set_fingerprint": digest,
        "events_fingerprint": fingerprint(events),
        "entity": features.entity,
        "tables": features.versions(),
        "rows": joined.rows,
        "rejected_rows": joined.rejected.count,
    }
    return TrainingSet(frame=joined.frame, fingerprint=digest, rejected=joined.rejected, lineage=lineage)


def _load_data(data: DataSpec) -> pd.DataFrame:
    from fabric.data.sources import load_frame

    return load_frame(data)


def load_source(table: FeatureTable, data: DataSpec, data_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """A table's source rows: the spec's own data (`data`) or another source, read the same way."""
    if table.source == "data":
        return data_frame if data_frame is not None else _load_data(data)
    return _load_data(data.model_copy(update={"source": table.source}))


def source_identity(table: FeatureTable, data: DataSpec, data_frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """What a computed table was computed from: for the spec's own data, the rows themselves (a
    retrain on fresh rows must not reuse tables computed from older ones); else a builtin source's
    parameters, or a file's size and modification time."""
    if table.source == "data" and data_frame is not None:
        from fabric.data.dataset import fingerprint

        return {"source": "data", "rows": fingerprint(data_frame)}
    source = data.source if table.source == "data" else table.source
    identity: dict[str, Any] = {"source": source}
    if ":" in source.split("/")[0]:
        identity.update(rows=data.rows, seed=data.seed, drift=data.drift)
    else:
        path = Path(source)
        stat = path.stat() if path.is_file() else None
        identity.update(bytes=stat.st_size if stat else None, mtime_ns=stat.st_mtime_ns if stat else None)
    return identity


def features_home(stack_home: Path) -> Path:
    return Path(stack_home) / "features"



def build_training_set(spec: PipelineSpec, events: pd.DataFrame, store: FeatureStore | None = None) -> tuple[TrainingSet, FeatureSet]:
    """The data stage's point-in-time training set for a spec with `features:`.

    With a store, the definitions are applied (a changed one is refused) and computed tables are
    reused; without one (a quick look, a test), the tables are computed in memory.
    """
    features = load_feature_set(spec)
    if store is not None:
        return store.training_set(features, spec.data, events), features
    tables = [compute_table(t, load_source(t, spec.data, events)) for t in features.tables]
    return training_set(features, events, join(features, spec.data, events, tables)), features

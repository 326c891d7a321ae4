"""The online side: a store of the latest row per entity for each feature table version, and the
per-request lookup the model server calls.

Stores share one small interface (`OnlineStore`): SQLite embedded by default (one file under the
stack's home, a primary-key read per table), PostgreSQL for Kubernetes, and the SageMaker Feature
Store online store for the sagemaker backend (boto3, `sagemaker-featurestore-runtime`).
`open_online_store(url)` picks one from a URL: `sqlite:///path`, `postgresql://...`, `sagemaker://prefix`.
"""

from __future__ import annotations

import abc
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fabric.errors import FabricError, SpecError
from fabric.features.definitions import FeatureSet, FeatureTable
from fabric.features.values import NO_TIME, ns_to_text, parse_time, resolve

_META = "fabric_feature_tables"
_CHUNK = 500  # keys per SQLite IN (...) query, well under its bound-parameter limit


def table_name(table: FeatureTable) -> str:
    # names are checked identifiers ([a-z][a-z0-9_]*), so quoting them is enough
    return f'"{table.name}__v{table.version}"'


def _columns(table: FeatureTable) -> str:
    return ", ".join(f'"{n}"' for n in table.names)


@dataclass(frozen=True)
class StoredTable:
    name: str
    version: int
    definition_hash: str
    rows: int
    materialized_at: str
    end: str | None  # the snapshot holds the latest rows stamped at or before this time (None: all)


class OnlineStore(abc.ABC):
    """The latest row (time and values) of each entity, per feature table version.

    Contract: `write` replaces a table's snapshot in one transaction, so a reader sees the old rows or
    the new ones, never a mix; `read` may be called from many threads at once and returns rows in the
    order of the keys asked for, `NO_TIME` and NaN values for keys it does not hold; values are
    float64, NaN for null.
    """

    url: str

    @abc.abstractmethod
    def write(self, table: FeatureTable, keys: np.ndarray, stamped: np.ndarray, values: np.ndarray, end: int | None) -> None:
        """Replace the snapshot of `table` with these rows (one per key)."""

    @abc.abstractmethod
    def read(self, table: FeatureTable, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(stamped [n] int64, values [n, F] float64) for `keys`."""

    @abc.abstractmethod
    def tables(self) -> dict[tuple[str, int], StoredTable]:
        """What the store holds, by (table, version)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    def check(self, table: FeatureTable) -> StoredTable:
        """Fail unless the store holds `table` materialised from this very definition."""
        stored = self.tables().get((table.name, table.version))
        if stored is None:
            raise FabricError(
                f"online store {self.url} holds no {table.address}; run `fabric features materialize SPEC` first"
            )
        if stored.definition_hash != table.definition_hash():
            raise FabricError(
                f"online store {self.url}: {table.address} was materialised from definition {stored.definition_hash}, "
                f"not {table.definition_hash()}; run `fabric features materialize SPEC` again"
            )
        return stored


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _rows(table: FeatureTable, keys: Sequence[str], found: dict[str, tuple]) -> tuple[np.ndarray, np.ndarray]:
    width = len(table.features)
    stamped = np.full(len(keys), NO_TIME, dtype=np.int64)
    values = np.full((len(keys), width), np.nan, dtype=np.float64)
    for i, key in enumerate(keys):
        row = found.get(key)
        if row is not None:
            stamped[i] = row[0]
            values[i] = [np.nan if v is None else v for v in row[1:]]
    return stamped, values


# ---------------------------------------------------------------------------------------------
# SQLite: the embedded default


class SQLiteOnlineStore(OnlineStore):
    """One SQLite file in WAL mode: readers never wait for a materialisation in progress."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._sqlite = sqlite3
        with self._write() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, "
                "rows INTEGER NOT NULL, materialized_at TEXT NOT NULL, end_ns INTEGER, PRIMARY KEY (name, version))"
            )

    def _connection(self):  # noqa: ANN202 - sqlite3.Connection, one per thread
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._sqlite.connect(self.path, timeout=30, isolation_level=None, cached_statements=256)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[Any]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def write(self, table: FeatureTable, keys: np.ndarray, stamped: np.ndarray, values: np.ndarray, end: int | None) -> None:
        name = table_name(table)
        columns = ", ".join(f'"{n}" REAL' for n in table.names)
        rows = [(k, int(t), *v) for k, t, v in zip(keys.tolist(), stamped.tolist(), values.tolist(), strict=True)]
        placeholders = ", ".join("?" * (2 + len(table.names)))
        with self._write() as db:
            db.execute(f"DROP TABLE IF EXISTS {name}")
            db.execute(f"CREATE TABLE {name} (entity TEXT PRIMARY KEY, stamped INTEGER NOT NULL, {columns}) WITHOUT ROWID")
            db.executemany(f"INSERT INTO {name} VALUES ({placeholders})", rows)
            db.execute(
                f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?, ?, ?, ?)",
                (table.name, table.version, table.definition_hash(), len(rows), _now(), end),
            )

    def read(self, table: FeatureTable, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        db = self._connection()
        select = f"SELECT entity, stamped, {_columns(table)} FROM {table_name(table)}"
        if len(keys) == 1:  # the per-request case: one primary-key read
            found = {row[0]: row[1:] for row in db.execute(f"{select} WHERE entity = ?", (keys[0],))}
            return _rows(table, keys, found)
        found = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = tuple(keys[start : start + _CHUNK])
            query = f"{select} WHERE entity IN ({', '.join('?' * len(chunk))})"
            found.update((row[0], row[1:]) for row in db.execute(query, chunk))
        return _rows(table, keys, found)

    def tables(self) -> dict[tuple[str, int], StoredTable]:
        rows = self._connection().execute(f"SELECT name, version, hash, rows, materialized_at, end_ns FROM {_META}")
        return {
            (r[0], r[1]): StoredTable(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else ns_to_text(r[5]))
            for r in rows
        }

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


# ---------------------------------------------------------------------------------------------
# PostgreSQL: for Kubernetes (the stack's database, or any PostgreSQL)


class PostgresOnlineStore(OnlineStore):
    """Tables in one PostgreSQL database; a snapshot is replaced by DELETE + COPY in one transaction
    (MVCC: readers keep seeing the previous rows until it commits)."""

    def __init__(self, url: str) -> None:
        from fabric._imports import require

        self._pg = require("psycopg2")
        self.url = url
        self._dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        self._local = threading.local()
        with self._write() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, "
                "rows INTEGER NOT NULL, materialized_at TEXT NOT NULL, end_ns BIGINT, PRIMARY KEY (name, version))"
            )

    def _connection(self):  # noqa: ANN202 - a psycopg2 connection, one per thread
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            try:
                db = self._pg.connect(self._dsn, connect_timeout=10)
            except self._pg.OperationalError as exc:
                raise FabricError(f"online store {self.url}: cannot connect ({str(exc).strip()}); check the URL and that the database is up") from None
            db.autocommit = True
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[Any]:
        db = self._connection()
        db.autocommit = False
        try:
            with db.cursor() as cur:
                yield cur
            db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            db.autocommit = True

    def write(self, table: FeatureTable, keys: np.ndarray, stamped: np.ndarray, values: np.ndarray, end: int | None) -> None:
        import io

        name = table_name(table)
        columns = ", ".join(f'"{n}" DOUBLE PRECISION' for n in table.names)
        buffer = io.StringIO()
        for key, t, row in zip(keys.tolist(), stamped.tolist(), values.tolist(), strict=True):
            cells = ["\\N" if v != v else repr(v) for v in row]  # v != v: NaN -> NULL
            buffer.write("\t".join([_copy_text(key), str(t), *cells]) + "\n")
        buffer.seek(0)
        with self._write() as cur:
            cur.execute(f"SELECT hash FROM {_META} WHERE name = %s AND version = %s", (table.name, table.version))
            previous = cur.fetchone()
            if previous is not None and previous[0] != table.definition_hash():
                cur.execute(f"DROP TABLE IF EXISTS {name}")  # another definition: other columns
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name} (entity TEXT PRIMARY KEY, stamped BIGINT NOT NULL, {columns})")
            cur.execute(f"DELETE FROM {name}")
            cur.copy_expert(f"COPY {name} FROM STDIN", buffer)
            cur.execute(
                f"INSERT INTO {_META} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, version) DO UPDATE SET "
                "hash = EXCLUDED.hash, rows = EXCLUDED.rows, materialized_at = EXCLUDED.materialized_at, end_ns = EXCLUDED.end_ns",
                (table.name, table.version, table.definition_hash(), len(keys), _now(), end),
            )

    def read(self, table: FeatureTable, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._connection().cursor() as cur:
            cur.execute(f"SELECT entity, stamped, {_columns(table)} FROM {table_name(table)} WHERE entity = ANY(%s)", (list(keys),))
            found = {row[0]: row[1:] for row in cur.fetchall()}
        return _rows(table, keys, found)

    def tables(self) -> dict[tuple[str, int], StoredTable]:
        with self._connection().cursor() as cur:
            cur.execute(f"SELECT name, version, hash, rows, materialized_at, end_ns FROM {_META}")
            rows = cur.fetchall()
        return {
            (r[0], r[1]): StoredTable(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else ns_to_text(r[5]))
            for r in rows
        }

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _copy_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# ---------------------------------------------------------------------------------------------
# SageMaker Feature Store: the online store of the sagemaker backend


from fabric.backends.sagemaker.names import FEATURE_STAMP as STAMP  # noqa: E402 - a constant-only module
_BATCH = 100  # BatchGetRecord: identifiers per call
_PUT_THREADS = 8


class SageMakerOnlineStore(OnlineStore):
    """The SageMaker Feature Store online store, through `sagemaker-featurestore-runtime`.

    `sagemaker://<prefix>[?region=<region>]`: one feature group per table version, named
    `<prefix>-<table>` (`_` -> `-`, `-v<version>` from version 2 on; infra/feature_table.py names the
    groups it provisions `fabric-<stack>-<table>`, so `sagemaker://fabric-<stack>` finds them).
    A group that does not exist is created online-only (the offline copy is fabric's own offline
    store): record identifier `entity` (String), event time `event_time` (String, ISO 8601),
    `fabric_stamped_ns` (Integral) and one Fractional feature per feature. A provisioned group must
    have the table's features and `fabric_stamped_ns`; its record identifier and event time
    names are read from it.

    - `write`: PutRecord per row (NaN features left out: null), then the snapshot's definition hash,
      row count, time and end as tags of the group (AddTags), which `tables()` reads.
    - `read`: GetRecord for one key, BatchGetRecord (100 per call) for more; missing keys -> NO_TIME, NaN.
    - `tables()`: ListFeatureGroups by prefix, ListTags per group.

    Differences from the contract: SageMaker has no transaction, so a reader may see a snapshot
    being written half old and half new (each record is whole); a record is replaced only by one
    with a later event time, and records of entities a new snapshot lacks are not deleted (the
    ttl and the `at` of a lookup still decide whether a value is used).
    """

    def __init__(self, url: str, put_threads: int = _PUT_THREADS) -> None:
        from urllib.parse import parse_qs, urlsplit

        from fabric.backends.sagemaker.aws import Clients

        parts = urlsplit(url)
        self.prefix = (parts.netloc + parts.path).strip("/")
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,40}$", self.prefix):
            raise SpecError(f"online store URL {url!r}: the prefix {self.prefix!r} must be letters, digits and '-' "
                            "(feature group names), e.g. sagemaker://fabric-prod")  # fmt: skip
        self.url = url
        self.put_threads = put_threads
        self.clients = Clients(parse_qs(parts.query).get("region", [None])[0])  # type: ignore[arg-type]

    def group(self, table: FeatureTable) -> str:
        from fabric.backends.sagemaker import names

        return names.feature_group(self.prefix, table.name, table.version)

    def _describe(self, group: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        from fabric.backends.sagemaker.aws import aws_errors

        with aws_errors(f"feature group {group}"):
            try:
                return self.clients.sagemaker.describe_feature_group(FeatureGroupName=group)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ResourceNotFoundException"):
                    return None
                raise

    def create_request(self, table: FeatureTable) -> dict[str, Any]:
        """CreateFeatureGroup of a table version's group: online only, no role needed."""
        definitions = [{"FeatureName": "entity", "FeatureType": "String"},
                       {"FeatureName": "event_time", "FeatureType": "String"},
                       {"FeatureName": STAMP, "FeatureType": "Integral"},
                       *({"FeatureName": n, "FeatureType": "Fractional"} for n in table.names)]  # fmt: skip
        return {"FeatureGroupName": self.group(table), "RecordIdentifierFeatureName": "entity", "EventTimeFeatureName": "event_time",
                "FeatureDefinitions": definitions, "OnlineStoreConfig": {"EnableOnlineStore": True},
                "Description": f"fabric online features {table.address}",
                "Tags": [{"Key": "fabric:table", "Value": table.name}, {"Key": "fabric:version", "Value": str(table.version)}]}  # fmt: skip

    def ensure_group(self, table: FeatureTable, timeout_s: float = 600) -> dict[str, Any]:
        """DescribeFeatureGroup of the table's group, created first if needed, checked for its features."""
        from fabric.backends.sagemaker.aws import aws_errors

        group = self.group(table)
        described = self._describe(group)
        if described is None:
            with aws_errors(f"create feature group {group}"):
                self.clients.sagemaker.create_feature_group(**self.create_request(table))
            deadline = time.monotonic() + timeout_s
            while (described := self._describe(group)) is None or described.get("FeatureGroupStatus") == "Creating":
                if time.monotonic() > deadline:
                    raise FabricError(f"feature group {group} still Creating after {timeout_s:.0f} s; materialize again later")
                time.sleep(2)
        status = described.get("FeatureGroupStatus", "Created")
        if status != "Created":
            raise FabricError(f"feature group {group} is {status} ({described.get('FailureReason', 'no reason given')}); "
                              "delete it and materialize again")  # fmt: skip
        have = {d["FeatureName"] for d in described.get("FeatureDefinitions", [])}
        lacking = [n for n in [STAMP, *table.names] if n not in have]
        if lacking:
            raise FabricError(f"feature group {group} lacks features {lacking} of {table.address}; add them "
                              "(UpdateFeatureGroup FeatureAdditions) or delete the group so `materialize` creates it")  # fmt: skip
        return described

    def write(self, table: FeatureTable, keys: np.ndarray, stamped: np.ndarray, values: np.ndarray, end: int | None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from fabric.backends.sagemaker.aws import aws_errors

        described = self.ensure_group(table)
        group, record_id, event_time = self.group(table), described["RecordIdentifierFeatureName"], described["EventTimeFeatureName"]
        runtime = self.clients.sagemaker_featurestore_runtime
        names = table.names

        def put(row: tuple[str, int, list[float]]) -> None:
            key, t, cells = row
            record = [{"FeatureName": record_id, "ValueAsString": key},
                      {"FeatureName": event_time, "ValueAsString": _event_time(max(t, 0))},
                      {"FeatureName": STAMP, "ValueAsString": str(t)}]  # fmt: skip
            record += [{"FeatureName": n, "ValueAsString": repr(float(v))} for n, v in zip(names, cells, strict=True) if v == v]
            runtime.put_record(FeatureGroupName=group, Record=record)

        rows = list(zip(keys.tolist(), stamped.tolist(), values.tolist(), strict=True))
        with aws_errors(f"put records into {group}"):
            if len(rows) <= 1 or self.put_threads == 1:
                for row in rows:
                    put(row)
            else:
                with ThreadPoolExecutor(self.put_threads) as pool:  # boto3 clients are thread-safe
                    list(pool.map(put, rows))
            arn = described["FeatureGroupArn"]
            tags = {"fabric:table": table.name, "fabric:version": str(table.version), "fabric:definition": table.definition_hash(),
                    "fabric:rows": str(len(rows)), "fabric:materialized-at": _now(), "fabric:end": "" if end is None else str(end)}  # fmt: skip
            self.clients.sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def read(self, table: FeatureTable, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from fabric.backends.sagemaker.aws import aws_errors

        group = self.group(table)
        wanted = [STAMP, *table.names]
        runtime = self.clients.sagemaker_featurestore_runtime
        found: dict[str, tuple] = {}
        with aws_errors(f"read records of {group}"):
            if len(keys) == 1:  # the per-request case
                response = runtime.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=keys[0], FeatureNames=wanted)
                if response.get("Record"):
                    found[keys[0]] = _record_row(response["Record"], wanted)
                return _rows(table, keys, found)
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _BATCH):
                pending = unique[start : start + _BATCH]
                for _ in range(5):  # unprocessed identifiers (throttling) are asked for again
                    response = runtime.batch_get_record(Identifiers=[
                        {"FeatureGroupName": group, "RecordIdentifiersValueAsString": pending, "FeatureNames": wanted}])  # fmt: skip
                    if response.get("Errors"):
                        error = response["Errors"][0]
                        raise FabricError(f"online store {self.url}: {group}: {error.get('ErrorCode')}: {error.get('ErrorMessage')}")
                    for record in response.get("Records", []):
                        found[record["RecordIdentifierValueAsString"]] = _record_row(record["Record"], wanted)
                    pending = [k for u in response.get("UnprocessedIdentifiers", []) for k in u["RecordIdentifiersValueAsString"]]
                    if not pending:
                        break
                else:
                    raise FabricError(f"online store {self.url}: {group}: {len(pending)} keys stayed unprocessed; try again")
        return _rows(table, keys, found)

    def tables(self) -> dict[tuple[str, int], StoredTable]:
        from fabric.backends.sagemaker.aws import aws_errors

        out = {}
        with aws_errors(f"feature groups {self.prefix}-*"):
            pages = self.clients.sagemaker.get_paginator("list_feature_groups").paginate(NameContains=self.prefix)
            for summary in (s for page in pages for s in page["FeatureGroupSummaries"]):
                if not summary["FeatureGroupName"].startswith(f"{self.prefix}-"):
                    continue
                tags = {t["Key"]: t["Value"] for t in self.clients.sagemaker.list_tags(ResourceArn=summary["FeatureGroupArn"])["Tags"]}
                if "fabric:definition" not in tags:  # not materialised by fabric (yet)
                    continue
                name, version, end = tags["fabric:table"], int(tags["fabric:version"]), tags.get("fabric:end", "")
                out[(name, version)] = StoredTable(name, version, tags["fabric:definition"], int(tags["fabric:rows"]),
                                                   tags["fabric:materialized-at"], ns_to_text(int(end)) if end else None)  # fmt: skip
        return out


def _event_time(ns: int) -> str:
    """SageMaker's event time format (milliseconds, UTC); NO_TIME is never written."""
    return datetime.fromtimestamp(ns // 1_000_000 / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _record_row(record: list[dict[str, str]], wanted: list[str]) -> tuple:
    """(stamped, *values) in `wanted` order; a feature absent from the record is null."""
    by_name = {f["FeatureName"]: f["ValueAsString"] for f in record}
    return (int(by_name[STAMP]), *(float(by_name[n]) if n in by_name else None for n in wanted[1:]))


def _at_ns(at: object) -> int:
    """None -> now; int -> already ns since the epoch (UTC); else ISO 8601 text or a datetime."""
    if at is None:
        return time.time_ns()
    if isinstance(at, int) and not isinstance(at, bool):
        return at
    return parse_time(at, "at")


def open_online_store(url: str) -> OnlineStore:
    if url.startswith("sqlite:///"):
        return SQLiteOnlineStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        return PostgresOnlineStore(url.replace("postgres://", "postgresql://", 1))
    if url.startswith("sagemaker://"):
        return SageMakerOnlineStore(url)
    raise SpecError(
        f"online store URL {url!r} is not supported; use sqlite:///path/online.db, postgresql://user@host:port/db "
        "or sagemaker://prefix"
    )


# ---------------------------------------------------------------------------------------------
# What the model server calls per request


ENTITY_ID = "entity_id"  # the request field naming the entity (the spec's entity column works too)


@dataclass(frozen=True)
class Completed:
    records: list[dict[str, Any]]  # the request's records, table features filled in, entity field removed
    missing: list[str]  # entity ids to answer 404 for (policy `reject`)
    lookups: list[dict[str, Any] | None]  # per record, what `capture` returns (None: nothing looked up)


@dataclass(frozen=True)
class LookupDetail:
    rows: np.ndarray  # [n, F] float64, the values the model sees (ttl and defaults applied)
    known: np.ndarray  # [n] bool: the entity is in at least one table
    stamped: dict[str, np.ndarray]  # table -> [n] time of the row used (NO_TIME: none)
    at: int  # the lookup time, ns


class OnlineFeatures:
    """Feature lookups for a model: `lookup(entity_ids) -> (rows, missing)`.

    Built once at server start (`from_model` or directly); checks that the store holds every table
    from the model's exact definitions, so a stale or missing materialisation stops start-up instead
    of serving wrong values. Thread-safe: each thread reads through its own connection.
    """

    def __init__(self, store: OnlineStore, features: FeatureSet, check: bool = True) -> None:
        self.store = store
        self.features = features
        self.names = features.names
        self.entity = features.entity
        self.on_unknown = features.on_unknown
        if check:
            for table in features.tables:
                store.check(table)

    @classmethod
    def from_model(cls, model_dir: Path, store: OnlineStore) -> OnlineFeatures:
        """For a registered model version's folder, from its `features.json`."""
        path = Path(model_dir) / "features.json"
        if not path.is_file():
            raise FabricError(f"{model_dir}: the model has no features.json (it was trained without feature tables)")
        return cls(store, FeatureSet.from_dict(json.loads(path.read_text())))

    def lookup(self, entity_ids: Sequence[str], at: object = None) -> tuple[np.ndarray, list[str]]:
        """Rows [n, F] in `self.names` order, and the ids to answer 404 for.

        An id no table knows is listed in `missing` when the spec's policy is `reject`; with
        `default` it is served its features' defaults and `missing` is empty. `at` (default now)
        is the request's time: ttl is measured from it, and rows stamped after it are not used.
        """
        detail = self.lookup_detail(entity_ids, at)
        if self.on_unknown == "reject" and not detail.known.all():
            return detail.rows, [str(entity_ids[i]) for i in np.flatnonzero(~detail.known)]
        return detail.rows, []

    def lookup_detail(self, entity_ids: Sequence[str], at: object = None) -> LookupDetail:
        at_ns = _at_ns(at)
        keys = [str(e) for e in entity_ids]
        parts, stamped = [], {}
        known = np.zeros(len(keys), dtype=bool)
        for table in self.features.tables:
            times, values = self.store.read(table, keys)
            known |= times != NO_TIME
            stamped[table.name] = times
            parts.append(resolve(table, values, times, at_ns))
        rows = parts[0] if len(parts) == 1 else np.hstack(parts)
        return LookupDetail(rows=rows, known=known, stamped=stamped, at=at_ns)

    def capture(self, entity_id: str, at: int, row: np.ndarray) -> dict[str, Any]:
        """The record a server writes (under `feature_lookup`) for the skew check: the looked-up
        values, before any override a request supplies."""
        return {
            "entity_id": str(entity_id),
            "at": ns_to_text(at),
            "values": {n: (None if v != v else float(v)) for n, v in zip(self.names, row.tolist(), strict=True)},
        }

    def complete(self, records: Sequence[dict[str, Any]], at: object = None) -> Completed:
        """Fill request records in for the model: `{"entity_id": "card-7", "amount": 12.5, ...}`
        gets every table feature the record does not supply itself (a supplied value overrides the
        looked-up one). A record without an entity id is passed through: it must supply the table
        features directly. One store read per table for the whole request.
        """
        keys = (ENTITY_ID, self.entity)
        positions, ids = [], []
        for i, record in enumerate(records):
            entity = record.get(ENTITY_ID, record.get(self.entity))
            if entity is not None:
                positions.append(i)
                ids.append(str(entity))
        completed = [{k: v for k, v in r.items() if k not in keys} for r in records]
        lookups: list[dict[str, Any] | None] = [None] * len(records)
        if not ids:
            return Completed(completed, [], lookups)
        detail = self.lookup_detail(ids, at)
        missing = [] if self.on_unknown != "reject" else [ids[j] for j in np.flatnonzero(~detail.known)]
        names = self.names
        for j, i in enumerate(positions):
            values = detail.rows[j].tolist()
            record = completed[i]
            for name, value in zip(names, values, strict=True):
                if name not in record:
                    record[name] = None if value != value else value  # NaN -> null, as a request would send it
            lookups[i] = self.capture(ids[j], detail.at, detail.rows[j])
        return Completed(completed, missing, lookups)

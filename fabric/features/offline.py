"""The offline side: feature tables computed from their sources, and the point-in-time join that
builds a training set from event rows (entity id + time + label).

The join gives each event row the latest value of each table stamped at or before the event's time,
never a later one (`values.resolve` then applies ttl and defaults). Every accepted event row comes
back exactly once and in its original order, duplicates of (entity, time) included. Rows whose
time is missing or unparsable, or whose entity id is missing, are rejected and reported by row number
(positions in the event table, from 0).

The core is one `merge_asof` per table on small integer columns (entity codes, int64 times, row
numbers), after which the feature values are gathered with numpy; see benchmarks/features.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fabric.errors import DataError
from fabric.features.definitions import FeatureTable
from fabric.features.values import NO_TIME, resolve, to_ns

SHOWN_ROWS = 10  # row numbers quoted in a message; all of them are in the report


@dataclass
class Rejected:
    """Rows left out, by reason, as positions in the input (from 0)."""

    rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, positions: np.ndarray) -> None:
        if len(positions):
            self.rows[reason] = positions.tolist()

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def summary(self) -> dict[str, Any]:
        return {reason: {"count": len(rows), "rows": rows[:SHOWN_ROWS]} for reason, rows in self.rows.items()}

    def describe(self) -> str:
        return "; ".join(
            f"{len(rows)} {reason} (rows {rows[:SHOWN_ROWS]}{'...' if len(rows) > SHOWN_ROWS else ''})"
            for reason, rows in self.rows.items()
        )


@dataclass
class TableFrame:
    """A feature table's rows, checked: key (str), time (int64 ns), values [n, F] float64, by time.

    `codes`/`uniques` factorise the keys (keys == uniques[codes]); they are worked out once per
    table, when it is computed or read back (a dictionary-encoded column in the offline file), so a
    join hashes only the events' ids.
    """

    table: FeatureTable
    keys: np.ndarray
    times: np.ndarray
    values: np.ndarray
    rejected: Rejected = field(default_factory=Rejected)
    duplicates: int = 0
    codes: np.ndarray | None = field(default=None, repr=False)
    uniques: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def factorized(self) -> tuple[np.ndarray, np.ndarray]:
        if self.codes is None or self.uniques is None:
            self.codes, self.uniques = pd.factorize(self.keys)
        return self.codes, self.uniques

    def to_frame(self) -> pd.DataFrame:
        codes, uniques = self.factorized()
        frame = pd.DataFrame(self.values, columns=self.table.names)
        frame.insert(0, self.table.event_time, pd.to_datetime(self.times, unit="ns"))
        frame.insert(0, self.table.key, pd.Categorical.from_codes(codes, pd.Index(uniques, dtype=object)))
        return frame

    @classmethod
    def from_frame(cls, table: FeatureTable, frame: pd.DataFrame) -> TableFrame:
        """Rebuild from the offline store's file (written by `to_frame`, already checked)."""
        keys = frame[table.key]
        codes = uniques = None
        if isinstance(keys.dtype, pd.CategoricalDtype):
            codes, uniques = keys.cat.codes.to_numpy().astype(np.int64), keys.cat.categories.to_numpy(dtype=object)
        return cls(
            table,
            keys.to_numpy(dtype=object),
            frame[table.event_time].to_numpy().astype("datetime64[ns]").view(np.int64),
            frame[table.names].to_numpy(dtype=np.float64),
            codes=codes,
            uniques=uniques,
        )

    def latest(self, end: int | None = None) -> TableFrame:
        """The last row per entity stamped at or before `end`: what the online store holds."""
        keep = np.ones(len(self), dtype=bool) if end is None else self.times <= end
        codes, _ = self.factorized()
        keys, times, values = self.keys[keep], self.times[keep], self.values[keep]
        # rows are in time order, so the last occurrence of a key is its latest value
        last = ~pd.Series(codes[keep]).duplicated(keep="last").to_numpy()
        return TableFrame(self.table, keys[last], times[last], values[last])


def _numeric(column: pd.Series, kind: str, where: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return column.astype(np.float64).to_numpy()
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:SHOWN_ROWS].tolist()
        raise DataError(f"{where} has {int(bad.sum())} non-numeric values (rows {rows}, e.g. {column[bad].iloc[0]!r}); feature values are numbers")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = out[~np.isnan(out)]
    if kind == "int" and np.any(finite != np.round(finite)):
        raise DataError(f"{where} is declared int but holds fractions (e.g. {finite[finite != np.round(finite)][0]}); declare it float")
    if kind == "bool" and np.any((finite != 0) & (finite != 1)):
        raise DataError(f"{where} is declared bool but holds values other than 0/1; declare it float or int")
    return out


def compute_table(table: FeatureTable, source: pd.DataFrame) -> TableFrame:
    """Run the table's transformation on its source rows and check the result."""
    where = f"feature table {table.address}"
    frame = source
    if table.transformation is not None:
        frame = table.transformation(source.copy())
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{where}: the transformation returned {type(frame).__name__}; return a pandas DataFrame")
    columns = [str(c) for c in frame.columns]
    for column in [table.key, table.event_time, *table.names]:
        if column not in frame.columns:
            made_by = "its transformation's result" if table.transformation else f"its source {table.source}"
            raise DataError(f"{where}: column {column!r} is missing from {made_by} (columns {columns[:20]}); add it or fix the definition")
    rejected = Rejected()
    key_missing = frame[table.key].isna().to_numpy()
    times, bad_time = to_ns(frame[table.event_time], table.event_time, where)
    rejected.add(f"with a missing {table.key}", np.flatnonzero(key_missing))
    rejected.add(f"with a missing or unparsable {table.event_time}", np.flatnonzero(bad_time & ~key_missing))
    keep = ~(key_missing | bad_time)
    if not keep.any():
        raise DataError(f"{where}: no usable rows out of {len(frame)}: {rejected.describe()}")
    values = np.column_stack(
        [_numeric(frame[f.name], f.type, f"{where}: feature {f.name!r}") for f in table.features]
    )[keep]
    keys = key_text(frame[table.key]).to_numpy()[keep]
    times = times[keep]
    order = np.argsort(times, kind="stable")
    keys, times, values = keys[order], times[order], values[order]
    codes, uniques = pd.factorize(keys)
    # two rows for one (entity, time) would make "the value at that time" ambiguous: the last one
    # written wins, as in an upsert
    duplicated = pd.DataFrame({"c": codes, "t": times}).duplicated(keep="last").to_numpy()
    if duplicated.any():
        keys, times, values, codes = keys[~duplicated], times[~duplicated], values[~duplicated], codes[~duplicated]
    return TableFrame(table, keys, times, values, rejected, int(duplicated.sum()), codes, uniques)


@dataclass
class JoinResult:
    frame: pd.DataFrame  # the accepted event rows, in input order, with one column per feature
    rejected: Rejected
    stamped: dict[str, np.ndarray]  # table -> time of the row each event got (NO_TIME: none)
    accepted: np.ndarray  # positions in the input of the rows in `frame`

    @property
    def rows(self) -> int:
        return len(self.frame)


def point_in_time_join(
    events: pd.DataFrame, key: str, time_column: str, tables: Sequence[TableFrame], where: str = "events"
) -> JoinResult:
    """Each event row with every table's features as of the event's time (see the module doc)."""
    for column in (key, time_column):
        if column not in events.columns:
            raise DataError(f"{where}: column {column!r} is missing (columns {[str(c) for c in events.columns][:20]}); the join needs the entity and time")
    clash = sorted(set(events.columns) & {n for t in tables for n in t.table.names})
    if clash:
        raise DataError(f"{where}: columns {clash} are also feature names; rename the features or drop those columns")
    rejected = Rejected()
    key_missing = events[key].isna().to_numpy()
    times, bad_time = to_ns(events[time_column], time_column, where)
    rejected.add(f"with a missing {key}", np.flatnonzero(key_missing))
    rejected.add(f"with a missing or unparsable {time_column}", np.flatnonzero(bad_time & ~key_missing))
    accepted = np.flatnonzero(~(key_missing | bad_time))
    if len(accepted) == 0:
        raise DataError(f"{where}: no usable rows out of {len(events)}: {rejected.describe()}")
    times = times[accepted]
    codes, table_codes = _entity_codes(key_text(events[key]).to_numpy()[accepted], tables)
    order = np.argsort(times, kind="stable")
    left = pd.DataFrame({"t": times[order], "c": codes[order]})

    columns: dict[str, np.ndarray] = {}
    stamped: dict[str, np.ndarray] = {}
    for table, right_codes in zip(tables, table_codes, strict=True):
        matched = np.empty(len(order), dtype=np.int64)
        matched[order] = _asof_rows(left, table, right_codes)  # back to the events' own order
        found = matched >= 0
        row = np.where(found, matched, 0)
        stamps = np.where(found, table.times[row], NO_TIME) if len(table) else np.full(len(row), NO_TIME)
        # a row that matched nothing carries NO_TIME, so `resolve` never uses the value gathered for it
        values = table.values[row] if len(table) else np.full((len(row), len(table.table.features)), np.nan)
        resolved = resolve(table.table, values, stamps, times)
        stamped[table.table.name] = stamps
        for j, name in enumerate(table.table.names):
            columns[name] = resolved[:, j]

    data: dict[str, Any] = {}
    for column in events.columns:
        series = events[column]
        if column == time_column:
            data[column] = pd.to_datetime(times, unit="ns")
        elif isinstance(series.dtype, np.dtype):
            data[column] = series.to_numpy()[accepted]
        else:  # extension types (categorical, nullable, string) keep their dtype
            data[column] = series.take(accepted).reset_index(drop=True)
    frame = pd.DataFrame({**data, **columns}, copy=False)
    if len(frame) != len(accepted):  # merge_asof is a left join; this guards the exactly-once promise
        raise AssertionError(f"join returned {len(frame)} rows for {len(accepted)} accepted events")
    return JoinResult(frame=frame, rejected=rejected, stamped=stamped, accepted=accepted)


def key_text(keys: pd.Series) -> pd.Series:
    """Entity ids as text, the way every store keeps them (an integer id 7 and "7" are one entity)."""
    if pd.api.types.is_float_dtype(keys):
        finite = keys.dropna()
        if (finite == np.round(finite)).all():
            keys = keys.astype("Int64")  # ids read as float because of a missing value: 7.0 -> "7"
    if keys.dtype == object and pd.api.types.infer_dtype(keys, skipna=True) == "string":
        return keys
    return keys.astype("string").astype(object).where(keys.notna(), None)


def _entity_codes(keys: np.ndarray, tables: Sequence[TableFrame]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer codes for entity ids, shared by the events and every table: each id is hashed once
    per row, and an id no table knows gets -1 (it matches nothing)."""
    factorized = [t.factorized() for t in tables]
    known = pd.Index(np.concatenate([u for _, u in factorized])).unique() if tables else pd.Index([], dtype=object)
    table_codes = [known.get_indexer(uniques)[codes] if len(codes) else codes for codes, uniques in factorized]
    return known.get_indexer(keys), table_codes


def _asof_rows(left: pd.DataFrame, table: TableFrame, codes: np.ndarray) -> np.ndarray:
    """For each (time-sorted) left row, the table row it sees, or -1."""
    if len(table) == 0:
        return np.full(len(left), -1, dtype=np.int64)
    right = pd.DataFrame({"t": table.times, "c": codes, "r": np.arange(len(table), dtype=np.int64)})
    merged = pd.merge_asof(left, right, on="t", by="c", direction="backward", allow_exact_matches=True)
    return merged["r"].fillna(-1).to_numpy(dtype=np.int64)

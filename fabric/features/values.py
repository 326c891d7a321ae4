"""The one rule that turns stored feature rows into the values a model sees, shared by the training
join, the online lookup and the skew check so that they cannot disagree:

a row is visible at time `at` when it was stamped at or before `at`; a feature's value counts when
its row is visible and no older than the feature's ttl (`at - stamped <= ttl`); otherwise, or when
the stored value is null, the feature's default (NaN when it has none) is used.

Times are int64 nanoseconds since the epoch, UTC. `NO_TIME` marks "no row".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fabric.features.definitions import FeatureTable

NO_TIME = np.iinfo(np.int64).min


def resolve(table: FeatureTable, values: np.ndarray, stamped: np.ndarray, at: np.ndarray | int) -> np.ndarray:
    """`values` [n, F] float64 as stored, `stamped` [n] their rows' times, `at` [n] or one time."""
    has_row = stamped != NO_TIME
    age = np.where(has_row, np.asarray(at, dtype=np.int64) - np.where(has_row, stamped, 0), -1)
    visible = has_row & (age >= 0)
    out = np.empty(values.shape, dtype=np.float64)
    for j, feature in enumerate(table.features):
        ttl = table.ttl_ns(feature)
        counts = visible if ttl is None else visible & (age <= ttl)
        column = values[:, j]
        counts = counts & ~np.isnan(column)
        fill = np.nan if feature.default is None else float(feature.default)
        out[:, j] = np.where(counts, column, fill)
    return out


def to_ns(times: pd.Series, column: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a time column: (int64 ns UTC, mask of rows that are missing or not ISO 8601).

    Naive times are read as UTC; aware times are converted to UTC. Numbers are refused (their unit
    is a guess), as are booleans.
    """
    from fabric.errors import DataError

    if pd.api.types.is_bool_dtype(times) or (
        pd.api.types.is_numeric_dtype(times) and not pd.api.types.is_datetime64_any_dtype(times)
    ):
        raise DataError(
            f"{where}: column {column!r} holds numbers ({times.dtype}), not timestamps; write ISO 8601 times "
            f"(2026-01-31T12:00:00Z) or convert epoch numbers with pd.to_datetime(unit='s') in a transformation"
        )
    if pd.api.types.is_datetime64_any_dtype(times):
        parsed = times if getattr(times.dt, "tz", None) is None else times.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        parsed = pd.to_datetime(times, errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[ns]")
    bad = parsed.isna().to_numpy()
    ns = parsed.to_numpy().view(np.int64).copy()
    ns[bad] = NO_TIME
    return ns, bad


def ns_to_text(ns: int) -> str | None:
    return None if ns == NO_TIME else pd.Timestamp(ns, unit="ns").isoformat() + "Z"


def parse_time(value: object, where: str) -> int:
    """One time from the command line or a request: ISO 8601 text, a datetime, or 'now'."""
    import time

    from fabric.errors import DataError

    if value is None or value == "now":
        return time.time_ns()
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT or isinstance(value, int | float | bool):
        raise DataError(f"{where}={value!r} is not a time; write ISO 8601, e.g. 2026-03-01T12:00:00Z, or 'now'")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.value)

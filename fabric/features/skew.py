"""Train/serve skew: for a sample of served requests, the features the server looked up online
against what the offline store gives for the same entity and time, through the same join and the
same ttl/default rule as training.

A served request is a JSON line with a `feature_lookup` object (or that object alone):
`{"entity_id": "card-7", "at": "2026-03-01T12:00:00Z", "values": {"spend_24h": 41.5, ...}}`,
which `OnlineFeatures.capture` writes. The report feeds the drift monitor: `alarm` is true when the
share of mismatched requests exceeds the spec's `features.skew.max_mismatch_rate`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fabric.errors import DataError
from fabric.features.definitions import FeatureSet
from fabric.features.offline import TableFrame, point_in_time_join
from fabric.features.values import to_ns

_AT = "__served_at"
EXAMPLES = 5


@dataclass
class SkewReport:
    records: int  # served requests read
    checked: int  # of those, compared (the sample)
    mismatched: int
    mismatch_rate: float
    max_mismatch_rate: float
    alarm: bool
    per_feature: dict[str, int] = field(default_factory=dict)  # feature -> mismatched requests
    examples: list[dict[str, Any]] = field(default_factory=list)
    unusable: dict[str, Any] = field(default_factory=dict)  # records without an entity, time or values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_capture(path: Path) -> list[dict[str, Any]]:
    """The `feature_lookup` objects of a JSON-lines capture file (lines without one are skipped)."""
    if not Path(path).is_file():
        raise DataError(f"--capture {path}: no such file; point it at the server's capture log (JSON lines)")
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"--capture {path}: line {number} is not JSON ({exc.msg}); the capture log is one JSON object per line") from None
        lookup = item.get("feature_lookup", item) if isinstance(item, dict) else None
        if isinstance(lookup, dict) and "entity_id" in lookup:
            records.append(lookup)
    return records


def _agree(online: np.ndarray, offline: np.ndarray, tolerance: float) -> np.ndarray:
    both_missing = np.isnan(online) & np.isnan(offline)
    with np.errstate(invalid="ignore"):
        close = np.abs(online - offline) <= tolerance * np.maximum(1.0, np.abs(offline))
    return both_missing | (close & ~np.isnan(online) & ~np.isnan(offline))


def skew_check(
    features: FeatureSet,
    tables: Sequence[TableFrame],
    records: Iterable[dict[str, Any]],
    sample: int = 1000,
    tolerance: float = 1e-6,
    max_mismatch_rate: float = 0.0,
    seed: int = 0,
) -> SkewReport:
    records = list(records)
    unusable: list[int] = []
    usable = []
    for i, record in enumerate(records):
        values = record.get("values")
        numeric = isinstance(values, dict) and all(v is None or isinstance(v, int | float) for v in values.values())
        (usable if record.get("entity_id") not in (None, "") and numeric else unusable).append(i)
    if len(usable) > sample:
        usable = sorted(np.random.default_rng(seed).choice(usable, size=sample, replace=False).tolist())
    names = features.names
    report = SkewReport(len(records), 0, 0, 0.0, max_mismatch_rate, False, {n: 0 for n in names})
    if unusable:
        report.unusable["without an entity_id or numeric values"] = {"count": len(unusable), "records": unusable[:10]}
    if not usable:
        return report
    at, bad_time = to_ns(pd.Series([records[i].get("at") for i in usable], dtype=object), "at", "capture")
    if bad_time.any():
        rows = [usable[i] for i in np.flatnonzero(bad_time)]
        report.unusable["with a missing or unparsable at"] = {"count": len(rows), "records": rows[:10]}
    chosen = [records[i] for i, bad in zip(usable, bad_time, strict=True) if not bad]
    if not chosen:
        return report
    events = pd.DataFrame({features.entity: [str(r["entity_id"]) for r in chosen], _AT: pd.to_datetime(at[~bad_time], unit="ns")})
    joined = point_in_time_join(events, features.entity, _AT, tables, where="capture")
    accepted = joined.accepted
    online = np.array(
        [[np.nan if chosen[i]["values"].get(n) is None else float(chosen[i]["values"][n]) for n in names] for i in accepted],
        dtype=np.float64,
    ).reshape(len(accepted), len(names))
    offline = joined.frame[names].to_numpy(dtype=np.float64)
    agree = _agree(online, offline, tolerance)
    bad_rows = ~agree.all(axis=1)
    report.checked = len(accepted)
    report.mismatched = int(bad_rows.sum())
    report.mismatch_rate = round(report.mismatched / max(report.checked, 1), 6)
    report.alarm = report.mismatch_rate > max_mismatch_rate
    report.per_feature = {n: int((~agree[:, j]).sum()) for j, n in enumerate(names)}
    for row in np.flatnonzero(bad_rows)[:EXAMPLES]:
        record = chosen[accepted[row]]
        report.examples.append(
            {
                "entity_id": str(record["entity_id"]),
                "at": record.get("at"),
                "features": {
                    n: {"online": _plain(online[row, j]), "offline": _plain(offline[row, j])}
                    for j, n in enumerate(names)
                    if not agree[row, j]
                },
            }
        )
    return report


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else float(value)

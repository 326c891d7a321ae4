"""Reading captured traffic and late-arriving labels.

Capture: JSONL lines `{"ts", "request_id", "model", "slot", "features": {...}, "prediction"}` written
by the model server, plus `feature_lookup` where it looked features up online (the skew check's input). Labels: JSONL lines `{"request_id", "label"}` dropped into
`$FABRIC_HOME/<stack>/labels/<model name>/` whenever ground truth arrives (`fabric labels add`).
Corrupt lines and lines missing columns are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CaptureBatch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    corrupt: int = 0
    missing_columns: int = 0
    other_slots: int = 0
    position: dict[str, int] = field(default_factory=dict)  # file name -> lines consumed
    # (model, `feature_lookup`) of champion rows whose features the server looked up online
    lookups: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)


def read_capture(
    folder: Path, features: list[str], position: dict[str, int] | None = None, numeric: frozenset[str] = frozenset()
) -> CaptureBatch:
    """New champion rows since `position`, in file order (files are named by UTC hour). A line whose
    `numeric` feature holds something other than a number or null is corrupt."""
    batch = CaptureBatch(position=dict(position or {}))
    if not folder.is_dir():
        return batch
    for path in sorted(folder.glob("*.jsonl")):
        done = batch.position.get(path.name, 0)
        lines = path.read_text(errors="replace").splitlines()
        for line in lines[done:]:
            try:
                row = json.loads(line)
                values = row["features"]
                prediction = float(row["prediction"])
            except (ValueError, KeyError, TypeError):
                batch.corrupt += 1
                continue
            if not isinstance(values, dict) or any(f not in values for f in features):
                batch.missing_columns += 1
                continue
            if any(not _number_or_null(values[f]) for f in numeric):
                batch.corrupt += 1
                continue
            if row.get("slot", "champion") != "champion":
                batch.other_slots += 1
                continue
            batch.rows.append({**values, "prediction": prediction, "request_id": row.get("request_id"),
                               "model": row.get("model"), "ts": row.get("ts")})  # fmt: skip
            if isinstance(row.get("feature_lookup"), dict):
                batch.lookups.append((row.get("model"), row["feature_lookup"]))
        batch.position[path.name] = len(lines)
    return batch


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def read_labels(folder: Path) -> tuple[dict[str, Any], int]:
    """request_id -> label, and the count of unreadable lines."""
    labels: dict[str, Any] = {}
    bad = 0
    if not folder.is_dir():
        return labels, bad
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
                labels[str(row["request_id"])] = row["label"]
            except (ValueError, KeyError, TypeError):
                bad += 1
    return labels, bad


def append_labels(folder: Path, pairs: list[tuple[str, Any]], name: str = "labels.jsonl") -> int:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a", encoding="utf-8") as out:
        for request_id, label in pairs:
            out.write(json.dumps({"request_id": request_id, "label": label}) + "\n")
    return len(pairs)

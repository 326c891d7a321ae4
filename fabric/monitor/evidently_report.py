"""An optional Evidently data-drift report on a sample of a window, beside fabric's own drift report.

Evidently (the `evidently` extra; it needs pandas<3, which the project pins) gives people used to it
their familiar per-column view. It is a second opinion, not the alarm: its default tests are not
corrected across columns (see benchmarks/drift.py for its false alarm rate on the same windows).
Imported only here, when a report is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fabric._imports import require

SAMPLE_ROWS = 5000  # rows of each side in the report: enough for its tests, quick to render


@dataclass(frozen=True)
class EvidentlyDrift:
    drifted: list[str]  # columns Evidently calls drifted
    share: float  # of the columns compared
    dataset_drift: bool  # Evidently's own verdict: share >= its drift_share (0.5)
    snapshot: Any  # evidently's Snapshot (save_html, dict)


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]) -> EvidentlyDrift:
    """Evidently's DataDriftPreset on the columns `numeric` + `categorical` of both frames."""
    evidently = require("evidently")
    presets = require("evidently.presets")
    definition = evidently.DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = [*numeric, *categorical]
    snapshot = evidently.Report([presets.DataDriftPreset()]).run(
        current_data=evidently.Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    drifted, share, dataset_drift = [], 0.0, False
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(value["share"])
            dataset_drift = share >= float(config["drift_share"])
        elif config["type"].endswith("ValueDrift"):
            # p-value tests drift below the threshold, distances (Wasserstein, Jensen-Shannon) at or above it
            is_p = "p_value" in config["method"]
            if (value < config["threshold"]) if is_p else (value >= config["threshold"]):
                drifted.append(config["column"])
    return EvidentlyDrift(drifted, share, dataset_drift, snapshot)


def write_evidently_report(
    path: Path, reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str], seed: int = 0
) -> EvidentlyDrift:
    """Sample up to SAMPLE_ROWS rows of each frame, run Evidently and write its HTML to `path`."""
    reference = reference.sample(min(SAMPLE_ROWS, len(reference)), random_state=seed) if len(reference) else reference
    current = current.sample(min(SAMPLE_ROWS, len(current)), random_state=seed) if len(current) else current
    result = evidently_drift(reference, current, numeric, categorical)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.html")
    result.snapshot.save_html(str(tmp))
    tmp.replace(path)  # never a half-written report
    return result

"""The reference profile a drift monitor compares traffic with, taken at training time from the
held-out test split (the most recent rows under a time-aware split) and the served model's scores
on it. Stored beside the model as `profile.json`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fabric.data.schema import FeatureSchema

PREDICTION = "prediction"
SAMPLE_ROWS = 5000
PSI_BINS = 10


@dataclass(frozen=True)
class NumericReference:
    sample: np.ndarray  # up to SAMPLE_ROWS finite values, for the KS test
    mean: float
    std: float
    edges: np.ndarray  # PSI bins (quantiles of the reference, open-ended)
    bin_shares: np.ndarray


@dataclass(frozen=True)
class CategoricalReference:
    categories: tuple[str, ...]
    shares: np.ndarray
    unseen_share: float


@dataclass(frozen=True)
class Profile:
    rows: int
    numeric: dict[str, NumericReference]  # features and `prediction`
    categorical: dict[str, CategoricalReference]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "numeric": {k: {f: (v.tolist() if isinstance(v, np.ndarray) else v) for f, v in asdict(r).items()}
                        for k, r in self.numeric.items()},
            "categorical": {k: {"categories": list(r.categories), "shares": r.shares.tolist(), "unseen_share": r.unseen_share}
                            for k, r in self.categorical.items()},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict) -> Profile:
        numeric = {
            k: NumericReference(np.asarray(r["sample"]), r["mean"], r["std"], np.asarray(r["edges"]), np.asarray(r["bin_shares"]))
            for k, r in raw["numeric"].items()
        }
        categorical = {
            k: CategoricalReference(tuple(r["categories"]), np.asarray(r["shares"]), r["unseen_share"])
            for k, r in raw["categorical"].items()
        }
        return cls(raw["rows"], numeric, categorical)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.from_dict(json.loads(path.read_text()))


def _numeric_reference(values: np.ndarray, rng: np.random.Generator) -> NumericReference:
    values = values[np.isfinite(values)]
    sample = rng.choice(values, size=min(SAMPLE_ROWS, len(values)), replace=False) if len(values) else values
    inner = np.unique(np.quantile(values, np.linspace(0, 1, PSI_BINS + 1)[1:-1])) if len(values) else np.array([])
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    shares = np.histogram(values, bins=edges)[0] / max(len(values), 1)
    return NumericReference(np.sort(sample), float(values.mean()) if len(values) else 0.0,
                            float(values.std()) if len(values) else 0.0, edges, shares)  # fmt: skip


def build_profile(schema: FeatureSchema, frame: pd.DataFrame, predictions: np.ndarray, seed: int = 0) -> Profile:
    rng = np.random.default_rng(seed)
    numeric = {}
    categorical = {}
    for feature in schema.features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            numeric[feature.name] = _numeric_reference(pd.to_numeric(column, errors="coerce").to_numpy(np.float64), rng)
        else:
            values = column.astype("string").fillna("<missing>")
            counts = values.value_counts()
            known = [c for c in feature.categories if c in counts.index]
            shares = np.array([counts[c] for c in known], dtype=np.float64)
            total = float(counts.sum())
            unseen = 1.0 - shares.sum() / total if total else 0.0
            categorical[feature.name] = CategoricalReference(
                tuple(known), shares / max(shares.sum(), 1.0), max(unseen, 1.0 / (total + 1))
            )
    numeric[PREDICTION] = _numeric_reference(np.asarray(predictions, dtype=np.float64), rng)
    return Profile(len(frame), numeric, categorical)

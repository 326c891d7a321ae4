"""The feature schema: which columns a model reads, of which kind, and how they become the
float32 matrix every exported model takes as its single input `input` [N, F].

Categorical values are encoded as their index in `categories` (learnt on the training split);
a value never seen in training becomes -1. This schema travels with every registered model
(`schema.json`) so that the server encodes requests exactly as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

UNSEEN = -1.0


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()
    nullable: bool = False


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    task: str
    target: str
    name: str = ""
    version: int | None = None
    output: str = "score"
    _index: dict[str, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of `frame` as float32 [N, F] in schema order."""
        out = np.empty((len(frame), len(self.features)), dtype=np.float32)
        for j, feature in enumerate(self.features):
            column = frame[feature.name]
            if feature.kind == "numeric":
                out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                codes = pd.Categorical(column.astype("string"), categories=list(feature.categories)).codes
                out[:, j] = np.where(codes < 0, UNSEEN, codes)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "target": self.target,
            "output": self.output,
            "features": [
                {k: (list(v) if k == "categories" else v) for k, v in asdict(f).items() if k != "categories" or v}
                for f in self.features
            ],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSchema:
        features = tuple(
            Feature(
                name=f["name"],
                kind=f["kind"],
                categories=tuple(f.get("categories", ())),
                nullable=bool(f.get("nullable", False)),
            )
            for f in raw["features"]
        )
        return cls(
            features=features,
            task=raw["task"],
            target=raw.get("target", ""),
            name=raw.get("name", ""),
            version=raw.get("version"),
            output=raw.get("output", "score"),
        )

    def with_identity(self, name: str, version: int) -> FeatureSchema:
        return FeatureSchema(self.features, self.task, self.target, name, version, self.output)


def is_categorical(column: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(column)
        or column.dtype == object
    )

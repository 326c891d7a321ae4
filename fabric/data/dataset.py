"""From a spec to checked, split, encoded arrays with a content fingerprint.

Checks name the spec field or the column and say how to fix it; the split is time-aware when the
spec names a time column (train on the past, test on the most recent rows), stratified otherwise
for classification.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fabric.data.schema import Feature, FeatureSchema, is_categorical
from fabric.data.sources import load_frame
from fabric.errors import DataError
from fabric.spec import PipelineSpec

if TYPE_CHECKING:
    from fabric.features.definitions import FeatureSet
    from fabric.features.store import FeatureStore


@dataclass(frozen=True)
class Split:
    X: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame  # the raw rows (features, target, id, time) for slices and drift profiles


@dataclass(frozen=True)
class Dataset:
    schema: FeatureSchema
    train: Split
    validation: Split
    test: Split
    fingerprint: str
    rows: int
    source: str
    # with `features:` in the spec: the feature set and what lineage records of the training set
    feature_set: FeatureSet | None = None
    feature_lineage: dict[str, Any] | None = None

    def describe(self) -> dict[str, object]:
        positives = {}
        if self.schema.task == "binary":
            positives = {
                f"{part}_positive_rate": round(float(split.y.mean()), 5)
                for part, split in (("train", self.train), ("validation", self.validation), ("test", self.test))
            }
        return {
            "source": self.source,
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "features": len(self.schema.features),
            "numeric": self.schema.numeric,
            "categorical": self.schema.categorical,
            "split_rows": {"train": len(self.train.y), "validation": len(self.validation.y), "test": len(self.test.y)},
            **positives,
            **({"feature_tables": self.feature_lineage} if self.feature_lineage else {}),
        }


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of the rows, the column names and the dtypes: the same data gives the same id."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def _missing_column(field: str, name: str, columns: list[str], source: str) -> DataError:
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the columns are {columns[:20]}"
    return DataError(f"{field}={name!r} is not a column of {source}; {hint}")


def feature_columns(spec: PipelineSpec, frame: pd.DataFrame, table_features: Sequence[str] = ()) -> list[str]:
    """data.features (or every column but target, time, id and entity), then the feature tables' columns."""
    data = spec.data
    reserved = {data.target, data.time_column, data.id_column, spec.features.entity if spec.features else None}
    if data.features is not None:
        return [*data.features, *(c for c in table_features if c not in data.features)]
    return [c for c in frame.columns if c not in reserved]


def check_frame(spec: PipelineSpec, frame: pd.DataFrame, table_features: Sequence[str] = ()) -> list[str]:
    """Validate the frame against the spec; return the feature columns."""
    data = spec.data
    columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"data.source={data.source} has no rows; point it at data")
    if data.target not in frame.columns:
        raise _missing_column("data.target", data.target, columns, data.source)
    for field in ("time_column", "id_column"):
        name = getattr(data, field)
        if name is not None and name not in frame.columns:
            raise _missing_column(f"data.{field}", name, columns, data.source)
    features = feature_columns(spec, frame, table_features)
    for i, name in enumerate(features):
        if name not in frame.columns:
            raise _missing_column(f"data.features[{i}]", name, columns, data.source)
    for i, name in enumerate(data.categorical or []):
        if name not in features:
            raise DataError(f"data.categorical[{i}]={name!r} is not a feature; list it in data.features or remove it")
    if not features:
        raise DataError(f"{data.source} has no feature columns besides the target; add columns or list data.features")
    for name in features:
        if frame[name].isna().all():
            raise DataError(f"column {name!r} of {data.source} is all NaN; drop it from the data or list data.features without it")

    target = frame[data.target]
    if target.isna().any():
        rows = np.flatnonzero(target.isna().to_numpy())[:5].tolist()
        raise DataError(f"data.target={data.target!r} has {int(target.isna().sum())} missing values (rows {rows}...); drop or label those rows")
    if spec.task == "binary":
        classes = sorted(target.unique().tolist(), key=str)
        if len(classes) < 2:
            raise DataError(
                f"data.target={data.target!r} has one class ({classes[0]!r}) in {data.source}; a binary task needs both classes"
            )
        if len(classes) > 2:
            raise DataError(
                f"data.target={data.target!r} has {len(classes)} classes {classes[:6]}; task: binary needs exactly 2 (0/1)"
            )
    elif not pd.api.types.is_numeric_dtype(target):
        raise DataError(f"data.target={data.target!r} is not numeric; task: regression needs a numeric target")
    return features


def _binary_labels(target: pd.Series) -> np.ndarray:
    values = sorted(target.unique().tolist(), key=str)
    if set(values) <= {0, 1, True, False}:
        return target.astype(int).to_numpy()
    positive = values[-1]
    return (target == positive).astype(int).to_numpy()


def _event_times(spec: PipelineSpec, frame: pd.DataFrame) -> np.ndarray:
    column = spec.data.time_column
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        times = values  # epoch numbers and datetimes order as they are
    else:
        times = pd.to_datetime(values, errors="coerce", format="mixed")
        if times.isna().all():
            raise DataError(f"data.time_column={column!r} holds no dates (e.g. {values.iloc[0]!r}); "
                            "point it at a date/time or epoch column, or remove it to split stratified")  # fmt: skip
    missing = np.flatnonzero(pd.isna(times).to_numpy())
    if len(missing):
        raise DataError(f"data.time_column={column!r} has {len(missing)} rows without a time or with an unparseable one "
                        f"(rows {missing[:5].tolist()}...); fix or drop them")  # fmt: skip
    return times.to_numpy()


def split_indices(spec: PipelineSpec, frame: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(frame)
    n_test = max(1, int(round(n * spec.data.split.test)))
    n_val = max(1, int(round(n * spec.data.split.validation)))
    if n - n_test - n_val < 2:
        raise DataError(f"data.source={spec.data.source} has {n} rows: too few to split into train/validation/test")
    if spec.data.time_column:
        order = np.argsort(_event_times(spec, frame), kind="stable")
        return order[: n - n_test - n_val], order[n - n_test - n_val : n - n_test], order[n - n_test :]
    from sklearn.model_selection import train_test_split

    stratify = y if spec.task == "binary" else None
    index = np.arange(n)
    rest, test = train_test_split(index, test_size=n_test, random_state=spec.data.seed, stratify=stratify)
    train, val = train_test_split(
        rest, test_size=n_val, random_state=spec.data.seed, stratify=None if stratify is None else y[rest]
    )
    return np.sort(train), np.sort(val), np.sort(test)


def build_schema(spec: PipelineSpec, frame: pd.DataFrame, features: list[str], train_rows: np.ndarray) -> FeatureSchema:
    declared = set(spec.data.categorical or [])
    items = []
    train = frame.iloc[train_rows]
    for name in features:
        column = frame[name]
        nullable = bool(column.isna().any())
        if name in declared or is_categorical(column):
            categories = tuple(sorted(str(v) for v in train[name].dropna().unique()))
            items.append(Feature(name, "categorical", categories, nullable))
        else:
            if not pd.api.types.is_numeric_dtype(column):
                raise DataError(f"column {name!r} is neither numeric nor text; list it in data.categorical or drop it")
            items.append(Feature(name, "numeric", (), nullable))
    return FeatureSchema(tuple(items), task=spec.task, target=spec.data.target, name=spec.name)


def prepare(spec: PipelineSpec, frame: pd.DataFrame | None = None, feature_store: FeatureStore | None = None) -> Dataset:
    """Load (unless given), check, split and encode the spec's data. With `features:` in the spec,
    the rows are the events of a point-in-time join with the feature tables (kept in `feature_store`
    when given, computed in memory otherwise)."""
    frame = load_frame(spec.data) if frame is None else frame
    feature_set, feature_lineage = None, None
    if spec.features is not None:
        from fabric.features.store import build_training_set

        training, feature_set = build_training_set(spec, frame, feature_store)
        frame, feature_lineage = training.frame, training.lineage
    features = check_frame(spec, frame, feature_set.names if feature_set else ())
    target = frame[spec.data.target]
    y = _binary_labels(target) if spec.task == "binary" else target.to_numpy(dtype=np.float64)
    train_rows, val_rows, test_rows = split_indices(spec, frame, y)
    if spec.task == "binary" and len(np.unique(y[train_rows])) < 2:
        raise DataError(f"data.target={spec.data.target!r}: the training split has one class; add positive examples")
    schema = build_schema(spec, frame, features, train_rows)
    X = schema.encode(frame)
    entity = spec.features.entity if spec.features else None
    keep = [c for c in [spec.data.id_column, spec.data.time_column, entity, *features, spec.data.target] if c]

    def part(rows: np.ndarray) -> Split:
        return Split(X=X[rows], y=y[rows], frame=frame.iloc[rows][keep].reset_index(drop=True))

    return Dataset(
        schema=schema,
        train=part(train_rows),
        validation=part(val_rows),
        test=part(test_rows),
        fingerprint=fingerprint(frame),
        rows=len(frame),
        source=spec.data.source,
        feature_set=feature_set,
        feature_lineage=feature_lineage,
    )

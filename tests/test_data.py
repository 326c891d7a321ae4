from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fabric.data.dataset import fingerprint, prepare
from fabric.data.synthetic import generate_fraud
from fabric.errors import DataError
from fabric.spec import load_pipeline
from tests.conftest import write_spec


def test_generator_is_seeded_imbalanced_and_mixed() -> None:
    a, b = generate_fraud(20_000, seed=3), generate_fraud(20_000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert 0.005 < a["is_fraud"].mean() < 0.03  # realistic imbalance
    assert {"merchant_category", "channel", "country"} <= {c for c in a if pd.api.types.is_string_dtype(a[c])}
    assert a["device_score"].isna().any()  # missing values like a real feed
    assert not a.equals(generate_fraud(20_000, seed=4))


def test_drift_knob_moves_features_and_labels() -> None:
    base, drifted = generate_fraud(30_000, seed=1), generate_fraud(30_000, seed=1, drift=1.0)
    assert drifted["amount"].median() > 1.2 * base["amount"].median()
    assert (drifted["channel"] == "web").mean() > (base["channel"] == "web").mean() + 0.1
    assert drifted["is_fraud"].mean() > base["is_fraud"].mean()


def test_prepare_splits_by_time_and_encodes(tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path))
    data = prepare(spec)
    assert data.train.frame["event_time"].max() <= data.validation.frame["event_time"].min()
    assert data.validation.frame["event_time"].max() <= data.test.frame["event_time"].min()
    assert len(data.train.y) + len(data.validation.y) + len(data.test.y) == 4000
    assert data.schema.categorical == ["merchant_category", "channel", "country"]
    assert "transaction_id" not in data.schema.names and "event_time" not in data.schema.names
    channel = data.schema.names.index("channel")
    assert set(np.unique(data.train.X[:, channel])) <= {0.0, 1.0, 2.0}
    assert data.train.X.dtype == np.float32


def test_unseen_category_encodes_as_minus_one(tmp_path: Path) -> None:
    data = prepare(load_pipeline(write_spec(tmp_path)))
    frame = data.test.frame.head(2).copy()
    frame["channel"] = ["web", "carrier-pigeon"]
    encoded = data.schema.encode(frame)
    column = data.schema.names.index("channel")
    assert encoded[1, column] == -1.0 and encoded[0, column] >= 0


def test_csv_and_parquet_give_the_same_fingerprint_for_the_same_rows(tmp_path: Path) -> None:
    frame = generate_fraud(3000, seed=2)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    frame.to_parquet(tmp_path / "rows.parquet", index=False)
    specs = [
        load_pipeline(write_spec(tmp_path, data={"source": name, "rows": None})) for name in ("rows.csv", "rows.parquet")
    ]
    csv, parquet = prepare(specs[0]), prepare(specs[1])
    assert csv.rows == parquet.rows == 3000
    assert fingerprint(frame) == fingerprint(frame.copy())
    changed = frame.copy()
    changed.loc[0, "amount"] += 1
    assert fingerprint(changed) != fingerprint(frame)


def _spec_on(tmp_path: Path, frame: pd.DataFrame | None, **data: object):  # noqa: ANN202
    if frame is not None:
        frame.to_csv(tmp_path / "rows.csv", index=False)
    return load_pipeline(write_spec(tmp_path, data={"source": "rows.csv", "rows": None, **data}))


@pytest.mark.parametrize(
    ("mutate", "data", "message"),
    [
        (None, {"target": "is_frad"}, "data.target='is_frad' is not a column of .*rows.csv; did you mean 'is_fraud'"),
        (None, {"features": ["amount", "merchant"]}, r"data.features\[1\]='merchant' is not a column"),
        (None, {"time_column": "ts"}, "data.time_column='ts' is not a column"),
        (lambda f: f.assign(amount=np.nan), {}, "column 'amount' of .* is all NaN"),
        (lambda f: f.assign(is_fraud=0), {}, "data.target='is_fraud' has one class"),
        (lambda f: f.assign(is_fraud=np.arange(len(f)) % 3), {}, "has 3 classes"),
        (None, {"time_column": "channel"}, "data.time_column='channel' holds no dates"),
        (lambda f: f.assign(event_time=f["event_time"].where(f.index % 7 != 0)), {},
         "data.time_column='event_time' has 286 rows without a time"),
    ],
)
def test_bad_data_names_the_field(tmp_path: Path, mutate, data: dict, message: str) -> None:  # noqa: ANN001
    frame = generate_fraud(2000, seed=5)
    spec = _spec_on(tmp_path, mutate(frame) if mutate else frame, **data)
    with pytest.raises(DataError, match=message):
        prepare(spec)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        prepare(_spec_on(tmp_path, None))
    (tmp_path / "rows.csv").write_text("amount,is_fraud\n")
    with pytest.raises(DataError, match="has no rows"):
        prepare(_spec_on(tmp_path, None))
    with pytest.raises(DataError, match="no such file"):
        prepare(load_pipeline(write_spec(tmp_path, data={"source": "nope.csv", "rows": None})))


def test_stratified_split_keeps_the_class_ratio_in_every_part(tmp_path: Path) -> None:
    frame = generate_fraud(6000, seed=8)
    spec = _spec_on(tmp_path, frame, time_column=None)
    data = prepare(spec)
    overall = frame["is_fraud"].mean()
    positives = [int(part.y.sum()) for part in (data.train, data.validation, data.test)]
    assert all(p > 0 for p in positives)  # a rare class lands in every part
    for part in (data.train, data.validation, data.test):
        assert abs(part.y.mean() - overall) < 0.25 * overall + 1 / len(part.y)
    rows = np.concatenate([part.frame["transaction_id"].to_numpy() for part in (data.train, data.validation, data.test)])
    assert len(rows) == len(set(rows.tolist())) == 6000  # a partition: no row lost or repeated

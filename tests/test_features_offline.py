from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fabric.data.dataset import prepare
from fabric.errors import DataError
from fabric.features import Feature, FeatureTable
from fabric.features.offline import compute_table, point_in_time_join
from fabric.spec import load_pipeline
from tests.conftest import write_spec

START = pd.Timestamp("2026-01-01")
HOUR = pd.Timedelta(hours=1)


def _stamp_table(rng: np.random.Generator, entities: int, versions: int, name: str, ttl: str, short_ttl: str) -> tuple[FeatureTable, pd.DataFrame]:
    """A table whose every value is its own row's time in hours: what a row sees is what it was stamped."""
    keys = np.repeat([f"e{i}" for i in range(entities)], versions)
    hours = rng.integers(0, 24 * 20, len(keys)).astype(float)
    frame = pd.DataFrame({"key": keys, "event_time": START + pd.to_timedelta(hours, unit="h")})
    frame[f"{name}_stamp"] = hours
    frame[f"{name}_stamp_short"] = hours
    table = FeatureTable(
        name=name, key="key", ttl=ttl,
        features=(Feature(f"{name}_stamp"), Feature(f"{name}_stamp_short", ttl=short_ttl)),
    )  # fmt: skip
    return table, frame.sample(frac=1.0, random_state=1, ignore_index=True)


def test_no_training_row_sees_a_later_value_or_one_older_than_its_ttl() -> None:
    rng = np.random.default_rng(0)
    specs = [("activity", "3d", "12h"), ("history", "10d", "2d")]
    tables, frames = zip(*[_stamp_table(rng, 40, 12, *s) for s in specs], strict=True)
    computed = [compute_table(t, f) for t, f in zip(tables, frames, strict=True)]
    n = 4000
    event_hours = rng.integers(0, 24 * 22, n).astype(float)
    # a quarter of the events fall exactly on a table row's time: "at or before" must include it
    on_stamp = rng.uniform(size=n) < 0.25
    event_hours[on_stamp] = frames[0]["activity_stamp"].to_numpy()[rng.integers(0, len(frames[0]), on_stamp.sum())]
    keys = np.array([f"e{i}" for i in rng.integers(0, 45, n)])  # e40..e44 are in no table
    events = pd.DataFrame({"key": keys, "event_time": START + pd.to_timedelta(event_hours, unit="h"), "label": rng.integers(0, 2, n)})
    joined = point_in_time_join(events, "key", "event_time", computed)
    assert joined.rows == n and joined.rejected.count == 0

    for table, frame in zip(tables, frames, strict=True):
        by_key = {k: np.sort(g.to_numpy()) for k, g in frame.groupby("key")[f"{table.name}_stamp"]}
        for feature in table.features:
            seen = joined.frame[feature.name].to_numpy()
            ttl_h = pd.Timedelta(feature.ttl or table.ttl) / HOUR
            used = ~np.isnan(seen)
            assert np.all(seen[used] <= event_hours[used]), f"{feature.name}: a value stamped after its event"
            assert np.all(event_hours[used] - seen[used] <= ttl_h), f"{feature.name}: a value older than its ttl"
            # and nothing valid was dropped: brute force, row by row
            for i in range(n):
                stamps = by_key.get(keys[i], np.array([]))
                before = stamps[stamps <= event_hours[i]]
                expected = before[-1] if len(before) and event_hours[i] - before[-1] <= ttl_h else np.nan
                assert seen[i] == expected or (np.isnan(seen[i]) and np.isnan(expected)), (i, feature.name)
        stamped = joined.stamped[table.name]
        assert np.all(stamped[stamped != np.iinfo(np.int64).min] <= joined.frame["event_time"].astype("int64").to_numpy()[stamped != np.iinfo(np.int64).min])


def test_every_event_row_comes_back_once_in_order_duplicates_included() -> None:
    table = FeatureTable(name="t", key="key", features=(Feature("x"),))
    frame = pd.DataFrame(
        {"key": ["a", "a", "b", "b"], "event_time": [START, START + HOUR, START, START],  # b: two rows, one time
         "x": [1.0, 2.0, 10.0, 20.0]}
    )  # fmt: skip
    computed = compute_table(table, frame)
    assert computed.duplicates == 1  # the last row written for (b, START) wins, as an upsert would
    events = pd.DataFrame(
        {
            "id": range(7),
            "key": ["a", "a", "b", "a", "b", "zz", "a"],
            "event_time": [START + HOUR, START + HOUR, START, START - HOUR, START, START, START + 2 * HOUR],
        }
    )
    joined = point_in_time_join(events, "key", "event_time", [computed])
    assert joined.frame["id"].tolist() == list(range(7))
    assert joined.frame["x"].tolist()[:3] == [2.0, 2.0, 20.0] and joined.frame["x"].tolist()[4] == 20.0
    assert np.isnan(joined.frame["x"][3]) and np.isnan(joined.frame["x"][5])  # before any value; unknown entity
    assert joined.frame["x"][6] == 2.0


def test_bad_event_times_are_counted_and_rejected_with_row_numbers() -> None:
    table = FeatureTable(name="t", key="key", features=(Feature("x", default=0.0),))
    computed = compute_table(table, pd.DataFrame({"key": ["a"], "event_time": ["2026-01-01T00:00:00Z"], "x": [5.0]}))
    events = pd.DataFrame(
        {
            "key": ["a", "a", None, "a", "a", "a", "b"],
            "event_time": ["2026-01-02T00:00:00", None, "2026-01-02", "not a time", "2026-13-45", "", "2026-01-02T03:00:00+02:00"],
        }
    )
    joined = point_in_time_join(events, "key", "event_time", [computed])
    assert joined.rejected.rows == {"with a missing key": [2], "with a missing or unparsable event_time": [1, 3, 4, 5]}
    assert joined.rows == 2 and joined.accepted.tolist() == [0, 6]
    assert joined.frame["x"].tolist() == [5.0, 0.0]  # b is unknown: its default
    assert joined.frame["event_time"][1] == pd.Timestamp("2026-01-02T01:00:00")  # converted to UTC
    with pytest.raises(DataError, match=r"no usable rows out of 2: 2 with a missing or unparsable event_time \(rows \[0, 1\]\)"):
        point_in_time_join(events.iloc[[1, 3]], "key", "event_time", [computed])
    with pytest.raises(DataError, match=r"column 'event_time' holds numbers \(int64\), not timestamps"):
        point_in_time_join(pd.DataFrame({"key": ["a"], "event_time": [1767225600]}), "key", "event_time", [computed])


def test_table_errors_name_the_table_and_column() -> None:
    table = FeatureTable(name="cards", key="card_id", features=(Feature("spend", "int"),), transformation=lambda f: f.drop(columns="spend"))
    source = pd.DataFrame({"card_id": ["c1"], "event_time": [START], "spend": [1.0]})
    with pytest.raises(DataError, match=r"feature table cards:v1: column 'spend' is missing from its transformation's result"):
        compute_table(table, source)
    fractional = FeatureTable(name="cards", key="card_id", features=(Feature("spend", "int"),))
    with pytest.raises(DataError, match=r"cards:v1: feature 'spend' is declared int but holds fractions \(e.g. 1.5\)"):
        compute_table(fractional, source.assign(spend=[1.5]))
    with pytest.raises(DataError, match=r"feature 'spend' has 1 non-numeric values \(rows \[0\], e.g. 'lots'\)"):
        compute_table(fractional, source.assign(spend=["lots"]))
    bad = compute_table(fractional, pd.concat([source, source.assign(event_time=["yesterday"])], ignore_index=True))
    assert bad.rejected.rows == {"with a missing or unparsable event_time": [1]} and len(bad) == 1


def _features_spec(folder: Path, **features: object) -> Path:
    """A small spec whose feature tables are declared inline, from CSV files beside it."""
    rng = np.random.default_rng(3)
    n = 600
    times = START + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 30, n)), unit="h")
    events = pd.DataFrame(
        {"tx": range(n), "user": [f"u{i}" for i in rng.integers(0, 30, n)], "event_time": times.strftime("%Y-%m-%dT%H:%M:%S"),
         "amount": rng.gamma(2, 20, n), "label": rng.integers(0, 2, n)}
    )  # fmt: skip
    events.to_csv(folder / "events.csv", index=False)
    snapshots = pd.DataFrame(
        {"user": [f"u{i}" for i in range(30)] * 10, "event_time": (START + pd.to_timedelta(np.repeat(np.arange(10) * 72, 30), unit="h")).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "score": rng.normal(size=300)}
    )  # fmt: skip
    snapshots.to_csv(folder / "scores.csv", index=False)
    path = write_spec(
        folder,
        name="users",
        data={"source": "events.csv", "target": "label", "time_column": "event_time", "id_column": "tx", "rows": None},
        features={"entity": "user", "tables": [{"name": "user_scores", "source": "scores.csv", "ttl": "4d",
                                                "features": [{"name": "score"}]}], **features},
    )  # fmt: skip
    return path


def test_prepare_builds_the_training_set_from_the_feature_tables(tmp_path: Path) -> None:
    spec = load_pipeline(_features_spec(tmp_path))
    data = prepare(spec)
    assert data.schema.names == ["amount", "score"]  # the entity is a key, not a model input
    assert data.rows == 600 and data.feature_lineage is not None
    assert data.feature_lineage["tables"]["user_scores"].startswith("v1 sha256:")
    assert data.feature_lineage["training_set_fingerprint"] == data.fingerprint
    assert data.feature_lineage["rejected_rows"] == 0
    assert "user" in data.train.frame.columns
    # data.features lists event columns; the table features are always added
    raw = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    raw["data"]["features"] = ["amount"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    assert prepare(load_pipeline(tmp_path / "spec.yaml")).schema.names == ["amount", "score"]


def test_integer_ids_match_their_text_form() -> None:
    table = FeatureTable(name="t", key="user", features=(Feature("x"),))
    computed = compute_table(table, pd.DataFrame({"user": [7, 8], "event_time": [START, START], "x": [1.0, 2.0]}))
    events = pd.DataFrame({"user": [8.0, np.nan, 7.0], "event_time": [START + HOUR] * 3})  # floats: a missing id
    joined = point_in_time_join(events, "user", "event_time", [computed])
    assert joined.frame["x"].tolist() == [2.0, 1.0] and joined.rejected.rows == {"with a missing user": [1]}


def test_tables_are_computed_once_per_definition_and_rows(tmp_path: Path) -> None:
    from fabric.data.cards import generate_card_fraud
    from fabric.features.definitions import load_feature_set
    from fabric.features.store import FeatureStore
    from tests.conftest import ROOT

    spec = load_pipeline(write_spec(tmp_path, data={"source": "builtin:fraud-cards", "rows": 2000},
                                    features={"entity": "card_id", "module": str(ROOT / "pipelines/fraud_features.py")}))  # fmt: skip
    table = load_feature_set(spec).tables[0]
    store = FeatureStore(tmp_path / "store")
    first, computed = store.offline_table(table, spec.data)
    assert computed and len(first) == 2000
    again, computed = store.offline_table(table, spec.data)
    assert not computed and np.array_equal(again.values, first.values) and list(again.keys) == list(first.keys)
    # fresh rows (a retrain on drifted data) are not served features computed from the old ones
    fresh = generate_card_fraud(2000, seed=0, drift=1.0)
    assert store.offline_table(table, spec.data, fresh)[1]
    assert store.offline_table(table, spec.data, fresh)[1] is False

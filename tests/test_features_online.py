"""The online side, one suite run against every online store: embedded SQLite and a real PostgreSQL
server (started by the test in a temporary folder)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fabric.errors import CapabilityError, FabricError, SpecError
from fabric.features.definitions import FeatureSet, load_feature_set
from fabric.features.online import OnlineFeatures, OnlineStore, open_online_store
from fabric.features.skew import read_capture, skew_check
from fabric.features.store import FeatureStore
from fabric.spec import PipelineSpec, load_pipeline
from tests.conftest import ROOT, write_spec

T = pd.Timestamp("2026-02-10T12:00:00")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture(params=["sqlite", "postgresql"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
    else:
        import psycopg2

        server = request.getfixturevalue("postgres_url")
        database = f"t_{uuid.uuid4().hex[:12]}"  # a fresh database per test
        admin = psycopg2.connect(server)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
        admin.close()
        store = open_online_store(server.rsplit("/", 1)[0] + f"/{database}")
    yield store
    store.close()


def _spec(folder: Path, on_unknown: str = "reject") -> PipelineSpec:
    path = write_spec(
        folder,
        name="cards",
        data={"source": "builtin:fraud-cards", "rows": 3000},
        features={"entity": "card_id", "module": str(ROOT / "pipelines/fraud_features.py"), "on_unknown": on_unknown},
    )
    return load_pipeline(path)


def _offline(store: FeatureStore, spec: PipelineSpec, features: FeatureSet, entities: list[str], at: pd.Timestamp) -> np.ndarray:
    from fabric.features.offline import point_in_time_join

    tables = [store.offline_table(t, spec.data)[0] for t in features.tables]
    events = pd.DataFrame({"card_id": entities, "event_time": [at] * len(entities)})
    return point_in_time_join(events, "card_id", "event_time", tables).frame[features.names].to_numpy()


def test_online_and_offline_agree_for_the_same_entity_and_time(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path, on_unknown="default")  # cards first seen after the snapshot: defaults on both sides
    features = load_feature_set(spec)
    store = FeatureStore(tmp_path / "features", online)
    report = store.materialize(features, spec.data, end=T.value)
    assert [r.computed for r in report] == [True, True] and report[0].end == "2026-02-10T12:00:00Z"
    cards = sorted(set(store.offline_table(features.tables[0], spec.data)[0].keys))
    served = OnlineFeatures(online, features)
    rows, missing = served.lookup(cards, T.value)
    assert missing == [] and rows.shape == (len(cards), 5)
    expected = _offline(store, spec, features, cards, T)
    assert np.array_equal(rows, expected, equal_nan=True)
    # a meaningful comparison: real values, some expired into defaults, some never there
    assert (rows[:, 0] > 0).sum() > 10 and (rows[:, 0] == 0).sum() > 10 and np.isnan(rows[:, 4]).sum() > 0

    # a later snapshot replaces the earlier one as a whole
    later = T + pd.Timedelta(days=20)
    store.materialize(features, spec.data, end=later.value)
    assert [r.computed for r in store.materialize(features, spec.data, end=later.value)] == [False, False]
    again, _ = served.lookup(cards, later.value)
    assert np.array_equal(again, _offline(store, spec, features, cards, later), equal_nan=True)
    assert not np.array_equal(again, rows, equal_nan=True)
    # rows the snapshot holds that are stamped after the lookup time are not used
    detail = served.lookup_detail(cards, T.value)
    future = detail.stamped["card_activity"] > T.value
    assert future.sum() > 5 and np.all(detail.rows[future, :3] == 0.0)  # the defaults


def test_unknown_entities_get_404_or_defaults_never_a_crash(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path)
    features = load_feature_set(spec)
    FeatureStore(tmp_path / "features", online).materialize(features, spec.data)
    odd = ["card-does-not-exist", "", "'; DROP TABLE card_activity__v1; --", "ünïcödé", "card-001"]
    strict = OnlineFeatures(online, features)
    rows, missing = strict.lookup(odd, T.value)
    assert missing == odd[:4] and rows.shape == (5, 5)
    assert np.all(rows[:4, :4] == 0.0) and np.all(np.isnan(rows[:4, 4]))
    lenient = OnlineFeatures(online, dataclasses.replace(features, on_unknown="default"))
    rows, missing = lenient.lookup(odd, T.value)
    assert missing == [] and np.all(rows[:4, :4] == 0.0)
    assert strict.lookup(["card-001"], T.value)[1] == []  # the store survived the odd ids
    many = [f"x{i}" for i in range(1200)] + ["card-001"]  # more ids than one SQL statement takes
    rows, missing = strict.lookup(many, T.value)
    assert missing == many[:-1] and rows.shape == (1201, 5)


def test_the_server_refuses_a_store_without_its_exact_definitions(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path)
    features = load_feature_set(spec)
    with pytest.raises(FabricError, match=r"holds no card_activity:v1; run `fabric features materialize SPEC` first"):
        OnlineFeatures(online, features)
    FeatureStore(tmp_path / "features", online).materialize(features, spec.data)
    changed = dataclasses.replace(features, tables=(dataclasses.replace(features.tables[0], ttl="8d"), features.tables[1]))
    with pytest.raises(FabricError, match=r"card_activity:v1 was materialised from definition sha256:\w+, not sha256:\w+"):
        OnlineFeatures(online, changed)


def test_lookups_from_many_threads_agree(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path)
    features = load_feature_set(spec)
    FeatureStore(tmp_path / "features", online).materialize(features, spec.data, end=T.value)
    served = OnlineFeatures(online, features)
    cards = [f"card-{i:03d}" for i in range(60)]
    expected = served.lookup(cards, T.value)[0]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: served.lookup([c], T.value)[0][0], cards * 3))
    assert np.array_equal(np.array(results), np.vstack([expected] * 3), equal_nan=True)


def test_skew_check_finds_served_values_that_differ_from_offline(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path)
    features = load_feature_set(spec)
    store = FeatureStore(tmp_path / "features", online)
    store.materialize(features, spec.data, end=T.value)
    served = OnlineFeatures(online, features)
    cards = [f"card-{i:03d}" for i in range(100)]
    capture = tmp_path / "capture.jsonl"
    lines = []
    for card in cards:
        detail = served.lookup_detail([card], T.value)
        lines.append(json.dumps({"request": {"entity_id": card}, "feature_lookup": served.capture(card, detail.at, detail.rows[0])}))
    capture.write_text("\n".join(lines) + "\n{\"unrelated\": 1}\n")
    tables = [store.offline_table(t, spec.data)[0] for t in features.tables]
    clean = skew_check(features, tables, read_capture(capture))
    assert (clean.records, clean.checked, clean.mismatched, clean.alarm) == (100, 100, 0, False)

    # served a day later from the same snapshot: cards that transacted meanwhile are stale online
    stale = [{**r, "at": (T + pd.Timedelta(days=1)).isoformat() + "Z"} for r in read_capture(capture)]
    report = skew_check(features, tables, stale, max_mismatch_rate=0.01)
    assert report.alarm and report.mismatched > 5 and report.per_feature["txn_count_7d"] > 0
    example = report.examples[0]
    assert example["entity_id"].startswith("card-") and set(example["features"]) <= set(features.names)
    sampled = skew_check(features, tables, stale, sample=10)
    assert sampled.checked == 10 and sampled.records == 100
    bad = [{"entity_id": "card-001", "at": "yesterday-ish", "values": {}}, {"values": {}}, {"entity_id": "card-001", "values": {"spend_24h": "x"}}]
    odd = skew_check(features, tables, bad)
    assert odd.checked == 0 and odd.unusable["without an entity_id or numeric values"]["records"] == [1, 2]
    assert odd.unusable["with a missing or unparsable at"]["records"] == [0]


def test_online_store_urls() -> None:
    with pytest.raises(SpecError, match=r"online store URL 'redis://x' is not supported; use sqlite:///"):
        open_online_store("redis://x")
    sagemaker = open_online_store("sagemaker://fraud-prod")
    with pytest.raises(CapabilityError, match=r"SageMaker Feature Store online store is not implemented yet"):
        sagemaker.tables()


def test_request_records_are_completed_with_overrides_winning(tmp_path: Path, online: OnlineStore) -> None:
    spec = _spec(tmp_path)
    features = load_feature_set(spec)
    FeatureStore(tmp_path / "features", online).materialize(features, spec.data, end=T.value)
    served = OnlineFeatures(online, features)
    looked_up = dict(zip(served.names, served.lookup(["card-001"], T.value)[0][0].tolist(), strict=True))
    records = [
        {"entity_id": "card-001", "amount": 12.5, "channel": "web"},
        {"card_id": "card-001", "amount": 3.0, "spend_24h": 999.0},  # the entity column works too; an override
        {"amount": 1.0, **dict.fromkeys(served.names, 0.0)},  # no entity: supplies the features itself
        {"entity_id": "card-unknown", "amount": 2.0},
    ]
    done = served.complete(records, T.value)
    assert done.missing == ["card-unknown"]
    assert done.records[0] == {"amount": 12.5, "channel": "web", **{k: (None if v != v else v) for k, v in looked_up.items()}}
    assert done.records[1]["spend_24h"] == 999.0 and done.records[1]["txn_count_7d"] == looked_up["txn_count_7d"]
    assert "card_id" not in done.records[1] and done.records[2] == records[2]
    # capture keeps what was looked up, before the override, for the skew check
    assert done.lookups[1]["values"]["spend_24h"] == looked_up["spend_24h"] and done.lookups[2] is None
    assert done.lookups[0]["at"] == "2026-02-10T12:00:00Z"

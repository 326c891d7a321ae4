"""The online side, one suite run against every online store: embedded SQLite and a real PostgreSQL
server (started by the test in a temporary folder). The SageMaker Feature Store online store is not
in that suite: moto implements no `sagemaker-featurestore-runtime` call (PutRecord, GetRecord,
BatchGetRecord) nor ListFeatureGroups, so its exact requests are checked with botocore's Stubber
(which validates them and the responses against the service model), and moto's CreateFeatureGroup fails on an
online-only group (it requires an offline store), so the control-plane calls are stubbed too."""

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

from fabric.errors import FabricError, SpecError
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
    sagemaker = open_online_store("sagemaker://fabric-prod?region=eu-west-1")
    assert (sagemaker.prefix, sagemaker.clients.region) == ("fabric-prod", "eu-west-1")
    with pytest.raises(SpecError, match=r"the prefix 'fabric_prod' must be letters, digits and '-'"):
        open_online_store("sagemaker://fabric_prod")


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


def _sagemaker_table() -> "FeatureTable":  # noqa: UP037
    from fabric.features.definitions import Feature, FeatureTable

    return FeatureTable(name="card_activity", features=(Feature("spend_24h"), Feature("txn_count_7d")), key="card_id")


def test_the_sagemaker_online_store_sends_exactly_these_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.stub import Stubber

    from fabric.features import online as online_module
    from fabric.features.online import STAMP, StoredTable
    from fabric.features.values import NO_TIME

    monkeypatch.setattr(online_module, "_now", lambda: "2026-02-10T12:00:00+00:00")
    store = open_online_store("sagemaker://fabric-prod?region=us-east-1")
    store.put_threads = 1  # one request after the other, so their order is fixed for the Stubber
    table = _sagemaker_table()
    group, arn = "fabric-prod-card-activity", "arn:aws:sagemaker:us-east-1:123456789012:feature-group/fabric-prod-card-activity"
    wanted = [STAMP, "spend_24h", "txn_count_7d"]
    t1, t2 = 1770724800123456789, 1770728400000000000
    described = {"FeatureGroupArn": arn, "FeatureGroupName": group, "RecordIdentifierFeatureName": "entity",
                 "EventTimeFeatureName": "event_time", "FeatureDefinitions": store.create_request(table)["FeatureDefinitions"],
                 "CreationTime": T.to_pydatetime(), "FeatureGroupStatus": "Created", "NextToken": ""}  # fmt: skip
    tags = [{"Key": "fabric:table", "Value": "card_activity"}, {"Key": "fabric:version", "Value": "1"},
            {"Key": "fabric:definition", "Value": table.definition_hash()}, {"Key": "fabric:rows", "Value": "2"},
            {"Key": "fabric:materialized-at", "Value": "2026-02-10T12:00:00+00:00"}, {"Key": "fabric:end", "Value": str(t2)}]  # fmt: skip
    control, runtime = store.clients.sagemaker, store.clients.sagemaker_featurestore_runtime
    with Stubber(control) as sm, Stubber(runtime) as fs:
        # write: the group is missing, so it is created; then one PutRecord per row (NaN left out), then the tags
        sm.add_client_error("describe_feature_group", "ResourceNotFound", "Resource Not Found", 400, expected_params={"FeatureGroupName": group})
        sm.add_response("create_feature_group", {"FeatureGroupArn": arn}, store.create_request(table))
        sm.add_response("describe_feature_group", described, {"FeatureGroupName": group})
        fs.add_response("put_record", {}, {"FeatureGroupName": group, "Record": [
            {"FeatureName": "entity", "ValueAsString": "card-1"}, {"FeatureName": "event_time", "ValueAsString": "2026-02-10T12:00:00.123Z"},
            {"FeatureName": STAMP, "ValueAsString": str(t1)}, {"FeatureName": "spend_24h", "ValueAsString": "12.5"}]})  # fmt: skip
        fs.add_response("put_record", {}, {"FeatureGroupName": group, "Record": [
            {"FeatureName": "entity", "ValueAsString": "card-2"}, {"FeatureName": "event_time", "ValueAsString": "2026-02-10T13:00:00.000Z"},
            {"FeatureName": STAMP, "ValueAsString": str(t2)}, {"FeatureName": "spend_24h", "ValueAsString": "3.0"},
            {"FeatureName": "txn_count_7d", "ValueAsString": "2.0"}]})  # fmt: skip
        sm.add_response("add_tags", {"Tags": tags}, {"ResourceArn": arn, "Tags": tags})
        store.write(table, np.array(["card-1", "card-2"]), np.array([t1, t2]), np.array([[12.5, np.nan], [3.0, 2.0]]), t2)

        # read one key: GetRecord; a feature missing from the record is null
        fs.add_response("get_record", {"Record": [{"FeatureName": STAMP, "ValueAsString": str(t1)},
                                                  {"FeatureName": "spend_24h", "ValueAsString": "12.5"}]},
                        {"FeatureGroupName": group, "RecordIdentifierValueAsString": "card-1", "FeatureNames": wanted})  # fmt: skip
        stamped, values = store.read(table, ["card-1"])
        assert stamped.tolist() == [t1] and values[0, 0] == 12.5 and np.isnan(values[0, 1])
        # an unknown key: no record
        fs.add_response("get_record", {}, {"FeatureGroupName": group, "RecordIdentifierValueAsString": "card-x", "FeatureNames": wanted})
        stamped, values = store.read(table, ["card-x"])
        assert stamped.tolist() == [NO_TIME] and np.isnan(values).all()

        # read many: BatchGetRecord, the unprocessed keys asked for again; keys in the order asked, duplicates too
        def identifiers(keys: list[str]) -> dict:
            return {"Identifiers": [{"FeatureGroupName": group, "RecordIdentifiersValueAsString": keys, "FeatureNames": wanted}]}

        def record(key: str, t: int, *cells: tuple[str, str]) -> dict:
            return {"FeatureGroupName": group, "RecordIdentifierValueAsString": key,
                    "Record": [{"FeatureName": STAMP, "ValueAsString": str(t)}, *({"FeatureName": n, "ValueAsString": v} for n, v in cells)]}  # fmt: skip

        fs.add_response("batch_get_record", {"Records": [record("card-1", t1, ("spend_24h", "12.5"))], "Errors": [],
                                             "UnprocessedIdentifiers": [{"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["card-2", "card-x"]}]},
                        identifiers(["card-2", "card-1", "card-x"]))  # fmt: skip
        fs.add_response("batch_get_record", {"Records": [record("card-2", t2, ("spend_24h", "3.0"), ("txn_count_7d", "2.0"))],
                                             "Errors": [], "UnprocessedIdentifiers": []}, identifiers(["card-2", "card-x"]))  # fmt: skip
        stamped, values = store.read(table, ["card-2", "card-1", "card-x", "card-2"])
        assert stamped.tolist() == [t2, t1, NO_TIME, t2]
        assert np.array_equal(values, [[3.0, 2.0], [12.5, np.nan], [np.nan, np.nan], [3.0, 2.0]], equal_nan=True)

        # tables(): groups with the prefix, their tags; a group fabric did not materialise is left out
        def listing() -> None:
            other = "arn:aws:sagemaker:us-east-1:123456789012:feature-group/fabric-prod-other"
            sm.add_response("list_feature_groups", {"FeatureGroupSummaries": [
                {"FeatureGroupName": group, "FeatureGroupArn": arn, "CreationTime": T.to_pydatetime()},
                {"FeatureGroupName": "fabric-prod-other", "FeatureGroupArn": other, "CreationTime": T.to_pydatetime()},
                {"FeatureGroupName": "fabric-production-x", "FeatureGroupArn": other + "x", "CreationTime": T.to_pydatetime()}]},
                {"NameContains": "fabric-prod"})  # fmt: skip
            sm.add_response("list_tags", {"Tags": tags}, {"ResourceArn": arn})
            sm.add_response("list_tags", {"Tags": [{"Key": "team", "Value": "x"}]}, {"ResourceArn": other})

        listing()
        assert store.tables() == {("card_activity", 1): StoredTable("card_activity", 1, table.definition_hash(), 2,
                                                                   "2026-02-10T12:00:00+00:00", "2026-02-10T13:00:00Z")}  # fmt: skip
        listing()
        assert store.check(table).rows == 2  # what a model server does at start
        sm.assert_no_pending_responses()
        fs.assert_no_pending_responses()

        fs.add_response("batch_get_record", {"Records": [], "UnprocessedIdentifiers": [], "Errors": [
            {"FeatureGroupName": group, "RecordIdentifierValueAsString": "a", "ErrorCode": "ValidationError", "ErrorMessage": "bad"}]},
            identifiers(["a", "b"]))  # fmt: skip
        with pytest.raises(FabricError, match=r"online store sagemaker://fabric-prod\?region=us-east-1: fabric-prod-card-activity: ValidationError: bad"):
            store.read(table, ["a", "b"])

        # a provisioned group without the table's features is refused, naming them
        sm.add_response("describe_feature_group", described, {"FeatureGroupName": group})
        wider = dataclasses.replace(table, features=(*table.features, dataclasses.replace(table.features[0], name="spend_7d")))
        with pytest.raises(FabricError, match=r"feature group fabric-prod-card-activity lacks features \['spend_7d'\] of card_activity:v1"):
            store.write(wider, np.array(["a"]), np.array([t1]), np.array([[1.0, 2.0, 3.0]]), None)
    assert store.group(dataclasses.replace(table, version=2)) == "fabric-prod-card-activity-v2"

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric.errors import SpecError
from fabric.features.definitions import FeatureSet, load_feature_set
from fabric.features.store import FeatureStore
from fabric.spec import load_pipeline
from tests.conftest import ROOT, write_spec

TABLE = {"name": "user_scores", "source": "scores.csv", "ttl": "4d", "features": [{"name": "score"}]}


def _spec(folder: Path, **features: object) -> Path:
    return write_spec(folder, features={"entity": "user", "tables": [TABLE], **features})


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"tables": [{**TABLE, "name": "User-Scores"}]}, "features.tables[0].name='User-Scores' must be lowercase letters"),
        ({"tables": [{**TABLE, "ttl": "7 days"}]}, "features.tables[0].ttl='7 days' duration '7 days' is not valid"),
        ({"tables": [{**TABLE, "features": [{"name": "score", "type": "text"}]}]}, "features.tables[0].features[0].type='text'"),
        ({"tables": [TABLE, {**TABLE, "name": "other"}]}, "feature names must be unique across tables"),
        ({"module": "features.py"}, "needs exactly one of `tables:` (declared here) or `module:`"),
        ({"tables": [{**TABLE, "transformation": "nocolon"}]}, "must be `module:function` or `file.py:function`"),
        ({"on_unknown": "guess"}, "features.on_unknown='guess'"),
        ({"skew": {"max_mismatch_rate": 2}}, "features.skew.max_mismatch_rate=2"),
    ],
)
def test_bad_feature_specs_name_the_field(tmp_path: Path, features: dict, message: str) -> None:
    path = _spec(tmp_path, **features)
    with pytest.raises(SpecError) as err:
        load_pipeline(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_features_need_the_events_time(tmp_path: Path) -> None:
    path = write_spec(tmp_path, data={"time_column": None}, features={"entity": "user", "tables": [TABLE]})
    with pytest.raises(SpecError, match=r"features: joins feature tables as of each row's time; set data.time_column"):
        load_pipeline(path)


def test_module_tables_are_loaded_and_checked(tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path, features={"entity": "card_id", "module": str(ROOT / "pipelines/fraud_features.py")}))
    features = load_feature_set(spec)
    assert [t.address for t in features.tables] == ["card_activity:v1", "card_history:v1"]
    assert all(t.key == "card_id" for t in features.tables)
    assert features.names == ["spend_24h", "txn_count_24h", "txn_count_7d", "txn_count_30d", "avg_amount_30d"]
    # what a model carries (features.json) rebuilds the same definitions, transformations unloaded
    shipped = FeatureSet.from_dict(json.loads(json.dumps(features.to_dict())))
    assert shipped.versions() == features.versions() and shipped.names == features.names
    assert [t.transformation for t in shipped.tables] == [None, None]

    bad = tmp_path / "bad_features.py"
    cases = [
        ("X = 1\n", "defines no TABLES list; add TABLES = [FeatureTable(...), ...]"),
        ("TABLES = [{'name': 't'}]\n", "TABLES[0] is a dict; TABLES must hold fabric.features.FeatureTable objects"),
        ("from fabric.features import Feature, FeatureTable\nTABLES = [FeatureTable('t', [Feature('x')], ttl='soon')]\n",
         "TABLES[0].ttl='soon' duration 'soon' is not valid"),
        ("import nonexistent_module_xyz\n", "importing it failed (ModuleNotFoundError"),
    ]  # fmt: skip
    for source, message in cases:
        bad.write_text(source)
        spec = load_pipeline(write_spec(tmp_path, features={"entity": "card_id", "module": "bad_features.py"}))
        with pytest.raises(SpecError) as err:
            load_feature_set(spec)
        assert str(bad) in str(err.value) and message in str(err.value)


def test_a_changed_definition_needs_a_new_version(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    first = load_feature_set(load_pipeline(_spec(tmp_path)))
    assert [a.status for a in store.apply(first)] == ["created"]
    assert [a.status for a in store.apply(first)] == ["unchanged"]
    # a description is documentation, not definition
    described = load_feature_set(load_pipeline(_spec(tmp_path, tables=[{**TABLE, "description": "nightly"}])))
    assert [a.status for a in store.apply(described)] == ["unchanged"]

    changed = load_feature_set(load_pipeline(_spec(tmp_path, tables=[{**TABLE, "ttl": "8d"}])))
    with pytest.raises(SpecError) as err:
        store.apply(changed)
    assert "feature table user_scores version 1 changed since it was applied" in str(err.value)
    assert "(ttl differ;" in str(err.value) and "set version: 2, or restore the definition" in str(err.value)
    bumped = load_feature_set(load_pipeline(_spec(tmp_path, tables=[{**TABLE, "ttl": "8d", "version": 2}])))
    assert [a.status for a in store.apply(bumped)] == ["created"]
    assert [(d["name"], d["version"]) for d in store.definitions()] == [("user_scores", 1), ("user_scores", 2)]


def test_a_changed_transformation_is_a_changed_definition(tmp_path: Path) -> None:
    module = tmp_path / "transforms.py"
    module.write_text("def scores(frame):\n    return frame\n")
    table = {**TABLE, "transformation": "transforms.py:scores"}
    store = FeatureStore(tmp_path / "store")
    store.apply(load_feature_set(load_pipeline(_spec(tmp_path, tables=[table]))))
    module.write_text("def scores(frame):\n    return frame.assign(score=frame['score'] * 2)\n")
    with pytest.raises(SpecError, match=r"user_scores version 1 changed .*\(transformation differ;"):
        store.apply(load_feature_set(load_pipeline(_spec(tmp_path, tables=[table]))))
    module.write_text("X = 1\n")
    with pytest.raises(SpecError, match=r"transforms.py has no function 'scores'; check the name"):
        load_feature_set(load_pipeline(_spec(tmp_path, tables=[table])))

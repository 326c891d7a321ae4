from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabric.errors import SpecError
from fabric.spec import StackSettings, available_stacks, load_pipeline, load_stack
from tests.conftest import ROOT, write_spec


def test_shipped_pipelines_and_stacks_load() -> None:
    fraud = load_pipeline(ROOT / "pipelines/fraud.yaml")
    assert fraud.task == "binary" and fraud.multi_objective and fraud.latency_budget.p99_ms == 2.0
    diabetes = load_pipeline(ROOT / "pipelines/diabetes.yaml")
    assert diabetes.task == "regression" and not diabetes.higher_is_better
    assert available_stacks(ROOT) == ["dev", "onprem", "prod", "staging"]
    prod = load_stack("prod", ROOT)
    assert prod.endpoints["fraud"].min_instances >= 2
    assert prod.policy.enforcement == "mandatory"


def test_spec_hash_is_stable_and_sensitive(tmp_path: Path) -> None:
    a = load_pipeline(write_spec(tmp_path))
    assert a.spec_hash() == load_pipeline(write_spec(tmp_path)).spec_hash()
    b = load_pipeline(write_spec(tmp_path, search={"budget_s": 5, "families": ["lightgbm"]}))
    assert a.spec_hash() != b.spec_hash()



def test_spec_hash_counts_file_paths_as_written_not_where_the_checkout_lies(tmp_path: Path) -> None:
    table = {"name": "scores", "source": "tables/scores.csv", "transformation": "shape.py:build",
             "features": [{"name": "score"}]}  # fmt: skip
    overrides = {"data": {"source": "data/rows.csv", "target": "y"},
                 "features": {"entity": "user", "tables": [table]}}  # fmt: skip
    by_module = {"features": {"entity": "user", "module": "feats.py"}}
    specs = []
    for checkout in ("a", "deeper/b"):
        folder = tmp_path / checkout
        (folder / "m").mkdir(parents=True)
        specs.append(load_pipeline(write_spec(folder, **overrides)))
        specs.append(load_pipeline(write_spec(folder / "m", **by_module)))
    a, a_module, b, b_module = specs
    assert a_module.features is not None and a_module.features.module == str(tmp_path / "a" / "m" / "feats.py")
    assert a_module.spec_hash() == b_module.spec_hash() != a.spec_hash()
    assert a.data.source == str(tmp_path / "a" / "data" / "rows.csv")  # loading still makes paths absolute
    assert a.features is not None and a.features.tables[0].transformation == f"{tmp_path / 'a' / 'shape.py'}:build"
    assert a.data.source != b.data.source
    assert a.spec_hash() == b.spec_hash()  # same spec, same study name and lineage, wherever it lies
    assert a.model_copy(update={"task": "regression"}).spec_hash() != a.spec_hash()  # copies keep hashing content
    moved = load_pipeline(write_spec(tmp_path / "a", **{**overrides, "data": {**overrides["data"], "source": "rows.csv"}}))
    assert moved.spec_hash() != a.spec_hash()  # another path as written is another spec

@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"search": {"budget_s": -1}}, "search.budget_s=-1 Input should be greater than 0"),
        ({"search": {"budget_s": 0}}, "search.budget_s=0 Input should be greater than 0"),
        ({"search": {"families": ["catboost"]}}, "search.families[0]='catboost'"),
        ({"metric": "rmse"}, "metric='rmse' is for regression tasks, not binary"),
        ({"metric": "auc"}, "metric='auc' is unknown"),
        ({"latency_budget": {"p99_ms": 0}}, "latency_budget.p99_ms=0"),
        ({"rollout": {"steps": [50, 10]}}, "rollout.steps"),
        ({"serch": {"budget_s": 1}}, "serch is not a known field; check its spelling"),
        ({"search": {"budget_s": None, "trials": None}}, "needs budget_s (wall-clock seconds) or trials"),
    ],
)
def test_bad_spec_names_the_field(tmp_path: Path, override: dict, message: str) -> None:
    path = write_spec(tmp_path, **override)
    with pytest.raises(SpecError) as err:
        load_pipeline(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_required_field(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "task": "binary", "metric": "roc_auc"}))
    with pytest.raises(SpecError, match=r"data is required; add it"):
        load_pipeline(path)


def test_stack_errors_name_the_key() -> None:
    bad_pool = {"fabric:gpuPools": [{"name": "train", "instanceTypes": ["g5.xlarge"], "min": 4, "max": 2}]}
    with pytest.raises(SpecError, match=r"fabric:gpuPools\[0\]: max=2 must be >= min \(4\); raise max or lower min"):
        StackSettings.from_config("prod", bad_pool, "stacks/Pulumi.prod.yaml")
    with pytest.raises(SpecError, match=r"fabric:backend='lambda'"):
        StackSettings.from_config("x", {"fabric:backend": "lambda"}, "f.yaml")
    with pytest.raises(SpecError, match=r"fabric:gpuPool is not a known key"):
        StackSettings.from_config("x", {"fabric:gpuPool": []}, "f.yaml")
    endpoint = {"fabric:endpoints": {"fraud": {"instanceType": "c6i.large", "minInstances": 1, "maxInstances": 2}}}
    with pytest.raises(SpecError, match=r"fabric:endpoints.fraud.latencyBudgetMs is required"):
        StackSettings.from_config("x", endpoint, "f.yaml")


def test_unknown_stack_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"--stack qa: no .*Pulumi.qa.yaml; use one of \['dev', 'onprem', 'prod', 'staging'\]"):
        load_stack("qa", ROOT)

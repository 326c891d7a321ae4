from __future__ import annotations

import time
from pathlib import Path

import pytest

from fabric.data.dataset import prepare
from fabric.errors import FabricError
from fabric.search import run_search
from fabric.spec import load_pipeline
from tests.conftest import write_spec


def test_budget_is_honoured_even_when_one_trial_would_be_slow(tmp_path: Path) -> None:
    # 60k rows of MLP epochs take far longer than the budget: the fit must be cut, not awaited.
    # (Importing torch, lightgbm and onnxmltools takes ~4 s of it on this machine.)
    budget = 8
    spec = load_pipeline(
        write_spec(tmp_path, data={"rows": 60_000}, search={"budget_s": budget, "families": ["mlp", "lightgbm"]})
    )
    data = prepare(spec)
    start = time.monotonic()
    try:
        result = run_search(spec, data, f"sqlite:///{tmp_path / 's.db'}")
    except FabricError as exc:  # acceptable only if nothing could complete; the time bound still holds
        assert "no trial completed" in str(exc)
        result = None
    wall = time.monotonic() - start
    assert wall <= budget * 1.10 + 0.5, wall  # 10% of the budget, plus study set-up
    if result is not None:
        assert result.wall_s <= budget * 1.10
        assert result.counts()["cut_deadline"] >= 1 or result.best.family == "lightgbm"


def test_latency_budget_prunes_candidates_during_search(tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path, latency_budget={"p99_ms": 0.0001}, search={"budget_s": 3}))
    data = prepare(spec)
    seen = []
    with pytest.raises(FabricError, match=r"no trial completed within .*latency_budget.p99_ms=0.0001"):
        run_search(spec, data, f"sqlite:///{tmp_path / 's.db'}", on_trial=lambda s, _: seen.append(s))
    assert all(s.state == "pruned" for s in seen)
    reasons = [s.reason for s in seen]
    assert reasons.count("latency") >= 1 and set(reasons) <= {"latency", "deadline"}, reasons


def test_interrupted_search_resumes_from_sqlite(tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path, search={"trials": 3, "budget_s": 30}))
    data = prepare(spec)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = run_search(spec, data, storage)
    second = run_search(spec, data, storage)
    assert [t.number for t in first.trials] == [0, 1, 2]
    assert [t.number for t in second.trials] == [3, 4, 5]  # the study continued, it did not restart
    assert first.study_name == second.study_name


def test_multi_objective_keeps_a_pareto_front_within_budget(tmp_path: Path) -> None:
    spec = load_pipeline(
        write_spec(tmp_path, search={"trials": 6, "budget_s": 30, "objectives": ["roc_auc", "p99_ms"]})
    )
    result = run_search(spec, prepare(spec), f"sqlite:///{tmp_path / 's.db'}")
    assert result.pareto, "a multi-objective study reports its Pareto front"
    assert all(t.p99_ms is not None and t.p99_ms <= 5.0 for t in result.pareto)
    assert result.best.p99_ms <= spec.latency_budget.p99_ms
    values = [t.value for t in result.trials if t.state == "complete"]
    assert result.best.value == max(values)


def test_a_postgresql_study_is_shared_and_resumed_like_sqlite(tmp_path: Path) -> None:
    from tests.postgres import postgres_server

    spec = load_pipeline(write_spec(tmp_path, search={"trials": 2, "budget_s": 30}))
    data = prepare(spec)
    with postgres_server() as url:
        first = run_search(spec, data, url)
        second = run_search(spec, data, url)  # e.g. a second worker, or a restarted one
    assert [t.number for t in first.trials] == [0, 1]
    assert [t.number for t in second.trials] == [2, 3]
    assert second.storage == url and first.study_name == second.study_name


def test_stopping_early_is_only_worth_it_for_the_expensive_rest_of_a_trial() -> None:
    from fabric.search import worth_stopping_early

    # 50 rounds in 0.05 s, up to 1000: the rest costs ~0.95 s
    assert worth_stopping_early(0.05, 50, 1000, budget_s=60)  # 1.6% of the budget
    assert not worth_stopping_early(0.05, 50, 1000, budget_s=300)  # 0.3%: finish it
    assert not worth_stopping_early(0.05, 50, 60, budget_s=60)  # almost done anyway
    assert not worth_stopping_early(5.0, 50, 50, budget_s=60)  # at its last step nothing is saved
    assert worth_stopping_early(0.0001, 10, 11, budget_s=None)  # no wall-clock budget: trials may be stopped


def test_the_median_pruner_reads_completed_curves_of_its_own_family_including_earlier_runs(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from fabric.search import FamilyMedianPruner

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    families = {"family": CategoricalDistribution(["lightgbm", "xgboost", "mlp"])}
    for family, value in [("lightgbm", 0.70), ("lightgbm", 0.80), ("lightgbm", 0.90), ("xgboost", 0.99)]:
        study.add_trial(optuna.trial.create_trial(
            params={"family": family}, distributions=families, value=value,
            user_attrs={"curve": [(50, value), (60, value + 0.01)]},
        ))  # fmt: skip

    pruner = FamilyMedianPruner(optuna.load_study(study_name="s", storage=storage), higher_is_better=True)
    assert not pruner.should_prune("lightgbm", 50, 0.10)  # nothing read yet
    pruner.refresh()
    assert sorted(f for f, _ in pruner.curves.values()) == ["lightgbm", "lightgbm", "lightgbm", "xgboost"]
    assert pruner.should_prune("lightgbm", 50, 0.79)  # its family's median at step 50 is 0.80, not 0.85
    assert not pruner.should_prune("lightgbm", 50, 0.81)
    assert not pruner.should_prune("lightgbm", 40, 0.10)  # inside the warm-up
    assert not pruner.should_prune("lightgbm", 70, 0.10)  # no peer reached step 70
    assert not pruner.should_prune("xgboost", 50, 0.10)  # one peer is too few to judge by
    assert not pruner.should_prune("mlp", 50, 0.10)  # no peers of that family


def test_the_fast_validation_metrics_equal_scikit_learns() -> None:
    import numpy as np
    from sklearn import metrics

    from fabric.families.trees import validation_metric

    rng = np.random.default_rng(0)
    for rows, decimals in [(50, 1), (2000, 2), (2000, 9), (30_000, 3)]:
        y = (rng.random(rows) < 0.05).astype(int)
        y[:2] = [0, 1]
        score = np.round(rng.random(rows) + 0.3 * y, decimals)  # rounding makes ties
        assert validation_metric("roc_auc", y, score) == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)
        target = rng.normal(size=rows)
        assert validation_metric("rmse", target, score) == pytest.approx(np.sqrt(metrics.mean_squared_error(target, score)), abs=1e-12)
        assert validation_metric("mae", target, score) == pytest.approx(metrics.mean_absolute_error(target, score), abs=1e-12)
    with pytest.raises(ValueError, match="Only one class"):
        validation_metric("roc_auc", np.zeros(10), rng.random(10))
    with pytest.raises(ValueError, match="NaN"):
        validation_metric("roc_auc", np.array([0, 1]), np.array([0.1, np.nan]))

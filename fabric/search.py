"""Latency-aware hyperparameter search with Optuna.

- The wall-clock budget is honoured: `study.optimize(timeout=...)` only stops *starting* trials, so
  every fit also checks the deadline each few rounds/batches and is cut when it passes.
- The latency budget is enforced during search: a candidate is exported to ONNX and timed as it
  will be served (single row, ONNX Runtime, one thread) at its first checkpoints and at the end; one
  over budget is pruned and counted as such (more trees or epochs never make it faster).
- Pruning compares a trial's validation curve with the median of completed trials *of the same
  family* at the same step (rounds and epochs are not comparable across families). It works the
  same for single- and multi-objective studies (Optuna's own `should_prune` does not support the
  latter).
- Stopping a trial early (pruning, an intermediate latency check) is only done when the rest of the
  trial is projected to cost a noticeable share of the budget. On small data a trial costs a tenth
  of a second, early stopping already ends it, and pruning saved under 20% of it while throwing away
  the finished candidate; the final latency measurement still rejects any model over budget.
- The study lives in SQLite (or any Optuna storage URL, e.g. PostgreSQL) under a deterministic
  name, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fabric.data.dataset import Dataset
from fabric.errors import FabricError
from fabric.families import DeadlineReached, FitData, get_family
from fabric.latency import measure
from fabric.spec import LATENCY_OBJECTIVE, PipelineSpec

LATENCY_CHECK_STEPS = {10, 50, 200, 500}  # tree rounds; the MLP is checked after its first epoch
MIN_TRIALS_TO_PRUNE = 3
LATENCY_SAFE_SHARE = 0.5  # extrapolated p99 below this share of the budget: stop checking
WARMUP_STEPS = {"lightgbm": 50, "xgboost": 50, "mlp": 3}  # early curves of low learning rates look weak
MIN_SAVING_SHARE = 0.01  # stop a trial early only if its projected rest costs this share of the budget


@dataclass(frozen=True)
class SearchOptions:
    """Switches for the benchmark's baseline (Optuna defaults: no pruning, no latency, trials awaited)."""

    pruning: bool = True
    latency_aware: bool = True
    cut_trials: bool = True
    tuned_sampler: bool = True  # False: TPESampler with Optuna's default settings
    latency_runs: int = 300
    # False for workers sharing a study: another worker's RUNNING trial is live, not stale
    fail_stale: bool = True


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # complete | pruned | failed
    family: str
    params: dict[str, Any]
    value: float | None
    p99_ms: float | None
    duration_s: float
    reason: str = ""  # for pruned trials: metric | latency | deadline


@dataclass
class SearchResult:
    study_name: str
    storage: str
    budget_s: float | None
    wall_s: float
    best: TrialSummary
    pareto: list[TrialSummary]
    trials: list[TrialSummary] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"complete": 0, "pruned_metric": 0, "pruned_latency": 0, "cut_deadline": 0, "failed": 0}
        for t in self.trials:
            if t.state == "complete":
                out["complete"] += 1
            elif t.state == "failed":
                out["failed"] += 1
            elif t.reason == "latency":
                out["pruned_latency"] += 1
            elif t.reason == "deadline":
                out["cut_deadline"] += 1
            else:
                out["pruned_metric"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "budget_s": self.budget_s,
            "wall_s": round(self.wall_s, 2),
            "counts": self.counts(),
            "best": asdict(self.best),
            "pareto": [asdict(t) for t in self.pareto],
        }


class _Pruned(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def fit_data(dataset: Dataset, spec: PipelineSpec, deadline: float | None) -> FitData:
    schema = dataset.schema
    categorical = [i for i, f in enumerate(schema.features) if f.kind == "categorical"]
    return FitData(
        X_train=dataset.train.X,
        y_train=dataset.train.y,
        X_valid=dataset.validation.X,
        y_valid=dataset.validation.y,
        task=spec.task,
        categorical_columns=tuple(categorical),
        categories=tuple(len(schema.features[i].categories) for i in categorical),
        metric=spec.metric,
        seed=spec.search.seed,
        deadline=deadline,
    )


def _curve(trial: Any) -> dict[int, float]:
    return {int(step): value for step, value in trial.user_attrs.get("curve", [])}


def worth_stopping_early(elapsed_s: float, step: int, final_step: int, budget_s: float | None) -> bool:
    """Whether the rest of a trial, projected from its pace so far, is worth saving: at least
    MIN_SAVING_SHARE of the search budget (always, without a wall-clock budget)."""
    if budget_s is None:
        return True
    remaining_s = elapsed_s / max(step, 1) * max(final_step - step, 0)
    return remaining_s >= MIN_SAVING_SHARE * budget_s


class FamilyMedianPruner:
    """Prune when a trial's value at a step is worse than the median of completed trials of its
    family at that step. Reads curves from the study (also those of earlier runs and of other
    workers) once per trial, in `refresh`: completed trials never change."""

    def __init__(self, study: Any, higher_is_better: bool) -> None:
        self.study, self.higher = study, higher_is_better
        self.curves: dict[int, tuple[str, dict[int, float]]] = {}

    def refresh(self) -> None:
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number not in self.curves:
                self.curves[t.number] = (t.params.get("family", "?"), _curve(t))

    def should_prune(self, family: str, step: int, value: float) -> bool:
        if step < WARMUP_STEPS.get(family, 1):
            return False
        peers = [curve.get(step) for peer_family, curve in self.curves.values() if peer_family == family]
        peers = [p for p in peers if p is not None and math.isfinite(p)]
        if len(peers) < MIN_TRIALS_TO_PRUNE:
            return False
        median = float(np.median(peers))
        return value < median if self.higher else value > median


def study_name(spec: PipelineSpec, dataset: Dataset) -> str:
    return f"{spec.name}-{spec.spec_hash()[:8]}-{dataset.fingerprint.split(':')[-1][:8]}"


def _fail_stale(study: Any) -> None:
    """Trials left RUNNING by an interrupted run would never finish: mark them failed."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _summary(trial: Any, multi: bool) -> TrialSummary:
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "failed")
    value = None
    if trial.state == TrialState.COMPLETE:
        value = float(trial.values[0]) if multi else float(trial.value)
    family = trial.params.get("family", "?")
    prefix = {"lightgbm": "lgb_", "xgboost": "xgb_", "mlp": "mlp_"}.get(family, "")
    params = {k.removeprefix(prefix): v for k, v in trial.params.items() if k != "family"}
    duration = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
    return TrialSummary(
        number=trial.number,
        state=state,
        family=family,
        params=params,
        value=value,
        p99_ms=trial.user_attrs.get("p99_ms"),
        duration_s=round(duration, 3),
        reason=trial.user_attrs.get("pruned_reason", ""),
    )


def run_search(
    spec: PipelineSpec,
    dataset: Dataset,
    storage: str,
    name: str | None = None,
    budget_s: float | None = None,
    options: SearchOptions = SearchOptions(),
    on_trial: Callable[[TrialSummary, float], None] | None = None,
) -> SearchResult:
    """Search the spec's families within its budget; return the best trial within the latency budget."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    budget = budget_s if budget_s is not None else spec.search.budget_s
    if budget is not None and budget <= 0:
        raise FabricError(f"search.budget_s={budget} must be > 0; give the search some seconds")
    multi = spec.multi_objective
    metric_direction = "maximize" if spec.higher_is_better else "minimize"
    name = name or study_name(spec, dataset)
    if options.tuned_sampler:
        # multivariate+group: the families' parameter sets are disjoint (conditional search space)
        sampler = optuna.samplers.TPESampler(seed=spec.search.seed, multivariate=True, group=True, n_startup_trials=5)
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.search.seed)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            directions=[metric_direction, "minimize"] if multi else [metric_direction],
            load_if_exists=True,
        )
    except ValueError as exc:  # directions changed under the same name, or a bad storage URL
        raise FabricError(f"search.storage={storage}: cannot open study {name!r} ({exc})") from None
    if options.fail_stale:
        _fail_stale(study)
    pruner = FamilyMedianPruner(study, spec.higher_is_better)
    budget_ms = spec.latency_budget.p99_ms
    start = time.monotonic()
    for family_name in spec.search.families:  # inside the budget: it is part of the search's cost
        get_family(family_name).warm_up()
    deadline = start + budget if (budget is not None and options.cut_trials) else None
    data = fit_data(dataset, spec, deadline)
    sample_rows = dataset.validation.X[:256]

    def objective(trial: Any) -> Any:
        family_name = trial.suggest_categorical("family", list(spec.search.families))
        family = get_family(family_name)
        params = family.suggest(trial)
        curve: list[tuple[int, float]] = []
        latency_safe = False
        final_step = family.max_steps(params)
        if options.pruning and spec.search.pruning:
            pruner.refresh()
        fit_start = time.monotonic()

        def report(step: int, value: float, export: Callable[[], bytes]) -> None:
            nonlocal latency_safe
            curve.append((step, value))
            checkpoint = step in LATENCY_CHECK_STEPS or (family_name == "mlp" and step == 1)
            worth = worth_stopping_early(time.monotonic() - fit_start, step, final_step, budget)
            if options.latency_aware and checkpoint and not latency_safe and worth:
                p99 = measure(export(), sample_rows, runs=options.latency_runs).p99_ms
                if p99 > budget_ms:
                    raise _Pruned("latency", f"p99 {p99:.3f} ms > budget {budget_ms} ms at step {step}")
                # Tree latency grows about linearly with rounds and an MLP's not at all: once the
                # extrapolation to the last possible step fits the budget with room to spare, more
                # exports would only spend the search budget (the final model is measured anyway).
                grows = family_name != "mlp"
                latency_safe = p99 * max(1.0, final_step / step if grows else 1.0) <= LATENCY_SAFE_SHARE * budget_ms
            if options.pruning and spec.search.pruning and worth and pruner.should_prune(family_name, step, value):
                raise _Pruned("metric", f"step {step}: {value:.5f} worse than the family median")

        try:
            try:
                model = family.fit(params, data, report)
            except DeadlineReached:
                raise _Pruned("deadline", "cut at the search deadline") from None
            from fabric.families.trees import validation_metric

            value = validation_metric(spec.metric, dataset.validation.y, family.predict(model, dataset.validation.X))
            if not math.isfinite(value):
                raise _Pruned("metric", f"non-finite validation {spec.metric}")
            p99 = measure(family.to_onnx(model, dataset.train.X.shape[1]), sample_rows, runs=options.latency_runs).p99_ms
            trial.set_user_attr("p99_ms", p99)
            if options.latency_aware and p99 > budget_ms:
                raise _Pruned("latency", f"p99 {p99:.3f} ms > budget {budget_ms} ms")
        except _Pruned as pruned:
            trial.set_user_attr("pruned_reason", pruned.reason)
            trial.set_user_attr("pruned_detail", pruned.detail)
            raise optuna.TrialPruned(pruned.detail) from None
        finally:
            trial.set_user_attr("curve", curve)
        return (value, p99) if multi else value

    def callback(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(_summary(trial, multi), time.monotonic() - start)

    before = {t.number for t in study.get_trials(deepcopy=False)}
    study.optimize(
        objective,
        n_trials=spec.search.trials,
        timeout=None if budget is None else max(0.0, budget - (time.monotonic() - start)),
        callbacks=[callback],
        catch=(ValueError, ArithmeticError, RuntimeError),
        gc_after_trial=False,
    )
    wall = time.monotonic() - start
    trials = [_summary(t, multi) for t in study.get_trials(deepcopy=False)]
    this_run = [t for t in trials if t.number not in before]
    eligible = [
        t
        for t in trials
        if t.state == "complete" and (not options.latency_aware or t.p99_ms is None or t.p99_ms <= budget_ms)
    ]
    if not eligible:
        counts = SearchResult(name, storage, budget, wall, trials[0], [], this_run).counts() if trials else {}
        raise FabricError(
            f"search: no trial completed within search.budget_s={budget} and latency_budget.p99_ms={budget_ms} "
            f"({counts}); raise the budget, allow more latency, or use faster families"
        )
    sign = 1 if spec.higher_is_better else -1
    best = max(eligible, key=lambda t: (sign * (t.value or 0.0), -(t.p99_ms or 0.0)))
    pareto: list[TrialSummary] = []
    if multi:
        front = {t.number for t in study.best_trials}
        pareto = sorted((t for t in trials if t.number in front), key=lambda t: t.p99_ms or 0.0)
    return SearchResult(name, storage, budget, wall, best, pareto, this_run)


def objective_names(spec: PipelineSpec) -> list[str]:
    return [spec.metric, LATENCY_OBJECTIVE] if spec.multi_objective else [spec.metric]

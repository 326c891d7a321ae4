"""Latency-aware hyperparameter search with Optuna.

- The wall-clock budget is honoured end to end, from the opened study to the return (warm-up, trials,
  summary): `study.optimize(timeout=...)` only stops *starting* trials, so every fit also checks the
  deadline each round or batch and is cut when it passes, and stops early enough to leave time for
  what a finished fit still needs (validation score, ONNX export, latency measurement; learned per
  family from finished fits: exporting a thousand trees takes seconds).
- The latency budget is enforced during search: a candidate is exported to ONNX and timed as it
  will be served (single row, ONNX Runtime, one thread) at its first checkpoints and at the end; one
  over budget is pruned and counted as such (more trees or epochs never make it faster). A tree
  candidate skips the intermediate checks when its family's finished fits in this run (a fixed cost
  per call plus a cost per tree, see TreeLatency) project its last possible round well within the
  budget.
- Pruning compares a trial's validation curve with the median of completed trials *of the same
  family* (rounds and epochs are not comparable across families) at the same point of learning:
  the same epoch for the MLP, the same rounds times learning rate for trees. It works the same for
  single- and multi-objective studies (Optuna's own `should_prune` does not support the latter).
- Sampling is Optuna's default TPE: a tuned multivariate TPE found good regions sooner but settled
  in one and lost to the default at 300 s (see run_search).
- Families share the budget: TPE weighs a family by its trials' values, not their cost, so one good
  MLP trial (ten tree trials' time on 40,000 rows) draws the next ones to the MLP. A family that
  has spent more than its share (budget / families), is behind another and costs a noticeable share
  of the budget per fit (MIN_SAVING_SHARE; cheaper trials are left to TPE) is not started again:
  the trial is pruned before fitting (counted with the metric prunes), which the sampler also learns,
  and the next trial runs the leading family (TPE proposes its other parameters). Pruning alone
  gave the slot to no one: on Caravan (300 s, seed 1) TPE kept proposing XGBoost, a hair behind
  LightGBM at the same cost, 192 times, and LightGBM got 168 trials to the baseline's 404.
- Stopping a trial early (pruning, an intermediate latency check) is only done when the rest of the
  trial is projected to cost a noticeable share of the budget. On small data a trial costs a tenth
  of a second, early stopping already ends it, and pruning saved under 20% of it while throwing away
  the finished candidate; the final latency measurement still rejects any model over budget.
- The study lives in SQLite (or any Optuna storage URL, e.g. PostgreSQL) under a deterministic
  name and is the search's checkpoint: a run that was killed is resumed by the next run of the same
  spec on the same data. The study keeps a ledger (a user attribute) of the seconds and trials the
  search has spent, rewritten after every trial and every LEDGER_EVERY_S during one, so the resumed
  run keeps the earlier trials and spends only what is left of the budget. A search that ended is
  closed in the ledger; the next run starts a new search (new budget) that extends the same study.
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
from fabric.families import DeadlineReached, FitData, ModelFamily, get_family
from fabric.latency import measure
from fabric.spec import LATENCY_OBJECTIVE, PipelineSpec

LATENCY_CHECK_STEPS = {10, 50, 200, 500}  # tree rounds; the MLP is checked after its first epoch
MIN_TRIALS_TO_PRUNE = 3
LATENCY_SAFE_SHARE = 0.5  # projected p99 below this share of the budget: stop checking
# A tree trial is judged from rounds x learning rate >= WARMUP_LEARNING on (50 rounds at eta 0.1, 250
# at 0.02); an MLP from its WARMUP_EPOCHS-th epoch on. Before that, curves say little about where a
# trial ends: on diamonds (300 s, seed 0, the baseline's 88 trials replayed) judging trees from round 50
# pruned 5 of the 9 best trials, the best one included; from 5 units on, 1 of them, still saving a
# quarter of the rounds.
WARMUP_LEARNING = 5.0
WARMUP_EPOCHS = 3
MIN_SAVING_SHARE = 0.01  # stop a trial early only if its projected rest costs this share of the budget
RESERVE_SHARE = 0.05  # at most this share of the budget is kept free for a finished fit's export and timing
LEDGER_ATTR = "fabric_search"  # study user attribute: the budget ledger of the search under way
LEDGER_EVERY_S = 1.0  # while a trial runs; a kill loses at most this much of the ledger
INTERRUPTED = "interrupted"  # reason of a trial left RUNNING by a killed run


@dataclass(frozen=True)
class SearchOptions:
    """Switches for the benchmark's baseline (Optuna defaults: no pruning, no latency, trials awaited)."""

    pruning: bool = True
    latency_aware: bool = True
    cut_trials: bool = True
    latency_runs: int = 300
    # False for workers sharing a study: another worker's RUNNING trial is live, not stale, and the
    # budget is the run's shared deadline, not a ledger in the study (there is no single search to resume)
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
    reason: str = ""  # pruned: metric | latency | deadline; failed: interrupted (its run was killed)


@dataclass
class SearchResult:
    study_name: str
    storage: str
    budget_s: float | None
    wall_s: float
    best: TrialSummary
    pareto: list[TrialSummary]
    trials: list[TrialSummary] = field(default_factory=list)  # this search's, also those of a killed run it resumed
    spent_before_s: float = 0.0  # seconds of the budget that killed runs of this search spent before this one

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
            "spent_before_s": round(self.spent_before_s, 2),
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
    family at the same point of learning. Reads curves from the study (also those of earlier runs
    and of other workers) once per trial, in `refresh`: completed trials never change.

    A tree trial's point of learning is its rounds times its learning rate: at step 50 a trial with
    eta 0.036 has learnt what one with eta 0.09 had at step 20, and compared with the latter at step
    50 it looks weak while it is on course for the best model (diamonds, 60 s, seed 0: pruned there,
    it would have finished at RMSE 533 and led TPE to 526). So a tree peer's value is read where it
    had learnt as much, interpolated between its reports (its last value if it stopped before); an
    MLP's at the same epoch, where a peer whose curve stops before that epoch is no judge. Neither
    is judged before its warm-up (WARMUP_LEARNING, WARMUP_EPOCHS)."""

    def __init__(self, study: Any, higher_is_better: bool) -> None:
        self.study, self.higher = study, higher_is_better
        self.curves: dict[int, _PeerCurve] = {}

    def refresh(self) -> None:
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number not in self.curves and "family" in t.params:
                curve = sorted(_curve(t).items())
                self.curves[t.number] = _PeerCurve(t.params["family"], np.array([s for s, _ in curve], dtype=float),
                                                   np.array([v for _, v in curve], dtype=float),
                                                   learning_rate(t.params["family"], t.params))  # fmt: skip

    def should_prune(self, family: str, step: int, value: float, rate: float | None = None) -> bool:
        if (step * rate < WARMUP_LEARNING) if rate is not None else (step < WARMUP_EPOCHS):
            return False
        peers = [peer.value_at_same_learning(step, rate) for peer in self.curves.values() if peer.family == family]
        peers = [p for p in peers if p is not None and math.isfinite(p)]
        if len(peers) < MIN_TRIALS_TO_PRUNE:
            return False
        median = float(np.median(peers))
        return value < median if self.higher else value > median


@dataclass(frozen=True)
class _PeerCurve:
    """A completed trial's validation curve, as the pruner reads it."""

    family: str
    steps: np.ndarray
    values: np.ndarray
    rate: float | None  # a tree's learning rate; None for the MLP

    def value_at_same_learning(self, step: int, rate: float | None) -> float | None:
        if not len(self.steps):
            return None
        if rate is None or self.rate is None:
            at = int(np.searchsorted(self.steps, step))
            return float(self.values[at]) if at < len(self.steps) and self.steps[at] == step else None
        same = step * rate / self.rate
        if same < self.steps[0]:
            return None
        # A peer that stopped before it had learnt as much stopped early (its curve had flattened or
        # turned) or at its last round: its last value is no better than where it would have stood.
        return float(np.interp(same, self.steps, self.values))  # the last value past the last step


def learning_rate(family: str, params: dict[str, Any]) -> float | None:
    """A tree trial's learning rate from its Optuna params; None for the MLP (Adam's steps do not
    scale with it)."""
    name = get_family(family).learning_rate_param
    return float(params[name]) if name in params else None


def study_name(spec: PipelineSpec, dataset: Dataset) -> str:
    return f"{spec.name}-{spec.spec_hash()[:8]}-{dataset.fingerprint.split(':')[-1][:8]}"


def _fail_stale(study: Any) -> None:
    """Trials left RUNNING by an interrupted run would never finish: mark them failed."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "pruned_reason", INTERRUPTED)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _next_trial(study: Any) -> int:
    """The number of the trial the search will run first: an enqueued one, else the next one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return min([t.number for t in trials if t.state == TrialState.WAITING], default=len(trials))


class _Ledger:
    """What this search has spent, kept in the study so that a killed run can be resumed: the budget,
    the trial limit, the first trial number, the seconds spent by earlier (killed) runs and this one,
    and whether the search ended. Only a run that owns its study keeps one (see SearchOptions)."""

    def __init__(self, study: Any, keep: bool, budget: float | None, trials: int | None, start: float) -> None:
        self.study, self.keep, self.start = study, keep, start
        earlier = study.user_attrs.get(LEDGER_ATTR) if keep else None
        self.resumed = bool(earlier and earlier.get("open"))
        self.spent_before = float(earlier["spent_s"]) if self.resumed else 0.0
        self.first_trial = int(earlier["first_trial"]) if self.resumed else _next_trial(study)
        self.budget, self.trials = budget, trials
        self.written = -math.inf

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.start

    def allowance(self) -> float | None:
        """Seconds this run may spend, counted from its start."""
        return None if self.budget is None else max(0.0, self.budget - self.spent_before)

    def trials_left(self, done: int) -> int | None:
        return None if self.trials is None else max(0, self.trials - done)

    def write(self, open_: bool = True, every_s: float = 0.0) -> None:
        if not self.keep or time.monotonic() - self.written < every_s:
            return
        self.study.set_user_attr(LEDGER_ATTR, {"budget_s": self.budget, "trials": self.trials,
                                               "first_trial": self.first_trial, "spent_s": round(self.spent(), 3),
                                               "open": open_})  # fmt: skip
        self.written = time.monotonic()


class PostFitCost:
    """Seconds a fit still needs once it stops (validation score, ONNX export, latency measurement),
    learned per family from this run's finished fits, so that a fit stops in time for them before
    the deadline. A tree family's grows with the rounds fitted (exporting a thousand deep trees takes
    seconds), an MLP's does not. The reserve is capped at RESERVE_SHARE of the budget: a high guess
    only cuts the last trials a little early, and the budget has 10% of slack for a low one."""

    def __init__(self, budget_s: float | None) -> None:
        self.cap_s = math.inf if budget_s is None else RESERVE_SHARE * budget_s
        self.rate: dict[str, float] = {}  # seconds per step (trees) or seconds (MLP), the costliest seen

    def observe(self, family: ModelFamily, step: int, seconds: float) -> None:
        rate = seconds / max(step, 1) if family.steps_add_trees else seconds
        self.rate[family.name] = max(self.rate.get(family.name, 0.0), rate)

    def estimate(self, family: ModelFamily, step: int) -> float:
        rate = self.rate.get(family.name, 0.0)
        return min(self.cap_s, rate * max(step, 1) if family.steps_add_trees else rate)


class TreeLatency:
    """A tree family's served p99 projected to more trees, learned from this run's finished fits, so
    that a candidate whose last possible round projects within LATENCY_SAFE_SHARE of the budget skips
    its intermediate latency checks (an ONNX export each, which would only spend the search budget);
    its final measurement still rejects it if over. A call costs a fixed part (ONNX Runtime, input
    handling) plus a part per tree walked. The per-tree cost is the slope of p50 against trees over the
    family's fits: p50s jitter far less than p99s, and dividing a p99 by its trees instead counts the
    fixed part and the jitter once per tree (a 30-tree fit at p99 0.1 ms, almost all of it fixed cost,
    projected 6.7 ms for 2000 trees: on Caravan, 60 s, seed 1, 108 intermediate exports for 65 tree
    fits, under cProfile a tenth of the search, with none over budget). The tail is the worst p99
    above its p50 seen. An MLP's latency does not grow with epochs: it is neither recorded nor
    projected, so its checks are never skipped."""

    MIN_FITS = 3  # a slope from fewer fits is too noisy to skip checks on

    def __init__(self) -> None:
        self.fits: dict[str, list[tuple[int, float]]] = {}
        self.tail_ms: dict[str, float] = {}

    def observe(self, family: ModelFamily, trees: int, p50_ms: float, p99_ms: float) -> None:
        if family.steps_add_trees:
            self.fits.setdefault(family.name, []).append((max(trees, 1), p50_ms))
            self.tail_ms[family.name] = max(self.tail_ms.get(family.name, 0.0), p99_ms - p50_ms)

    def per_tree_ms(self, family: ModelFamily) -> float | None:
        fits = self.fits.get(family.name, [])
        trees = np.array([t for t, _ in fits], dtype=float)
        if len(fits) < self.MIN_FITS or np.ptp(trees) == 0:
            return None
        slope, _ = np.polyfit(trees, [p50 for _, p50 in fits], 1)
        return max(float(slope), 0.0)

    def projected_p99(self, family: ModelFamily, trees: int) -> float | None:
        """The p99 of a fit of `trees` trees of this family, from its finished fits; None before
        MIN_FITS."""
        per_tree = self.per_tree_ms(family)
        if per_tree is None:
            return None
        fits = self.fits[family.name]
        fixed = max(p50 - per_tree * t for t, p50 in fits)  # the line through the costliest fit
        return fixed + per_tree * trees + self.tail_ms[family.name]

    def extend(self, family: ModelFamily, p99_ms: float, step: int, final_step: int) -> float:
        """A p99 measured after `step` rounds of a fit, projected to its last possible round: with the
        family's per-tree cost when known, else in proportion to the rounds (an over-estimate)."""
        per_tree = self.per_tree_ms(family) if family.steps_add_trees else 0.0
        if per_tree is None:
            return p99_ms * max(1.0, final_step / max(step, 1))
        return p99_ms + per_tree * max(final_step - step, 0)

    def safe(self, family: ModelFamily, final_step: int, budget_ms: float) -> bool:
        projected = self.projected_p99(family, final_step)  # None for the MLP: observe skips it
        return projected is not None and projected <= LATENCY_SAFE_SHARE * budget_ms


class FamilyShare:
    """The seconds each family's trials spent in this run, and the best value each completed. TPE
    weighs families by the values of their trials, not by their cost: an MLP trial on 40,000 rows
    costs ten tree trials, and one good MLP trial draws the next ones to the MLP until the budget is
    gone. A family that has spent more than its share of the budget (the budget over the families)
    and holds no better value than another family's is not started again: the trial is pruned before
    fitting, which also tells the sampler, and the leader runs in its place (see run_search).

    Only a family whose fits cost a noticeable share of the budget (MIN_SAVING_SHARE, as for stopping
    a trial early) is held back: with trials that cheap TPE's own allocation costs little, and
    overruling it only makes the search's history differ from the one TPE would have written (ISLP
    Caravan, 60 s, trees at 0.3 s a fit: the rule's 12 prunes and redirections turned a tie with
    Optuna's defaults into a loss on one seed of three)."""

    def __init__(self, budget_s: float | None, families: int, higher_is_better: bool) -> None:
        self.share_s = math.inf if budget_s is None else budget_s / max(families, 1)
        self.cheap_fit_s = 0.0 if budget_s is None else MIN_SAVING_SHARE * budget_s
        self.sign = 1.0 if higher_is_better else -1.0
        self.spent: dict[str, float] = {}
        self.fits: dict[str, int] = {}
        self.best: dict[str, float] = {}

    def spend(self, family: str, seconds: float, fitted: bool = True) -> None:
        """A trial's seconds; `fitted`: whether it fitted (one held back before fitting did not)."""
        self.spent[family] = self.spent.get(family, 0.0) + seconds
        self.fits[family] = self.fits.get(family, 0) + int(fitted)

    def finished(self, family: str, value: float) -> None:
        self.best[family] = max(self.best.get(family, -math.inf), self.sign * value)

    def over(self, family: str) -> bool:
        others = [v for f, v in self.best.items() if f != family]
        behind = bool(others) and self.best.get(family, -math.inf) < max(others)
        spent, fits = self.spent.get(family, 0.0), self.fits.get(family, 0)
        costly = fits > 0 and spent / fits >= self.cheap_fit_s
        return behind and costly and spent > self.share_s

    def leader(self) -> str | None:
        """The family holding the best value so far."""
        return max(self.best, key=self.best.__getitem__) if self.best else None


def _summary(trial: Any, multi: bool) -> TrialSummary:
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "failed")
    value = None
    if trial.state == TrialState.COMPLETE:
        value = float(trial.values[0]) if multi else float(trial.value)
    family = trial.params.get("family", "?")
    prefix = get_family(family).param_prefix if "family" in trial.params else ""
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
    """Search the spec's families within its budget; return the best trial within the latency budget.
    Resumes the search a killed run left (see the module docstring). `on_trial(summary, seconds)`:
    after each trial, with the seconds of the budget spent so far."""
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
    # Optuna's default, independent TPE. The multivariate TPE (grouped by family) found a good region
    # in fewer trials but then stayed in it: on ISLP's Default (300 s, seed 2) its last 300 trials lay
    # around one XGBoost configuration (eta 0.036, AUC 0.9560) while independent TPE went on to a
    # better one (eta 0.28, 0.9614); 20 random start-up trials instead of 5 did not change that.
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
    # The budget counts from here to the return: warm-up (the families' imports), every trial with its
    # export and latency check, and the summary. Opening the study (Optuna's import, creating its
    # tables) is storage, not search, and comes before.
    start = time.monotonic()
    ledger = _Ledger(study, options.fail_stale, budget, spec.search.trials, start)
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number >= ledger.first_trial and t.state.is_finished() and t.user_attrs.get("pruned_reason") != INTERRUPTED
    ]
    trials_left, allowance = ledger.trials_left(len(done)), ledger.allowance()
    ledger.write()  # from here on, a killed run is resumed by the next one
    pruner = FamilyMedianPruner(study, spec.higher_is_better)
    budget_ms = spec.latency_budget.p99_ms
    for family_name in spec.search.families:  # inside the budget: it is part of the search's cost
        get_family(family_name).warm_up()
    import onnxruntime  # noqa: F401 - every trial is timed with it; its import is no trial's cost
    deadline = start + allowance if (allowance is not None and options.cut_trials) else None
    post_fit = PostFitCost(allowance)
    # No trial ends before its first report (early stopping needs more rounds or epochs than that):
    # with less time left than the quickest first report of this run, a new trial could only be cut.
    first_report_s: list[float] = []
    tree_latency = TreeLatency()
    shares = FamilyShare(allowance, len(spec.search.families), spec.higher_is_better)
    data = fit_data(dataset, spec, deadline)
    sample_rows = dataset.validation.X[:256]

    def cut_unless_time_left(family: ModelFamily, step: int, when: str) -> None:
        if deadline is not None and time.monotonic() + post_fit.estimate(family, step) > deadline:
            raise _Pruned("deadline", f"cut {when}: no time left to export and time it before the search deadline")

    steer_to: str | None = None  # the leading family, for the trial after an allocation prune

    def objective(trial: Any) -> Any:
        nonlocal steer_to
        trial_start = time.monotonic()
        # Only the family is fixed: TPE still proposes the rest, from that family's own trials.
        study.sampler = optuna.samplers.PartialFixedSampler({"family": steer_to}, sampler) if steer_to else sampler
        steer_to = None
        fitted = True  # False for a trial held back before fitting (FamilyShare)
        family_name = trial.suggest_categorical("family", list(spec.search.families))
        family = get_family(family_name)
        params = family.suggest(trial)
        curve: list[tuple[int, float]] = []
        final_step = family.max_steps(params)
        rate = learning_rate(family_name, trial.params)  # for the pruner, fixed for the trial
        latency_safe = tree_latency.safe(family, final_step, budget_ms)
        if options.pruning and spec.search.pruning:
            pruner.refresh()
        fit_start = time.monotonic()

        def report(step: int, value: float, export: Callable[[], bytes]) -> None:
            nonlocal latency_safe
            curve.append((step, value))
            if len(curve) == 1:
                first_report_s.append(time.monotonic() - trial_start)
            ledger.write(every_s=LEDGER_EVERY_S)
            cut_unless_time_left(family, step, f"at step {step}")
            checkpoint = step in LATENCY_CHECK_STEPS or (not family.steps_add_trees and step == 1)
            worth = worth_stopping_early(time.monotonic() - fit_start, step, final_step, budget)
            if options.latency_aware and checkpoint and not latency_safe and worth:
                p99 = measure(export(), sample_rows, runs=options.latency_runs).p99_ms
                if p99 > budget_ms:
                    raise _Pruned("latency", f"p99 {p99:.3f} ms > budget {budget_ms} ms at step {step}")
                # Tree latency grows about linearly with rounds and an MLP's not at all: once the
                # projection to the last possible step fits the budget with room to spare, more
                # exports would only spend the search budget (the final model is measured anyway).
                projected = tree_latency.extend(family, p99, step, final_step)
                latency_safe = projected <= LATENCY_SAFE_SHARE * budget_ms
            if options.pruning and spec.search.pruning and worth and pruner.should_prune(family_name, step, value, rate):
                raise _Pruned("metric", f"step {step}: {value:.5f} worse than the family median")

        try:
            if options.pruning and spec.search.pruning and shares.over(family_name):
                fitted = False
                steer_to = shares.leader()
                raise _Pruned("allocation", f"{family_name} spent over its share of the budget and is behind "
                                            f"{steer_to}, which runs next")  # fmt: skip
            try:
                model = family.fit(params, data, report)
            except DeadlineReached:
                raise _Pruned("deadline", "cut at the search deadline") from None
            steps = curve[-1][0] if curve else final_step
            cut_unless_time_left(family, steps, f"after {steps} steps")
            from fabric.families.trees import validation_metric

            post_start = time.monotonic()
            value = validation_metric(spec.metric, dataset.validation.y, family.predict(model, dataset.validation.X))
            if not math.isfinite(value):
                raise _Pruned("metric", f"non-finite validation {spec.metric}")
            profile = measure(family.to_onnx(model, dataset.train.X.shape[1]), sample_rows, runs=options.latency_runs)
            p99 = profile.p99_ms
            post_fit.observe(family, steps, time.monotonic() - post_start)
            # the trees served: early stopping keeps fewer than it fitted
            served = int(family.refit_params(params, model).get("rounds", steps))
            tree_latency.observe(family, served, profile.p50_ms, p99)
            trial.set_user_attr("p99_ms", p99)
            if options.latency_aware and p99 > budget_ms:
                raise _Pruned("latency", f"p99 {p99:.3f} ms > budget {budget_ms} ms")
            shares.finished(family_name, value)
        except _Pruned as pruned:
            trial.set_user_attr("pruned_reason", pruned.reason)
            trial.set_user_attr("pruned_detail", pruned.detail)
            raise optuna.TrialPruned(pruned.detail) from None
        finally:
            trial.set_user_attr("curve", curve)
            shares.spend(family_name, time.monotonic() - trial_start, fitted)
        return (value, p99) if multi else value

    def callback(study: Any, trial: Any) -> None:
        ledger.write()
        if on_trial is not None:
            on_trial(_summary(trial, multi), ledger.spent())
        if deadline is not None and first_report_s and deadline - time.monotonic() < min(first_report_s):
            study.stop()

    if trials_left != 0 and allowance != 0:
        study.optimize(
            objective,
            n_trials=trials_left,
            timeout=None if allowance is None else max(0.0, start + allowance - time.monotonic()),
            callbacks=[callback],
            catch=(ValueError, ArithmeticError, RuntimeError),
            gc_after_trial=False,
        )
    # finished ones only: an enqueued trial the budget left waiting did not run (the next search runs it)
    trials = [_summary(t, multi) for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    this_search = [t for t in trials if t.number >= ledger.first_trial]
    ledger.write(open_=False)  # ended: the next run starts a new search in the same study
    eligible = [
        t
        for t in trials
        if t.state == "complete" and (not options.latency_aware or t.p99_ms is None or t.p99_ms <= budget_ms)
    ]
    if not eligible:
        counts = SearchResult(name, storage, budget, 0.0, trials[0], [], this_search).counts() if trials else {}
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
    wall = time.monotonic() - start
    return SearchResult(name, storage, budget, wall, best, pareto, this_search, ledger.spent_before)


def objective_names(spec: PipelineSpec) -> list[str]:
    return [spec.metric, LATENCY_OBJECTIVE] if spec.multi_objective else [spec.metric]

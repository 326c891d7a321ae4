"""The outcome of a search that other processes ran: read the shared study, pick the winner the
same way `run_search` does (best eligible value, then lower p99), without running a trial."""

from __future__ import annotations

from fabric.data.dataset import Dataset
from fabric.errors import FabricError
from fabric.search import SearchResult, _summary, study_name
from fabric.spec import PipelineSpec


def redact(url: str) -> str:
    """The storage URL without its password, for logs and lineage."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: say nothing about it
        return "<storage>"


def study_result(spec: PipelineSpec, dataset: Dataset, storage: str, name: str | None = None) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = name or study_name(spec, dataset)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise FabricError(
            f"study {name!r} is not in {redact(storage)}; run the search Job for this spec and data first"
        ) from None
    multi = spec.multi_objective
    trials = [_summary(t, multi) for t in study.get_trials(deepcopy=False)]
    budget_ms = spec.latency_budget.p99_ms
    eligible = [t for t in trials if t.state == "complete" and (t.p99_ms is None or t.p99_ms <= budget_ms)]
    if not eligible:
        states = {s: sum(t.state == s for t in trials) for s in ("complete", "pruned", "failed")}
        raise FabricError(
            f"study {name!r}: no trial completed within latency_budget.p99_ms={budget_ms} ({states}); raise "
            "search.budget_s or fabric:kubernetes.searchWorkers, allow more latency, or use faster families"
        )
    sign = 1 if spec.higher_is_better else -1
    best = max(eligible, key=lambda t: (sign * (t.value or 0.0), -(t.p99_ms or 0.0)))
    pareto = []
    if multi:
        front = {t.number for t in study.best_trials}
        pareto = sorted((t for t in trials if t.number in front), key=lambda t: t.p99_ms or 0.0)
    wall = 0.0
    started = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    ended = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    if started and ended:
        wall = (max(ended) - min(started)).total_seconds()
    return SearchResult(name, redact(storage), spec.search.budget_s, wall, best, pareto, trials)

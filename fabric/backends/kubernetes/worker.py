"""One Optuna worker of the search Indexed Job (and of the distributed-search test and benchmark).

`python -m fabric.backends.kubernetes.worker --spec SPEC --workers N [--index I] [--budget-s S]
[--storage URL]` joins the study named by the spec and the data (`study_name`, the same name
`local` uses) at URL (default: $FABRIC_STUDY_URL) and searches like `local`: the same wall-clock
budget from this worker's start, the same latency budget enforced in-trial. The index defaults to
$JOB_COMPLETION_INDEX, which the Indexed Job sets.

With a run id ($FABRIC_RUN_ID, which the Job sets) the workers of one run share one deadline, kept
in the study: the first to start sets it to its start + budget, so a worker scheduled late stops
with the others instead of a budget later. Workers differ only in their sampler seed (seed +
index), so their first, random trials differ.
A spec with `search.trials` shares them out: each worker runs ceil(trials / N). Prints one JSON
line: the worker's own trials.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from typing import Any

from fabric.errors import FabricError
from fabric.spec import PipelineSpec

STUDY_URL_ENV = "FABRIC_STUDY_URL"
RUN_ID_ENV = "FABRIC_RUN_ID"


def worker_spec(spec: PipelineSpec, index: int, workers: int) -> PipelineSpec:
    update: dict[str, Any] = {"seed": spec.search.seed + index}
    if spec.search.trials is not None:
        update["trials"] = math.ceil(spec.search.trials / workers)
    return spec.model_copy(update={"search": spec.search.model_copy(update=update)})


def _create_tables(storage: str, tries: int = 5) -> None:
    """Workers start together; two creating Optuna's tables at once can collide in PostgreSQL's catalog."""
    import optuna
    import sqlalchemy

    for attempt in range(tries):
        try:
            optuna.storages.RDBStorage(storage)
            return
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as exc:
            if attempt == tries - 1:
                from fabric.backends.kubernetes.study import redact

                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                raise FabricError(
                    f"study storage {redact(storage)}: {reason}; check the URL in the study Secret and that the "
                    "database accepts connections from the cluster"
                ) from None
            time.sleep(0.2 + random.random())


def shared_deadline(spec: PipelineSpec, storage: str, name: str, run_id: str, budget_s: float) -> float:
    """The run's deadline (unix seconds), kept in the study: the first worker to arrive sets it to its
    own start + budget, later ones read it, so workers that start late stop with the others."""
    import optuna

    directions = ["maximize" if spec.higher_is_better else "minimize"] + (["minimize"] if spec.multi_objective else [])
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True)
    key = f"deadline:{run_id}"
    if key not in study.user_attrs:
        study.set_user_attr(key, time.time() + budget_s)
    return float(optuna.load_study(study_name=name, storage=storage).user_attrs[key])


def run_worker(
    spec: PipelineSpec,
    storage: str,
    index: int,
    workers: int,
    budget_s: float | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """`run_id` (the Job's): share one deadline through the study; without it each worker's budget
    runs from its own start."""
    from fabric.data.dataset import prepare
    from fabric.search import SearchOptions, TrialSummary, run_search, study_name

    start = time.monotonic()
    dataset = prepare(spec)
    name = study_name(spec, dataset)  # of the user's spec: every worker, and the train Job, agree on it
    if not storage.startswith("sqlite"):
        _create_tables(storage)
    budget = budget_s if budget_s is not None else spec.search.budget_s
    deadline = None
    if run_id is not None and budget is not None:
        deadline = shared_deadline(spec, storage, name, run_id, budget)
        budget = min(budget, deadline - time.time())
    mine: list[TrialSummary] = []
    error = None
    search_start = time.monotonic()
    if budget is not None and budget <= 0:
        error = "arrived after the run's deadline; no trial started"
    else:
        try:
            run_search(
                worker_spec(spec, index, workers),
                dataset,
                storage,
                name=name,
                budget_s=budget,
                options=SearchOptions(fail_stale=False),
                on_trial=lambda summary, _elapsed: mine.append(summary),
            )
        except FabricError as exc:  # nothing eligible *yet*: other workers may still find it; the train Job decides
            error = str(exc)
    return {
        "worker": index,
        "study": name,
        "trials": [t.number for t in mine],
        "states": {s: sum(t.state == s for t in mine) for s in ("complete", "pruned", "failed")},
        "budget_s": None if budget is None else round(budget, 3),
        "deadline": deadline,
        "search_s": round(time.monotonic() - search_start, 3),
        "wall_s": round(time.monotonic() - start, 3),
        "finished_at": time.time(),
        "error": error,
    }


def main(argv: list[str] | None = None) -> int:
    from fabric.spec import load_pipeline

    parser = argparse.ArgumentParser(prog="python -m fabric.backends.kubernetes.worker")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--index", type=int, default=None, help="default: $JOB_COMPLETION_INDEX")
    parser.add_argument("--budget-s", type=float, default=None, help="default: the spec's search.budget_s")
    parser.add_argument("--storage", default=None, help=f"default: ${STUDY_URL_ENV}")
    parser.add_argument("--run-id", default=os.environ.get(RUN_ID_ENV), help=f"share one deadline (default: ${RUN_ID_ENV})")
    args = parser.parse_args(argv)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    storage = args.storage or os.environ.get(STUDY_URL_ENV)
    if not storage:
        raise FabricError(f"--storage is not given and ${STUDY_URL_ENV} is empty; mount the study Secret's `url`")
    if not 0 <= index < args.workers:
        raise FabricError(f"--index={index} must be in [0, --workers={args.workers})")
    summary = run_worker(load_pipeline(args.spec), storage, index, args.workers, args.budget_s, args.run_id)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    from fabric.errors import run_main

    run_main(main)

"""One Optuna worker of the search Indexed Job (and of the distributed-search test and benchmark).

`python -m fabric.backends.kubernetes.worker --spec SPEC --workers N [--index I] [--budget-s S]
[--storage URL]` joins the study named by the spec and the data (`study_name`, the same name
`local` uses) at URL (default: $FABRIC_STUDY_URL) and searches like `local`: the same wall-clock
budget from this worker's start, the same latency budget enforced in-trial. The index defaults to
$JOB_COMPLETION_INDEX, which the Indexed Job sets.

Workers differ only in their sampler seed (seed + index), so their first, random trials differ.
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
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 + random.random())


def run_worker(
    spec: PipelineSpec, storage: str, index: int, workers: int, budget_s: float | None = None
) -> dict[str, Any]:
    from fabric.data.dataset import prepare
    from fabric.search import SearchOptions, TrialSummary, run_search, study_name

    start = time.monotonic()
    dataset = prepare(spec)
    name = study_name(spec, dataset)  # of the user's spec: every worker, and the train Job, agree on it
    if not storage.startswith("sqlite"):
        _create_tables(storage)
    mine: list[TrialSummary] = []
    error = None
    try:
        run_search(
            worker_spec(spec, index, workers),
            dataset,
            storage,
            name=name,
            budget_s=budget_s,
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
        "wall_s": round(time.monotonic() - start, 3),
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
    args = parser.parse_args(argv)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    storage = args.storage or os.environ.get(STUDY_URL_ENV)
    if not storage:
        raise FabricError(f"--storage is not given and ${STUDY_URL_ENV} is empty; mount the study Secret's `url`")
    if not 0 <= index < args.workers:
        raise FabricError(f"--index={index} must be in [0, --workers={args.workers})")
    summary = run_worker(load_pipeline(args.spec), storage, index, args.workers, args.budget_s)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

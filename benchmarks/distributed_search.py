"""Distributed search: trials per minute as Optuna workers are added to one PostgreSQL study.

For each worker count, a fresh PostgreSQL server (Debian's postgresql, in a temporary folder) and
that many worker processes — `python -m fabric.backends.kubernetes.worker`, the entrypoint of the
search Indexed Job's pods — sharing one study and one deadline (the run id), each one CPU thread.
Reports the trials finished per minute of wall clock (from the shared start to the last worker's
end), how many completed, and the best validation metric.

    python benchmarks/distributed_search.py                       # 1, 2, 4 workers, 60 s each
    python benchmarks/distributed_search.py --workers 1 2 --budget-s 30

Workers beyond the machine's cores only share them: on a 2-core machine expect growth to 2
workers and a plateau after. Prints a table and writes benchmarks/results/distributed_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import postgres_server  # noqa: E402

WORKER = "fabric.backends.kubernetes.worker"


def spec_file(folder: Path, rows: int, budget_s: float, families: list[str]) -> Path:
    spec = {
        "name": "fraud",
        "data": {"source": "builtin:fraud", "target": "is_fraud", "time_column": "event_time",
                 "id_column": "transaction_id", "rows": rows},
        "task": "binary", "metric": "roc_auc",
        "search": {"budget_s": budget_s, "families": families},
        "latency_budget": {"p99_ms": 2.0},
    }  # fmt: skip
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(workers: int, spec: Path, budget_s: float) -> dict[str, Any]:
    import optuna

    with postgres_server() as url:
        env = {**os.environ, "FABRIC_RUN_ID": f"bench-{workers}", "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        command = [sys.executable, "-m", WORKER, "--spec", str(spec), "--workers", str(workers), "--storage", url]
        procs = [
            subprocess.Popen([*command, "--index", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for i in range(workers)
        ]
        outputs = [p.communicate(timeout=budget_s * 3 + 120) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            if proc.returncode != 0:
                raise SystemExit(f"a worker failed ({proc.returncode}):\n{err}")
        reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        study = optuna.load_study(study_name=reports[0]["study"], storage=url)
        trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    start = min(r["deadline"] for r in reports) - budget_s  # the first worker's start of search
    wall = max(r["finished_at"] for r in reports) - start
    return {
        "workers": workers,
        "trials": len(finished),
        "complete": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
        "wall_s": round(wall, 2),
        "trials_per_min": round(len(finished) / wall * 60, 2),
        "complete_per_min": round(len(complete) / wall * 60, 2),
        "best": round(max((t.values[0] for t in complete), default=float("nan")), 5),
        "per_worker": [len(r["trials"]) for r in reports],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--budget-s", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--families", nargs="+", default=["lightgbm", "xgboost"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed_search.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        spec = spec_file(Path(folder), args.rows, args.budget_s, args.families)
        for workers in args.workers:
            print(f"{workers} worker(s), {args.budget_s:g} s ...", file=sys.stderr, flush=True)
            rows.append(run(workers, spec, args.budget_s))
    base = rows[0]["trials_per_min"] or 1.0
    for row in rows:
        row["speedup"] = round(row["trials_per_min"] / base, 2)
    header = f"{'workers':>7} {'trials':>6} {'complete':>8} {'pruned':>6} {'wall s':>7} {'trials/min':>10} {'complete/min':>12} {'speedup':>7} {'best auc':>8}  per worker"
    print(header)
    for r in rows:
        print(f"{r['workers']:>7} {r['trials']:>6} {r['complete']:>8} {r['pruned']:>6} {r['wall_s']:>7} {r['trials_per_min']:>10} "
              f"{r['complete_per_min']:>12} {r['speedup']:>7} {r['best']:>8}  {r['per_worker']}")  # fmt: skip
    machine = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "python": platform.python_version(),
               "platform": platform.platform()}  # fmt: skip
    payload = {"benchmark": "distributed_search", "budget_s": args.budget_s, "rows": args.rows,
               "families": args.families, "machine": machine, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "results": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

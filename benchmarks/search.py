"""Latency-aware search against Optuna's defaults, side by side in one run.

For each wall-clock budget and data set, two searches run on the same splits:
  fabric    TPESampler(seed), per-family median pruning, each family's share of the budget,
            latency budget enforced during search, trials cut at the deadline
  baseline  Optuna's defaults: TPESampler(seed), no pruning, no latency awareness, trials awaited
Each winner is then refit on train+validation and scored on the held-out test split.

    python benchmarks/search.py                      # 60 s and 300 s budgets, every data set
    python benchmarks/search.py --budgets 60 --datasets fraud default
    python benchmarks/search.py --jobs 2             # each pair's two searches at once, one per core

Every family fits, predicts and is timed on one thread, so with `--jobs 2` on a 2-core machine the
two methods of a pair run side by side under the same load, in half the wall time.

Data: the embedded fraud generator (100k rows), ISLP's Caravan and Default, plotnine's diamonds,
read from the CSV files those packages ship (`make bench` installs them; nothing is downloaded).
Prints a table and writes benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import multiprocessing
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.data.dataset import prepare  # noqa: E402
from fabric.families import get_family  # noqa: E402
from fabric.search import SearchOptions, run_search  # noqa: E402
from fabric.spec import PipelineSpec  # noqa: E402
from fabric.train import refit  # noqa: E402

FAMILIES = ["lightgbm", "xgboost", "mlp"]
METHODS = ("fabric", "baseline")
BASELINE = SearchOptions(pruning=False, latency_aware=False, cut_trials=False)


def _package_csv(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed; run `make bench` (it installs islp and plotnine)")
    return Path(spec.origin).parent.joinpath(*parts)


def dataset_specs() -> dict[str, dict[str, Any]]:
    return {
        "fraud": {
            "data": {"source": "builtin:fraud", "target": "is_fraud", "time_column": "event_time",
                     "id_column": "transaction_id", "rows": 100_000},
            "task": "binary", "metric": "roc_auc", "latency_budget": {"p99_ms": 2.0},
        },
        "caravan": {
            "data": {"source": "islp:Caravan", "target": "Purchase"},
            "task": "binary", "metric": "roc_auc", "latency_budget": {"p99_ms": 1.0},
        },
        "default": {
            "data": {"source": "islp:Default", "target": "default", "categorical": ["student"]},
            "task": "binary", "metric": "roc_auc", "latency_budget": {"p99_ms": 1.0},
        },
        "diamonds": {
            "data": {"source": "plotnine:diamonds", "target": "price", "categorical": ["cut", "color", "clarity"]},
            "task": "regression", "metric": "rmse", "latency_budget": {"p99_ms": 1.0},
        },
    }  # fmt: skip


def resolve(source: str) -> str:
    kind, _, name = source.partition(":")
    if kind == "islp":
        return str(_package_csv("ISLP", "data", f"{name}.csv"))
    if kind == "plotnine":
        return str(_package_csv("plotnine", "data", f"{name}.csv"))
    return source


@dataclass
class Row:
    seed: int
    budget_s: float
    dataset: str
    method: str
    family: str
    best_validation: float
    test_metric: float
    metric: str
    trials_complete: int
    trials_pruned_latency: int
    trials_pruned_metric: int
    trials_cut: int
    wall_s: float
    p99_ms: float
    latency_budget_ms: float

    @property
    def overrun(self) -> float:
        return self.wall_s / self.budget_s - 1


def run_one(name: str, raw: dict[str, Any], budget: float, method: str, workdir: Path, seed: int = 0) -> Row:
    raw = {**raw, "data": {**raw["data"], "source": resolve(raw["data"]["source"])}}
    spec = PipelineSpec.model_validate(
        {"name": name, **raw, "search": {"budget_s": budget, "families": FAMILIES, "seed": seed}}
    )
    dataset = prepare(spec)
    options = BASELINE if method == "baseline" else SearchOptions()
    storage = f"sqlite:///{workdir / f'{name}-{budget:g}-{method}-{seed}.db'}"
    result = run_search(spec, dataset, storage=storage, budget_s=budget, options=options)
    trained = refit(spec, dataset, result.best)
    counts = result.counts()
    return Row(
        seed=seed,
        budget_s=budget,
        dataset=name,
        method=method,
        family=result.best.family,
        best_validation=float(result.best.value or 0.0),
        test_metric=float(trained.metrics["test"][spec.metric]),
        metric=spec.metric,
        trials_complete=counts["complete"],
        trials_pruned_latency=counts["pruned_latency"],
        trials_pruned_metric=counts["pruned_metric"],
        trials_cut=counts["cut_deadline"],
        wall_s=result.wall_s,
        p99_ms=trained.latency.p99_ms,
        latency_budget_ms=spec.latency_budget.p99_ms,
    )


def verdicts(rows: list[Row]) -> dict[str, Any]:
    """Overrun and latency per row; the validation metric compared as the mean over the seeds both
    methods ran, since one seed's best-of-N on a small validation split is mostly luck."""
    fabric = [r for r in rows if r.method == "fabric"]
    keys = sorted({(r.dataset, r.budget_s) for r in rows})
    comparison = {}
    for dataset, budget in keys:
        by_seed = {m: {r.seed: r.best_validation for r in rows if (r.dataset, r.budget_s, r.method) == (dataset, budget, m)}
                   for m in ("fabric", "baseline")}  # fmt: skip
        seeds = sorted(by_seed["fabric"].keys() & by_seed["baseline"].keys())
        if not seeds:  # a run cut short after one method's row: nothing to compare yet
            continue
        mean = {m: float(np.mean([values[s] for s in seeds])) for m, values in by_seed.items()}
        higher = next(r.metric for r in rows if r.dataset == dataset) not in ("rmse", "mae")
        ok = mean["fabric"] >= mean["baseline"] if higher else mean["fabric"] <= mean["baseline"]
        # paired by seed (same splits, same seed): fabric's advantage, in the metric's better direction
        gains = [(1 if higher else -1) * (by_seed["fabric"][s] - by_seed["baseline"][s]) for s in seeds]
        stderr = round(float(np.std(gains, ddof=1) / np.sqrt(len(gains))), 5) if len(gains) > 1 else None
        comparison[f"{dataset}@{budget:g}s"] = {
            "fabric": round(mean["fabric"], 5), "baseline": round(mean["baseline"], 5), "ok": ok,
            "paired_gain": round(float(np.mean(gains)), 5), "paired_gain_stderr": stderr, "seeds": len(gains),
        }  # fmt: skip
    return {
        "overrun_within_10pct": all(r.overrun <= 0.10 for r in fabric),
        "p99_within_budget": all(r.p99_ms <= r.latency_budget_ms for r in fabric),
        "validation_at_least_baseline": bool(comparison) and all(c["ok"] for c in comparison.values()),
        "validation_mean_over_seeds": comparison,
    }


def print_table(rows: list[Row]) -> None:
    header = ("budget", "data", "seed", "method", "family", "valid", "test", "done", "lat-pruned", "pruned", "cut",
              "wall/budget", "p99 ms")  # fmt: skip
    lines = [header]
    for r in rows:
        lines.append((
            f"{r.budget_s:g}", r.dataset, str(r.seed), r.method, r.family, f"{r.best_validation:.4f}", f"{r.test_metric:.4f}",
            str(r.trials_complete), str(r.trials_pruned_latency), str(r.trials_pruned_metric), str(r.trials_cut),
            f"{r.wall_s:.1f}/{r.budget_s:g} ({r.overrun:+.0%})", f"{r.p99_ms:.3f}/{r.latency_budget_ms:g}",
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def _warm_up() -> None:
    """Imports paid once per process, before any timed run, so neither method pays them."""
    for family in FAMILIES:
        get_family(family).warm_up()


def run_pairs(args: argparse.Namespace, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    specs = dataset_specs()
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state in the workers
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_warm_up) as pool:
        if args.jobs > 1:  # start every worker (and its warm-up) before the first timed pair
            list(pool.map(time.sleep, [0.5] * args.jobs))
        for budget in args.budgets:
            for seed in args.seeds:  # seed-major: a long run stopped early has whole seeds
                for name in args.datasets:
                    clock = time.monotonic()
                    pair = [pool.submit(run_one, name, specs[name], budget, method, workdir, seed)
                            for method in METHODS]  # fmt: skip
                    for method, future in zip(METHODS, pair, strict=True):
                        rows.append(future.result())
                        print(f"# {name} seed {seed} {method} {budget:g}s done at {time.monotonic() - clock:.0f}s", file=sys.stderr)
                    write(rows, args.out)  # after every pair: an interrupted run keeps what it measured
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 300])
    parser.add_argument("--datasets", nargs="+", default=list(dataset_specs()), choices=list(dataset_specs()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="each row is run once per seed")
    parser.add_argument("--jobs", type=int, default=1, choices=[1, 2],
                        help="2: run a pair's two searches at once, one per core (needs 2 idle cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rows = run_pairs(args, Path(tmp))
    print_table(rows)
    print(json.dumps(write(rows, args.out)["verdicts"]))
    print(f"wrote {args.out}")


def write(rows: list[Row], out: Path) -> dict[str, Any]:
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "rows": [{**r.__dict__, "overrun": round(r.overrun, 4)} for r in rows],
        "verdicts": verdicts(rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

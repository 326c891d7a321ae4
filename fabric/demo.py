"""The end-to-end demo on the embedded default, as `make demo` runs it:

search -> train -> quantize -> register -> deploy (a live local endpoint) -> normal traffic ->
a drift episode (the generator's `drift` knob shifts amounts, channels, card ages and adds a fraud
pattern) -> the monitor's alarm -> retrain on fresh labelled traffic -> champion vs challenger ->
promotion by a zero-downtime swap, with the time of each step and a drift report in HTML.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


from fabric.backends import backend_for
from fabric.spec import load_pipeline, load_stack

BATCH_ROWS = 20  # rows per request: the demo's clients score small batches


def send_traffic(url: str, frame: Any, features: list[str], prefix: str) -> list[tuple[str, int]]:
    """POST the rows in batches with request ids; return (row id, label) pairs for the label feed."""
    import httpx

    labels: list[tuple[str, int]] = []
    records = frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    truth = frame["is_fraud"].tolist()
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(records), BATCH_ROWS):
            request_id = f"{prefix}-{start // BATCH_ROWS}"
            batch = records[start : start + BATCH_ROWS]
            response = client.post(f"{url}/invocations", json={"records": batch}, headers={"X-Request-Id": request_id})
            response.raise_for_status()
            labels += [(f"{request_id}:{i}", truth[start + i]) for i in range(len(batch))]
    return labels


def run_demo(spec_path: Path, stack: str, budget_s: float | None = None, show_progress: bool = True,
             drift_rows: int = 8000, say: Any = print, keep_running: bool = False) -> dict[str, Any]:  # fmt: skip
    from fabric.cli._progress import RichProgress
    from fabric.data.synthetic import generate_fraud
    from fabric.monitor.loop import DriftLoop
    from fabric.monitor.report import write_drift_report
    from fabric.monitor.traffic import append_labels

    spec = load_pipeline(spec_path)
    settings = load_stack(stack)
    backend = backend_for(settings)
    timings: dict[str, float] = {}
    with RichProgress(enabled=show_progress) as progress:
        result = backend.run(spec, progress=progress, budget_s=budget_s)
    say(f"registered {result.version.address} ({result.version.lineage.family}, {result.version.lineage.precision}) "
        f"in {sum(result.timings_s.values()):.0f} s")  # fmt: skip

    clock = time.monotonic()
    deployed = backend.deploy(result.version.address, "all_at_once", endpoint=spec.name)
    timings["registry_to_live"] = time.monotonic() - clock
    say(f"deployed {deployed.version} at {deployed.url} in {timings['registry_to_live']:.1f} s")
    try:
        features = [f["name"] for f in json.loads((result.version.path / "schema.json").read_text())["features"]]
        labels_dir = backend.home / "labels" / spec.name
        loop = DriftLoop(backend, spec.name)

        window = spec.drift.window_rows
        normal = generate_fraud(rows=2 * window, seed=101)
        append_labels(labels_dir, send_traffic(deployed.url, normal, features, "normal"))
        quiet = loop.run_once()
        say(f"normal traffic: {len(quiet.windows)} windows, verdicts {[w['verdict'] for w in quiet.windows]}")

        say(f"injecting drift: {drift_rows} rows from the generator with drift=1.0")
        clock = time.monotonic()
        drifted = generate_fraud(rows=drift_rows, seed=202, drift=1.0)
        labels = send_traffic(deployed.url, drifted, features, "drift")
        timings["drifted_traffic"] = time.monotonic() - clock
        append_labels(labels_dir, labels)  # ground truth arrives after the predictions
        report = loop.run_once()
        timings.update({f"monitor_{k}": v for k, v in report.timings_s.items()})
        live = backend._deployer().endpoints.ping(backend._deployer().endpoints.get(spec.name))  # noqa: SLF001
        timings["first_drifted_window_to_serving"] = time.monotonic() - clock
        html = write_drift_report(backend.home / "monitor" / f"{spec.name}-drift.html", loop.state_path, spec.drift.threshold_sigma, report)
        say(f"monitor: {report.decision}. {report.reason}")
        if report.comparison:
            c = report.comparison
            say(f"  {c['metric']} on {c['rows']} recent labelled rows: champion {c['champion']} vs challenger {c['challenger']}")
        say(f"serving now: {live and live.get('model')}; drift report: {html}")
        say("step times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    finally:  # a failed episode must not leave a server behind
        if keep_running:
            say(f"endpoint {spec.name} keeps running at {deployed.url}; stop it with `fabric endpoints stop {spec.name}`")
        else:
            backend._deployer().endpoints.stop(spec.name)  # noqa: SLF001
    return {"run": result.to_dict(), "run_result": result, "deploy": deployed.to_dict(), "monitor": report.to_dict(),
            "serving": live, "timings_s": {k: round(v, 2) for k, v in timings.items()}, "drift_report": str(html)}  # fmt: skip



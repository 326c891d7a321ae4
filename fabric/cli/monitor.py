"""`fabric monitor --stack ENV`: watch live endpoints for drift and retrain on alarm; and
`fabric labels add` for ground truth that arrives after the predictions."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fabric.cli._common import echo_json, json_option, stack_option


@click.command("monitor")
@stack_option
@click.option("--endpoint", default=None, help="Endpoint to watch (default: every endpoint of the stack).")
@click.option("--every", "every_s", type=float, default=None, help="Repeat every N seconds (default: one pass).")
@click.option("--labels-wait-s", type=float, default=0.0, show_default=True,
              help="On an alarm, wait this long for labels of the drifted traffic before deciding.")  # fmt: skip
@click.option("--detect-only", is_flag=True, help="Record alarms but do not retrain (a scheduler starts retraining).")
@click.option("--evidently-report", is_flag=True,
              help="Also write Evidently's data-drift report on a sample of the recent window to "
                   "$FABRIC_HOME/<stack>/monitor/<endpoint>-evidently.html (needs the evidently extra).")  # fmt: skip
@json_option
def monitor(stack: str, endpoint: str | None, every_s: float | None, labels_wait_s: float, detect_only: bool,
            evidently_report: bool, as_json: bool) -> None:  # fmt: skip
    """Read each endpoint's captured traffic, score complete windows for drift (per feature and on
    predictions, calibrated sigma scores, Holm-corrected, minimum effect, persistence), and on an
    alarm retrain on reference + fresh labelled traffic, compare challenger and champion on recent
    labelled rows, and promote a challenger that wins by drift.promote_margin (zero-downtime swap).
    An alarm without enough labels stays open until `fabric labels add` brings them. For models
    served with feature tables, each pass also checks train/serve skew on the captured lookups.

    \b
    Examples:
      fabric monitor --stack dev                 # one pass over every endpoint
      fabric monitor --stack dev --every 60      # a loop, e.g. from cron or a Kubernetes CronJob
      fabric monitor --stack dev --evidently-report   # plus Evidently's HTML report per endpoint
    """
    from fabric.backends import backend_for
    from fabric.errors import CapabilityError
    from fabric.monitor.loop import DriftLoop
    from fabric.serving.endpoints import Endpoints
    from fabric.spec import load_stack

    from fabric.backends.local import LocalBackend

    settings = load_stack(stack)
    backend = backend_for(settings)
    if not hasattr(backend, "home"):
        if not detect_only:
            raise CapabilityError(f"the {backend.name} backend of stack {stack} retrains through its own jobs; "
                                  "run `fabric monitor --detect-only` here")  # fmt: skip
        backend = LocalBackend(settings)  # the registry and capture on the shared volume ($FABRIC_HOME)
    names = [endpoint] if endpoint else Endpoints(backend.home, stack).names()
    if not names:
        click.echo(f"no endpoints in stack {stack}; deploy one with `fabric deploy`", err=True)
        raise SystemExit(2)
    if evidently_report:
        from fabric._imports import require

        require("evidently")  # the install hint before any pass
    while True:
        reports = []
        for name in names:
            loop = DriftLoop(backend, name)
            report = loop.run_once(labels_wait_s=labels_wait_s, detect_only=detect_only)
            if evidently_report:
                report.evidently = loop.evidently_report(backend.home / "monitor" / f"{name}-evidently.html")
            reports.append(report)
        if as_json:
            echo_json([r.to_dict() for r in reports])
        else:
            for r in reports:
                _print(r)
        if every_s is None:
            return
        time.sleep(every_s)


def _print(report) -> None:  # noqa: ANN001 - MonitorReport
    click.echo(f"{report.endpoint} ({report.model}): {len(report.windows)} window(s), {report.pending_rows} rows pending"
               + (f", skipped {report.skipped}" if any(report.skipped.values()) else ""))  # fmt: skip
    for w in report.windows:
        top = sorted(w["sigmas"].items(), key=lambda kv: -kv[1])[:3]
        click.echo(f"  window {w['verdict']:<9} max {w['max_sigma']:6.2f} sigma  " + ", ".join(f"{c} {s:.1f}" for c, s in top))
    if report.skew and "error" in report.skew:
        click.echo(f"  {report.skew['error']}")
    elif report.skew:
        s = report.skew
        click.echo(f"  {'SKEW ALARM' if s['alarm'] else 'skew ok'}: {s['mismatched']} of {s['checked']} online lookups differ "
                   f"from the offline store (rate {s['mismatch_rate']:.4f}, alarm above {s['max_mismatch_rate']}); report {s['report']}")  # fmt: skip
    if report.alarm:
        click.echo(f"  ALARM: drift in {', '.join(report.alarm['columns'])}")
    if report.retrain:
        click.echo(f"  retrained {report.retrain['challenger']} on {report.retrain['rows']} rows in {report.retrain['seconds']} s")
    if report.comparison:
        c = report.comparison
        click.echo(f"  {c['metric']} on {c['rows']} recent labelled rows: champion {c['champion']}, challenger {c['challenger']}")
    if report.evidently:
        e = report.evidently
        click.echo(f"  evidently: {len(e['drifted'])} drifted column(s) {e['drifted']}; report {e['report']}")
    if report.decision != "none" or report.reason:
        click.echo(f"  decision: {report.decision}. {report.reason}")


@click.group("labels")
def labels() -> None:
    """Ground truth for served predictions, joined to captured traffic by request id."""


@labels.command("add")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--model", "model_name", required=True, help="Model name the labels belong to (e.g. fraud).")
@stack_option
def add(path: Path, model_name: str, stack: str) -> None:
    """Add labels from a CSV or JSONL file with columns request_id and label."""
    import pandas as pd

    from fabric.errors import DataError
    from fabric.monitor.traffic import append_labels
    from fabric.registry import fabric_home

    frame = pd.read_json(path, lines=True) if path.suffix == ".jsonl" else pd.read_csv(path)
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; labels need request_id and label")
    count = append_labels(fabric_home() / stack / "labels" / model_name,
                          list(zip(frame["request_id"].astype(str), frame["label"].tolist(), strict=True)))  # fmt: skip
    click.echo(f"added {count} labels for {model_name} in stack {stack}")

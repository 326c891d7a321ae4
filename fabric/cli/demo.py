"""`fabric demo`: the whole lifecycle on the embedded data, as `make demo` runs it."""

from __future__ import annotations

from pathlib import Path

import click

from fabric.cli._common import echo_json, json_option, stack_option


@click.command("demo")
@stack_option
@click.option("--spec", "spec_path", type=click.Path(path_type=Path), default=None,
              help="Pipeline spec (default: pipelines/fraud.yaml of the project).")  # fmt: skip
@click.option("--budget-s", type=float, default=None, help="Override the search budget (seconds).")
@click.option("--keep-running", is_flag=True, help="Leave the demo's endpoint running afterwards.")
@json_option
def demo(stack: str, spec_path: Path | None, budget_s: float | None, keep_running: bool, as_json: bool) -> None:
    """Run the embedded fraud use case end to end on the local backend: generate the data, search
    within the latency budget, refit, quantize, register with lineage, deploy a live endpoint, send
    traffic, inject drift, and watch the monitor alarm, retrain and promote the challenger; prints
    the time of each step and writes a drift report (HTML) beside the endpoint."""
    from fabric.cli.run import _print_summary
    from fabric.demo import run_demo
    from fabric.spec import project_root

    spec_path = spec_path or project_root() / "pipelines" / "fraud.yaml"
    say = (lambda _: None) if as_json else click.echo
    result = run_demo(spec_path, stack, budget_s=budget_s, show_progress=not as_json, say=say, keep_running=keep_running)
    if as_json:
        echo_json({k: v for k, v in result.items() if k != "run_result"})
        return
    _print_summary(result["run_result"])
    click.echo(f"drift episode: {result['monitor']['decision']}; serving {result['serving'] and result['serving'].get('model')}; "
               f"report {result['drift_report']}")

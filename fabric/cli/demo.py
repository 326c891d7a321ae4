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
@json_option
def demo(stack: str, spec_path: Path | None, budget_s: float | None, as_json: bool) -> None:
    """Run the embedded fraud use case end to end on the local backend: generate the data, search
    within the latency budget, refit, register with lineage, and print what happened at each step."""
    from fabric.cli.run import _print_summary
    from fabric.demo import run_demo
    from fabric.spec import project_root

    spec_path = spec_path or project_root() / "pipelines" / "fraud.yaml"
    result = run_demo(spec_path, stack, budget_s=budget_s, show_progress=not as_json)
    if as_json:
        echo_json({k: v for k, v in result.items() if k != "run_result"})
        return
    _print_summary(result["run_result"])

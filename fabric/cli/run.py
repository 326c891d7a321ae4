"""`fabric run SPEC --stack ENV`: search -> train -> register on the stack's backend."""

from __future__ import annotations

from pathlib import Path

import click

from fabric.cli._common import echo_json, json_option, stack_option


@click.command("run")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@stack_option
@click.option("--budget-s", type=float, default=None, help="Override search.budget_s (wall-clock seconds).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what the stack's backend would create (kubernetes: the manifests, multi-document YAML) and stop.",
)
@json_option
def run(spec_path: Path, stack: str, budget_s: float | None, dry_run: bool, as_json: bool) -> None:
    """Run the lifecycle of SPEC (a pipelines/*.yaml file): search within the budgets, refit the
    winner, evaluate it on the test split, register it with lineage as `<name>@candidate`, and write
    a model card and an HTML report beside its artifacts.

    \b
    Examples:
      fabric run pipelines/fraud.yaml --stack dev
      fabric run pipelines/diabetes.yaml --budget-s 10 --json
      fabric run pipelines/fraud.yaml --stack onprem --dry-run > fraud.yaml
    """
    from fabric.backends import backend_for
    from fabric.backends.base import Renders
    from fabric.cli._progress import RichProgress
    from fabric.errors import CapabilityError, FabricError
    from fabric.spec import load_pipeline, load_stack

    if budget_s is not None and budget_s <= 0:
        raise FabricError(f"--budget-s={budget_s} must be > 0; give the search some seconds")
    spec = load_pipeline(spec_path)
    settings = load_stack(stack)
    backend = backend_for(settings)
    if dry_run:
        if not isinstance(backend, Renders):
            raise CapabilityError(
                f"--dry-run: stack {stack} runs on fabric:backend={settings.backend}, which has nothing to print; "
                "use a stack whose backend is kubernetes, or drop --dry-run"
            )
        click.echo(backend.render_yaml(spec, budget_s=budget_s), nl=False)
        return
    with RichProgress(enabled=not as_json) as progress:
        result = backend.run(spec, progress=progress, budget_s=budget_s)
    if as_json:
        echo_json(result.to_dict())
        return
    if not hasattr(result, "version"):  # a remote backend: its registry is not on this machine
        echo_json(result.to_dict())
        return
    _print_summary(result)


def _print_summary(result) -> None:  # noqa: ANN001 - RunResult
    from rich.console import Console
    from rich.table import Table

    console = Console()
    version = result.version
    counts = result.search.counts()
    table = Table(title=f"registered {version.address} ({', '.join(version.aliases)})", show_header=False)
    table.add_row("family", version.lineage.family)
    for metric, value in version.metrics.get("test", {}).items():
        table.add_row(f"test {metric}", f"{value:.5f}")
    lat = version.latency
    table.add_row("p50 / p99 (single row)", f"{lat['p50_ms']:.4f} / {lat['p99_ms']:.4f} ms")
    table.add_row(
        "search",
        f"{counts['complete']} complete, {counts['pruned_metric']} pruned (metric), {counts['pruned_latency']} pruned "
        f"(latency), {counts['cut_deadline']} cut at deadline; {result.search.wall_s:.1f} s of {result.search.budget_s} s"
        + (f" (+{result.search.spent_before_s:.1f} s before an interruption)" if result.search.spent_before_s else ""),
    )
    table.add_row("timings", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items()))
    table.add_row("artifacts", str(version.path))
    table.add_row("report", str(result.report))
    console.print(table)

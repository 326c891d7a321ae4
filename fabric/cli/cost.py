"""`fabric cost --stack ENV`: what runs cost, per run, model version, model or stack."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, stack_option


@click.command("cost")
@stack_option
@click.option("--by", type=click.Choice(["run", "version", "model", "stack"]), default="version", show_default=True)
@json_option
def cost(stack: str, by: str, as_json: bool) -> None:
    """Compute spend from the cost ledger: seconds per run priced on the stack's training pool
    (fabric/prices.yaml, dated; override with fabric:prices), what spot capacity saved against
    on-demand, and how much smaller quantization made the served model."""
    from fabric.cost import read_ledger, summarize
    from fabric.registry import fabric_home

    rows = summarize(read_ledger(fabric_home() / stack), by)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no runs recorded in stack {stack} yet; `fabric run` records each one")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cost of stack {stack} by {by} (estimates)")
    for column in (by, "runs", "seconds", "USD", "USD on-demand", "spot saved", "priced on", "served", "size vs fp32"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r[by]), str(r["runs"]), f"{r['seconds']:.0f}", f"{r['usd']:.4f}", f"{r['usd_on_demand']:.4f}",
                      f"{r['spot_savings_usd']:.4f}", f"{r['instance_type']} {r['capacity_type']}", str(r["served_precision"]),
                      "-" if r["model_size_vs_fp32"] is None else f"{r['model_size_vs_fp32']:.2f}x")  # fmt: skip
    Console(width=160).print(table)

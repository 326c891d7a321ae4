"""`fabric policy check --stack ENV`: the pull-request policy check, no credentials needed."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, stack_option


@click.group("policy")
def policy() -> None:
    """Policy as code: latency budgets, lineage, security, quotas (rules in fabric/policy/rules.py)."""


@policy.command("check")
@stack_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True,
              help="markdown is fit for a pull-request comment.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def check(stack: str, fmt: str, as_json: bool) -> None:
    """Plan STACK's Pulumi program under mocks, read the evidence of its pinned models (the registry
    under FABRIC_HOME, else the stacks/evidence/<stack>/<name>-<version>.json that `fabric promote`
    commits, so CI needs no registry), and evaluate every rule. Exits 1 when the stack's enforcement is mandatory and a rule is violated
    (advisory stacks report and exit 0).

    \b
    Examples:
      fabric policy check --stack prod
      fabric policy check --stack prod --format markdown > comment.md
    """
    from fabric.policy.check import run_check

    report = run_check(stack)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        echo_json(report.to_dict())
    elif fmt == "markdown":
        click.echo(report.markdown(), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"policy check: stack {stack} ({report.enforcement}), {report.resources} resources")
        for column in ("rule", "subject", "finding"):
            table.add_column(column, overflow="fold")
        for v in report.violations:
            table.add_row(v.rule, v.subject, v.message)
        Console(width=160).print(table)
        for endpoint, source in sorted(report.evidence.items()):
            click.echo(f"evidence of {endpoint}'s pinned model: {source}")
        click.echo("FAILED" if report.failed else ("passed with findings" if report.violations else "passed"))
    if report.failed:
        raise SystemExit(1)

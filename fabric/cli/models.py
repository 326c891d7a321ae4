"""`fabric models list|show|lineage|alias|rollback|approve`: the stack's registry."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, stack_option


def _registry(stack: str):  # noqa: ANN202 - fabric.registry.Registry
    from fabric.registry import open_registry

    return open_registry(stack)  # `--stack` was checked: an unknown one is an error, not a new empty registry


@click.group("models")
def models() -> None:
    """Registered model versions of a stack. Addresses: NAME (latest), NAME:VERSION, NAME@ALIAS."""


@models.command("list")
@click.argument("name", required=False)
@stack_option
@json_option
def list_(name: str | None, stack: str, as_json: bool) -> None:
    """List versions (of NAME, or of every model)."""
    versions = _registry(stack).list(name)
    if as_json:
        echo_json([v.to_dict() for v in versions])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in stack {stack}")
    for column in ("address", "aliases", "family", "test metric", "p99 ms", "created", "by"):
        table.add_column(column)
    for v in versions:
        test = v.metrics.get("test", {})
        metric = next(iter(test.items()), ("", ""))
        table.add_row(v.address, ",".join(v.aliases), v.lineage.family, f"{metric[0]} {metric[1]}",
                      str(v.latency.get("p99_ms")), v.created_at, v.created_by)  # fmt: skip
    Console().print(table)


@models.command("show")
@click.argument("address")
@stack_option
@json_option
def show(address: str, stack: str, as_json: bool) -> None:
    """Show one version: metrics, latency, lineage, artifacts."""
    version = _registry(stack).get(address)
    if as_json:
        echo_json(version.to_dict())
        return
    from rich.console import Console
    from rich.pretty import Pretty

    console = Console()
    console.print(f"[bold]{version.address}[/bold] aliases={list(version.aliases)} created {version.created_at} by {version.created_by}")
    console.print(Pretty({"metrics": version.metrics.get("test"), "latency": version.latency}))
    console.print(Pretty({"lineage": version.lineage.__dict__}))
    console.print(f"artifacts: {version.path} {sorted(version.artifacts)}")


@models.command("lineage")
@click.argument("address")
@stack_option
@json_option
def lineage(address: str, stack: str, as_json: bool) -> None:
    """The chain of versions behind ADDRESS (parents, promotions) and its recorded events."""
    payload = []
    seen: set[str] = set()
    while address and f"{stack}/{address}" not in seen:  # across stacks through promoted_from
        registry = _registry(stack)
        chain = registry.lineage_chain(address)
        payload += [
            {"address": v.address, "stack": stack, "lineage": v.lineage.__dict__, "events": registry.events(v.name, v.version)}
            for v in chain
        ]
        seen.add(f"{stack}/{address}")
        origin = chain[-1].lineage.promoted_from
        stack, _, address = (origin or "").partition("/")
    if as_json:
        echo_json(payload)
        return
    for item in payload:
        lin = item["lineage"]
        click.echo(f"{item['stack']}/{item['address']}  family={lin['family']} data={lin['dataset_fingerprint']} "
                   f"spec={lin['spec_hash']} code={lin['code_version']} study={lin['study']}#{lin['trial']} "
                   f"parent={lin['parent']} promoted_from={lin['promoted_from']}")  # fmt: skip
        for event in item["events"]:
            detail = {k: v for k, v in event.items() if k not in ("id", "version", "kind", "at", "actor", "lineage")}
            click.echo(f"    {event['at']} {event['kind']:<10} by {event['actor']} {detail}")


@models.command("alias")
@click.argument("address")
@click.argument("alias")
@stack_option
def alias(address: str, alias: str, stack: str) -> None:
    """Point ALIAS (champion, challenger, candidate, archived, ...) at ADDRESS."""
    version = _registry(stack).set_alias(address, alias, reason="cli")
    click.echo(f"{version.name}@{alias} -> {version.address}")


@models.command("rollback")
@click.argument("name")
@click.option("--alias", "alias_", default="champion", show_default=True)
@click.option("--to", "to", type=int, default=None, help="Version to restore (default: the alias's previous target).")
@stack_option
def rollback(name: str, alias_: str, to: int | None, stack: str) -> None:
    """Point NAME@ALIAS back at an earlier version."""
    before, version = _registry(stack).rollback(name, alias_, to)
    click.echo(f"{name}@{alias_}: {name}:{before} -> {version.address}")


@models.command("approve")
@click.argument("address")
@click.option("--by", required=True, help="Who approves (recorded in lineage).")
@click.option("--note", default="", help="Why.")
@stack_option
def approve(address: str, by: str, note: str, stack: str) -> None:
    """Record an approval of ADDRESS (promotion to a mandatory stack requires approvals)."""
    from fabric.policy.evidence import refresh, relative
    from fabric.spec import project_root

    version = _registry(stack).approve(address, by, note)
    click.echo(f"{version.address} approved by {by} ({len(version.lineage.approvals)} approval(s))")
    updated = refresh(project_root(), stack, version)  # a promoted version's committed evidence follows
    if updated is not None:
        click.echo(f"updated {relative(project_root(), updated)}; commit it with the approval")

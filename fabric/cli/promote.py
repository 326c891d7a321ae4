"""`fabric promote MODEL --from staging --to prod`, and `fabric promote --rollback --to prod`."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, known_stack


@click.command("promote")
@click.argument("address", metavar="MODEL", required=False)
@click.option("--from", "source", default=None, callback=known_stack, help="Source stack (default: the target's fabric:promoteFrom).")
@click.option("--to", "target", required=True, callback=known_stack, help="Target stack, e.g. prod.")
@click.option("--endpoint", default=None, help="Endpoint to pin (default: the model's name).")
@click.option("--rollback", is_flag=True, help="Restore the pin the last promotion into --to replaced.")
@json_option
def promote(address: str | None, source: str | None, target: str, endpoint: str | None, rollback: bool, as_json: bool) -> None:
    """Promote MODEL (`name:version` or `name@alias` in the source stack) to the target stack: check
    the target's policies with it pinned (latency within the endpoint's budget, complete lineage,
    approvals, no pickle), copy its artifacts (digest-checked) and lineage into the target registry
    (on a sagemaker target also its bucket and an Approved model package), and write the pinned
    version into stacks/Pulumi.<target>.yaml, the one-line diff a pull request reviews and `pulumi up`
    applies, with its evidence in stacks/evidence/<target>/ for `fabric policy check` in CI. A
    refused or interrupted promotion changes nothing and names the rule.

    \b
    Examples:
      fabric models approve fraud:3 --stack staging --by alice
      fabric promote fraud:3 --from staging --to prod
      fabric promote --rollback --to prod --endpoint fraud
    """
    from fabric import promote as promotion
    from fabric.errors import FabricError
    from fabric.spec import load_stack

    if rollback:
        if not endpoint and not address:
            raise FabricError("--rollback needs --endpoint (or MODEL, whose name is the endpoint)")
        result = promotion.rollback(target, endpoint or address.split(":")[0].split("@")[0])  # type: ignore[union-attr]
    else:
        if not address:
            raise FabricError("MODEL is required (e.g. fraud:3), or pass --rollback")
        source = source or load_stack(target).promote_from
        if not source:
            raise FabricError(f"--from is required: stack {target} has no fabric:promoteFrom")
        result = promotion.promote(address, source, target, endpoint)
    if as_json:
        echo_json(result.to_dict())
    elif rollback:
        click.echo(f"{target}: {result.endpoint} pinned back to {result.target} (was {result.previous}); {result.stack_file}")
    else:
        click.echo(f"promoted {result.source} -> {result.target}; pinned in {result.stack_file} (was {result.previous})")

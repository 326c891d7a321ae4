"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
from typing import Any

import click


def known_stack(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for every option that names a stack: an unknown stack is the one-line error
    naming stacks/Pulumi.<stack>.yaml and the stacks there are (exit 2), before the command runs,
    so that no command reads or creates state for a stack that does not exist."""
    if value is None:
        return None
    from fabric.spec import existing_stack_file

    existing_stack_file(value, option=(param.opts or [f"--{param.name}"])[0])
    return value


stack_option = click.option(
    "--stack",
    "stack",
    default="dev",
    show_default=True,
    envvar="FABRIC_STACK",
    callback=known_stack,
    help="Environment stack: stacks/Pulumi.<stack>.yaml (env FABRIC_STACK).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))

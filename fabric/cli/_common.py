"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
from typing import Any

import click

stack_option = click.option(
    "--stack",
    "stack",
    default="dev",
    show_default=True,
    envvar="FABRIC_STACK",
    help="Environment stack: stacks/Pulumi.<stack>.yaml (env FABRIC_STACK).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))

"""The `fabric` command group. Each command lives in its own module and is imported only when run,
so `fabric --help` stays fast (no torch, onnxruntime, optuna, pulumi or boto3 at start-up)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from fabric import __version__

# command name -> (module, attribute, one-line help shown by `fabric --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("fabric.cli.run", "run", "Run a pipeline spec: search -> train -> register."),
    "demo": ("fabric.cli.demo", "demo", "The whole lifecycle end to end on the embedded data."),
    "models": ("fabric.cli.models", "models", "List, inspect and re-alias registered models."),
    "deploy": ("fabric.cli.deploy", "deploy", "Put a model version live: all-at-once, canary, shadow, blue/green."),
    "endpoints": ("fabric.cli.endpoints", "endpoints", "List live endpoints, their slots, traffic and health; stop them."),
    "rollback": ("fabric.cli.endpoints", "rollback", "Put an endpoint's previous champion back live."),
    "monitor": ("fabric.cli.monitor", "monitor", "Watch live endpoints for drift; retrain and promote on alarm."),
    "labels": ("fabric.cli.monitor", "labels", "Add ground-truth labels for served predictions (joined by request id)."),
    "policy": ("fabric.cli.policy", "policy", "Check a stack against the policy rules (PR-ready, no credentials)."),
    "promote": ("fabric.cli.promote", "promote", "Promote an approved model between stacks with its lineage; or roll back."),
    "cost": ("fabric.cli.cost", "cost", "Spend per run, model version or stack, and what spot and quantization saved."),
    "infra": ("fabric.cli.infra", "infra", "Plan a stack's Pulumi program without credentials (under mocks)."),
    "features": ("fabric.cli.features", "features", "Feature tables: apply, materialize, get, skew."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # help lines come from COMMANDS so that listing them imports no command module
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fabric")
def cli() -> None:
    """Run the ML lifecycle (search, train, quantize, register, deploy, monitor, retrain) on the
    `local` backend, SageMaker or Kubernetes, against the stacks in stacks/Pulumi.<env>.yaml.

    \b
    Environment:
      FABRIC_HOME           where registries, studies and endpoints live (default: ./.fabric)
      FABRIC_PROJECT_ROOT   the folder holding Pulumi.yaml (default: nearest parent of the cwd)
      FABRIC_DEBUG=1        show tracebacks for user errors
    """


def main() -> None:
    from fabric.errors import FabricError

    try:
        cli.main(standalone_mode=False)
    except FabricError as exc:
        if os.environ.get("FABRIC_DEBUG"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)

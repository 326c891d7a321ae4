"""`fabric deploy MODEL --stack ENV --strategy ...`: put a registered version live on an endpoint."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, stack_option


@click.command("deploy")
@click.argument("address", metavar="MODEL")
@stack_option
@click.option("--strategy", type=click.Choice(["all_at_once", "canary", "shadow", "blue_green"]), default=None,
              help="Default: the version's rollout.strategy from its spec.")
@click.option("--endpoint", default=None, help="Endpoint name (default: the model's name).")
@click.option("--steps", default=None, help="Canary traffic percentages, e.g. 10,50,100 (default: rollout.steps).")
@click.option("--max-error-rate", type=float, default=None, help="Canary rollback threshold (default: rollout.max_error_rate).")
@click.option("--max-p99-ms", type=float, default=None, help="Canary p99 limit (default: rollout.max_p99_ms, else the endpoint's latencyBudgetMs).")
@click.option("--step-requests", type=int, default=None, help="Requests observed per canary step (default: rollout.step_requests).")
@click.option("--step-timeout-s", type=float, default=60.0, show_default=True, help="Give up a canary step (and roll back) after this long without enough traffic.")
@json_option
def deploy(address: str, stack: str, strategy: str | None, endpoint: str | None, steps: str | None,
           max_error_rate: float | None, max_p99_ms: float | None, step_requests: int | None,
           step_timeout_s: float, as_json: bool) -> None:  # fmt: skip
    """Deploy MODEL (`name`, `name:version` or `name@alias`) to a live endpoint without dropping a
    request: the first deploy starts the server; later ones swap inside it.

    \b
    Strategies:
      all_at_once  swap the champion between two requests
      canary       send rollout.steps percent of traffic to the new version, judge each step on
                   error rate and p99, roll back automatically when a limit is passed
      shadow       mirror traffic to the new version, answer from the champion, compare outputs
      blue_green   load the new version beside the old, switch, keep the old one on standby
    \b
    Examples:
      fabric deploy fraud@candidate --stack dev
      fabric deploy fraud:4 --strategy canary --steps 10,50,100 --json
    """
    from fabric.backends import backend_for
    from fabric.backends.base import Deploys
    from fabric.backends.local_deploy import version_policies
    from fabric.errors import CapabilityError, FabricError
    from fabric.spec import RolloutSpec, load_stack

    backend = backend_for(load_stack(stack))
    if not isinstance(backend, Deploys):
        raise CapabilityError(f"the {backend.name} backend of stack {stack} cannot deploy")
    overrides = {"max_error_rate": max_error_rate, "max_p99_ms": max_p99_ms, "step_requests": step_requests}
    rollout = None
    if steps or any(v is not None for v in overrides.values()):
        base, _ = version_policies(backend.registry.get(address))  # type: ignore[attr-defined]
        update = {k: v for k, v in overrides.items() if v is not None}
        if steps:
            try:
                update["steps"] = [int(s) for s in steps.split(",")]
            except ValueError:
                raise FabricError(f"--steps={steps} must be comma-separated percentages, e.g. 10,50,100") from None
        try:
            rollout = RolloutSpec.model_validate({**base.model_dump(), **update})
        except ValueError as exc:
            raise FabricError(f"--steps/--max-*: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    result = backend.deploy(address, strategy, endpoint=endpoint, rollout=rollout, step_timeout_s=step_timeout_s)
    if isinstance(result, dict):  # the cloud backends answer with their API's own fields
        if as_json:
            echo_json(result)
        else:
            click.echo(", ".join(f"{k}={v}" for k, v in result.items() if v not in ("", None) and k != "manifests"))
        return
    if as_json:
        echo_json(result.to_dict())
    else:
        line = f"{result.endpoint}: {result.version} {result.outcome} via {result.strategy} at {result.url} in {result.seconds:.2f} s"
        click.echo(line + (f" (was {result.previous})" if result.previous else ""))
        for step in result.steps:
            click.echo("  " + ", ".join(f"{k}={v}" for k, v in step.items() if v not in ("", None)))
    if result.outcome == "rolled_back":
        click.echo(f"rolled back: {result.reason}", err=True)
        raise SystemExit(1)

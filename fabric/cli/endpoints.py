"""`fabric endpoints list|status|stop` and `fabric rollback ENDPOINT`."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, stack_option


def _endpoints(stack: str):  # noqa: ANN202
    from fabric.registry import fabric_home
    from fabric.serving.endpoints import Endpoints

    return Endpoints(fabric_home() / stack, stack)


@click.group("endpoints")
def endpoints() -> None:
    """Live model endpoints of a stack (local backend: one server process each)."""


@endpoints.command("list")
@stack_option
@json_option
def list_(stack: str, as_json: bool) -> None:
    """Every endpoint with its URL, champion and whether it answers /ping."""
    eps = _endpoints(stack)
    rows = []
    for name in eps.names():
        state = eps.get(name)
        rows.append({"endpoint": name, "url": state.url, "champion": state.champion, "healthy": eps.alive(state)})
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no endpoints in stack {stack}; deploy one with `fabric deploy <model> --stack {stack}`")
    for row in rows:
        click.echo(f"{row['endpoint']:<16} {row['url']:<24} {row['champion'] or '-':<14} {'healthy' if row['healthy'] else 'down'}")


@endpoints.command("status")
@click.argument("name")
@stack_option
@json_option
def status(name: str, stack: str, as_json: bool) -> None:
    """Slots (champion, canary, shadow, standby), traffic split, per-version requests, error rate
    and p99, shadow comparison, and the deploy history."""
    eps = _endpoints(stack)
    state = eps.get(name)
    live = eps.admin(state, "state") if eps.alive(state) else None
    payload = {"endpoint": name, "url": state.url, "healthy": live is not None, "champion": state.champion,
               "server": live, "history": state.history[-10:]}  # fmt: skip
    if as_json:
        echo_json(payload)
        return
    click.echo(f"{name} at {state.url}: {'healthy' if live else 'down'}, champion {state.champion}")
    if live:
        click.echo("  slots: " + ", ".join(f"{k}={v}" for k, v in live["slots"].items() if v) + f"; canary {live['canary_percent']}%; capture rate {live.get('capture_rate', 0.0):g}")
        for key, s in live["series"].items():
            p99 = f"{s['p99_ms']:.3f} ms" if s["p99_ms"] is not None else "-"
            click.echo(f"  {key:<28} requests {s['requests']:>8}  errors {s['errors']:>5}  p99 {p99}")
        if live["shadow"]["compared_rows"]:
            shadow = live["shadow"]
            click.echo(f"  shadow: {shadow['compared_rows']} rows compared, mean |diff| {shadow['mean_abs_diff']:.5f}, "
                       f"max |diff| {shadow['max_abs_diff']:.5f} (answers always come from the champion)")  # fmt: skip
    for event in state.history[-5:]:
        click.echo(f"  {event['at']} {event['event']} " + " ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "event")))


@endpoints.command("stop")
@click.argument("name")
@stack_option
def stop(name: str, stack: str) -> None:
    """Stop the endpoint's server process (its history and capture stay)."""
    _endpoints(stack).stop(name)
    click.echo(f"{name} stopped")


@click.command("rollback")
@click.argument("endpoint")
@stack_option
@json_option
def rollback(endpoint: str, stack: str, as_json: bool) -> None:
    """Put ENDPOINT's previous champion back live (zero downtime) and move the champion alias back."""
    from fabric.backends import backend_for
    from fabric.errors import CapabilityError
    from fabric.spec import load_stack

    backend = backend_for(load_stack(stack))
    if not hasattr(backend, "rollback"):
        raise CapabilityError(f"the {backend.name} backend of stack {stack} cannot roll endpoints back")
    result = backend.rollback(endpoint)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"{endpoint}: {result.version} live again (was {result.previous}) in {result.seconds:.2f} s")

"""The rollout Job: step the candidate's share of traffic, judge each step on the candidate's own
`/metrics`, roll back at the first bad step, promote after the last good one.

`python -m fabric.backends.kubernetes.rollout_controller --spec ... --stack ... --strategy canary
--candidate fraud:8` exits 0 when the candidate was promoted (canary, blue/green) or passed
(shadow), 1 when it was rolled back. The loop itself (`run_rollout`) only sees a `Traffic`, so the
same judge runs against any way of moving traffic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fabric.backends.kubernetes.metrics import Sample, Verdict, judge, scrape


class Traffic(Protocol):
    def route(self, percent: int) -> None:
        """Send `percent` of the traffic to the candidate (shadow: mirror that share)."""

    def targets(self) -> dict[str, str]:
        """The candidate's ready servers: name -> metrics URL."""

    def promote(self) -> None:
        """Make the candidate the stable version and take its traffic share back to 0."""

    def abort(self) -> None:
        """Take the candidate's traffic share back to 0 and stop it."""


@dataclass
class Outcome:
    strategy: str
    promoted: bool = False
    rolled_back: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.rolled_back

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "promoted": self.promoted, "rolled_back": self.rolled_back,
                "steps": self.steps, "reason": self.reason}  # fmt: skip


def _collect(targets: dict[str, str], log: Callable[[str], None]) -> dict[str, Sample]:
    samples = {}
    for name, url in targets.items():
        try:
            samples[name] = scrape(url)
        except Exception as exc:  # noqa: BLE001 - a pod going away mid-step is not a verdict
            log(f"scrape {name} ({url}) failed: {exc}")
    return samples


def _window(before: dict[str, Sample], now: dict[str, Sample]) -> Sample:
    total = Sample()
    for name, sample in now.items():
        total = total + sample.since(before.get(name, Sample()))
    return total


def run_rollout(
    traffic: Traffic,
    strategy: str,
    steps: list[int],
    step_requests: int,
    max_error_rate: float,
    max_p99_ms: float | None,
    step_timeout_s: float = 600.0,
    poll_s: float = 5.0,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> Outcome:
    plan = steps if strategy == "canary" else [100]  # blue/green switches at once; shadow mirrors all
    outcome = Outcome(strategy)
    for percent in plan:
        traffic.route(percent)
        before = _collect(traffic.targets(), log)
        deadline = time.monotonic() + step_timeout_s
        while True:
            time.sleep(poll_s)
            window = _window(before, _collect(traffic.targets(), log))
            if window.requests >= step_requests:
                verdict = judge(window, max_error_rate, max_p99_ms)
                break
            if window.errors > max_error_rate * step_requests:  # already lost, whatever comes next
                verdict = judge(window, max_error_rate, max_p99_ms)
                break
            if time.monotonic() > deadline:
                verdict = Verdict(False, int(window.requests), 0.0, None,
                                  f"only {int(window.requests)} of rollout.step_requests={step_requests} requests "
                                  f"reached the candidate in {step_timeout_s:g} s")  # fmt: skip
                break
        outcome.steps.append({"percent": percent, **verdict.to_dict()})
        log(f"{strategy} {percent}%: {verdict.reason} ({verdict.requests} requests)")
        if not verdict.ok:
            traffic.abort()
            outcome.rolled_back, outcome.reason = True, f"rolled back at {percent}%: {verdict.reason}"
            return outcome
    if strategy == "shadow":
        traffic.abort()  # the verdict is recorded; mirroring stops, promotion is a separate decision
        outcome.reason = "shadow passed"
        return outcome
    traffic.promote()
    outcome.promoted, outcome.reason = True, f"promoted after {plan[-1]}%"
    return outcome


class KubeTraffic:
    """Moves traffic with the HTTPRoute and the Deployments of one endpoint, by server-side apply."""

    def __init__(self, cluster: Any, spec: Any, settings: Any, strategy: str, candidate: str) -> None:
        from fabric.backends.kubernetes import rollout

        self.cluster, self.spec, self.settings, self.strategy, self.candidate = cluster, spec, settings, strategy, candidate
        self.track = rollout.candidate_track(strategy)

    def route(self, percent: int) -> None:
        from fabric.backends.kubernetes import rollout

        self.cluster.apply(rollout.http_route(self.spec, self.settings, self.strategy, percent))

    def targets(self) -> dict[str, str]:
        port = self.settings.kubernetes.serving_port
        selector = f"app.kubernetes.io/instance={self.spec.name},fabric.io/track={self.track}"
        return {name: f"http://{ip}:{port}/metrics" for name, ip in self.cluster.ready_pods(selector).items()}

    def promote(self) -> None:
        from fabric.backends.kubernetes import serving

        stable = serving.deployment(self.spec, self.settings, self.candidate)
        self.cluster.apply(stable)
        self.cluster.wait_rolled_out(stable["metadata"]["name"])
        self.abort()

    def abort(self) -> None:
        from fabric.backends.kubernetes import serving

        self.route(0)
        self.cluster.scale(serving.deployment_name(self.spec, self.track), 0)


def main(argv: list[str] | None = None) -> int:
    from fabric.backends.kubernetes.cluster import Cluster
    from fabric.backends.kubernetes.serving import endpoint as endpoint_of
    from fabric.registry import Registry, fabric_home
    from fabric.spec import load_pipeline, load_stack

    parser = argparse.ArgumentParser(prog="python -m fabric.backends.kubernetes.rollout_controller")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--strategy", required=True, choices=["canary", "blue_green", "shadow"])
    parser.add_argument("--candidate", required=True, help="model address the candidate Deployment serves")
    args = parser.parse_args(argv)
    spec, settings = load_pipeline(args.spec), load_stack(args.stack)
    endpoint = endpoint_of(spec, settings)
    max_p99 = spec.rollout.max_p99_ms or endpoint.latency_budget_ms
    traffic = KubeTraffic(Cluster.connect(settings), spec, settings, args.strategy, args.candidate)
    outcome = run_rollout(
        traffic, args.strategy, spec.rollout.steps, spec.rollout.step_requests, spec.rollout.max_error_rate, max_p99
    )
    registry = Registry(fabric_home() / settings.env / "registry")
    registry.add_event(args.candidate, "rollout", outcome.to_dict())
    if outcome.promoted:
        registry.set_alias(args.candidate, "champion", reason=outcome.reason)
    print(json.dumps(outcome.to_dict()), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    from fabric.errors import run_main

    run_main(main)

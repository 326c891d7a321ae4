"""Deployment strategies on local endpoints: all-at-once, canary, shadow and blue/green.

Every strategy swaps models inside the running server (no restart, no dropped request); the
registry's `champion` alias follows what serves, and each step is recorded as a registry event and
in the endpoint's history.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from fabric.errors import FabricError
from fabric.registry import ModelVersion, Registry
from fabric.serving.endpoints import Endpoints, EndpointState
from fabric.spec import RolloutSpec, ServingSpec, StackSettings

STRATEGIES = ("all_at_once", "canary", "shadow", "blue_green")


@dataclass
class DeployResult:
    endpoint: str
    url: str
    version: str
    strategy: str
    outcome: str  # live | rolled_back | shadowing
    previous: str | None
    seconds: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_policies(version: ModelVersion) -> tuple[RolloutSpec, ServingSpec]:
    """The rollout and serving policy the version was trained with (spec.json), else defaults."""
    spec_file = version.path / "spec.json"
    if not spec_file.is_file():
        return RolloutSpec(), ServingSpec()
    raw = json.loads(spec_file.read_text())
    return RolloutSpec.model_validate(raw.get("rollout", {})), ServingSpec.model_validate(raw.get("serving", {}))


class LocalDeployer:
    def __init__(self, settings: StackSettings, registry: Registry, endpoints: Endpoints) -> None:
        self.settings, self.registry, self.endpoints = settings, registry, endpoints

    def deploy(
        self,
        address: str,
        strategy: str | None = None,
        endpoint: str | None = None,
        rollout: RolloutSpec | None = None,
        step_timeout_s: float = 60.0,
    ) -> DeployResult:
        clock = time.monotonic()
        version = self.registry.get(address)
        spec_rollout, serving = version_policies(version)
        rollout = rollout or spec_rollout
        strategy = strategy or rollout.strategy
        if strategy not in STRATEGIES:
            raise FabricError(f"--strategy={strategy} is unknown; use one of {', '.join(STRATEGIES)}")
        name = endpoint or version.name
        state = self.endpoints.load(name)
        if state is None or not self.endpoints.alive(state):
            state = self._start(name, version, serving)
            return self._finish(state, version, strategy, "live", None, clock, [{"step": "started", "port": state.port}])
        previous = state.champion
        if previous == version.address and strategy != "shadow":
            return self._finish(state, version, strategy, "live", previous, clock, [], reason="already live")
        if strategy == "all_at_once":
            self._load(state, "champion", version)
            return self._finish(state, version, strategy, "live", previous, clock, [{"step": "swapped"}])
        if strategy == "blue_green":
            return self._blue_green(state, version, previous, clock)
        if strategy == "shadow":
            self._load(state, "shadow", version)
            self.endpoints.record(state, "shadow", version=version.address)
            self.registry.set_alias(version.address, "challenger", reason=f"shadowing {previous} on {name}")
            return DeployResult(name, state.url, version.address, strategy, "shadowing", previous,
                                round(time.monotonic() - clock, 3), [{"step": "mirroring"}])  # fmt: skip
        return self._canary(state, version, previous, rollout, clock, step_timeout_s)

    # -- strategies -----------------------------------------------------------------------------
    def _blue_green(self, state: EndpointState, version: ModelVersion, previous: str | None, clock: float) -> DeployResult:
        # green is loaded and smoke-tested in the standby slot while blue serves, then they switch
        self._load(state, "standby", version)
        self.endpoints.admin(state, "switch")
        ping = self.endpoints.ping(state)
        if not ping or ping.get("model") != version.address:
            self.endpoints.admin(state, "switch")
            return self._rolled_back(state, version, "blue_green", previous, clock, [], f"green did not answer /ping: {ping}")
        return self._finish(state, version, "blue_green", "live", previous, clock, [{"step": "switched", "standby": previous}])

    def _canary(
        self, state: EndpointState, version: ModelVersion, previous: str | None, rollout: RolloutSpec, clock: float, timeout_s: float
    ) -> DeployResult:
        p99_limit = rollout.max_p99_ms or self._endpoint_budget(state.name)
        self._load(state, "canary", version)
        steps: list[dict[str, Any]] = []
        for percent in rollout.steps:
            if percent == 100:
                break
            self.endpoints.admin(state, "traffic", {"canary_percent": percent})
            verdict = self._judge(state, version.address, rollout, p99_limit, timeout_s)
            steps.append({"percent": percent, **verdict})
            self.registry.add_event(version.address, "canary_step", {"endpoint": state.name, "percent": percent, **verdict})
            if not verdict["ok"]:
                self.endpoints.admin(state, "clear", {"slot": "canary"})
                return self._rolled_back(state, version, "canary", previous, clock, steps, verdict["reason"])
        self.endpoints.admin(state, "promote", {"slot": "canary"})
        return self._finish(state, version, "canary", "live", previous, clock, [*steps, {"percent": 100, "ok": True}])

    def _judge(self, state: EndpointState, address: str, rollout: RolloutSpec, p99_limit: float | None, timeout_s: float) -> dict[str, Any]:
        key = f"canary/{address}"
        start = self.endpoints.admin(state, "state")["series"].get(key, {}).get("requests", 0)
        deadline = time.monotonic() + timeout_s
        while True:
            series = self.endpoints.admin(state, "state")["series"].get(key, {})
            seen = series.get("requests", 0) - start
            error_rate, p99 = series.get("error_rate", 0.0), series.get("p99_ms")
            if seen and error_rate > rollout.max_error_rate:
                return {"ok": False, "requests": seen, "error_rate": error_rate, "p99_ms": p99,
                        "reason": f"canary error rate {error_rate:.3f} > rollout.max_error_rate={rollout.max_error_rate}"}  # fmt: skip
            if seen >= rollout.step_requests:
                if p99_limit is not None and p99 is not None and p99 > p99_limit:
                    return {"ok": False, "requests": seen, "error_rate": error_rate, "p99_ms": p99,
                            "reason": f"canary p99 {p99:.3f} ms > limit {p99_limit} ms (rollout.max_p99_ms or the endpoint's latencyBudgetMs)"}  # fmt: skip
                return {"ok": True, "requests": seen, "error_rate": error_rate, "p99_ms": p99, "reason": ""}
            if time.monotonic() > deadline:
                return {"ok": False, "requests": seen, "error_rate": error_rate, "p99_ms": p99,
                        "reason": f"canary saw {seen} of rollout.step_requests={rollout.step_requests} requests in "
                                  f"{timeout_s:g} s: no evidence, so no promotion (send traffic or lower step_requests)"}  # fmt: skip
            time.sleep(0.1)

    # -- helpers --------------------------------------------------------------------------------
    def _endpoint_budget(self, name: str) -> float | None:
        settings = self.settings.endpoints.get(name)
        return settings.latency_budget_ms if settings else None

    def _capture_rate(self, name: str, serving: ServingSpec) -> float:
        settings = self.settings.endpoints.get(name)
        return settings.capture_rate(serving.capture_rate) if settings is not None else serving.capture_rate

    def _start(self, name: str, version: ModelVersion, serving: ServingSpec) -> EndpointState:
        return self.endpoints.start(name, version.path, version.address, self._capture_rate(name, serving), serving.max_body_bytes)

    def _load(self, state: EndpointState, slot: str, version: ModelVersion) -> None:
        self.endpoints.admin(state, "load", {"slot": slot, "path": str(version.path), "version": version.address,
                                             "stack": self.settings.env})  # fmt: skip

    def _finish(
        self, state: EndpointState, version: ModelVersion, strategy: str, outcome: str, previous: str | None,
        clock: float, steps: list[dict[str, Any]], reason: str = "",
    ) -> DeployResult:  # fmt: skip
        state.champion = version.address
        self.endpoints.record(state, "deployed", version=version.address, strategy=strategy, previous=previous)
        if "champion" not in version.aliases:
            self.registry.set_alias(version.address, "champion", reason=f"deployed to {state.name} ({strategy})")
        self.registry.add_event(version.address, "deployed", {"endpoint": state.name, "strategy": strategy, "previous": previous})
        return DeployResult(state.name, state.url, version.address, strategy, outcome, previous,
                            round(time.monotonic() - clock, 3), steps, reason)  # fmt: skip

    def _rolled_back(
        self, state: EndpointState, version: ModelVersion, strategy: str, previous: str | None, clock: float,
        steps: list[dict[str, Any]], reason: str,
    ) -> DeployResult:  # fmt: skip
        self.endpoints.record(state, "rolled_back", version=version.address, strategy=strategy, reason=reason)
        self.registry.add_event(version.address, "rolled_back", {"endpoint": state.name, "strategy": strategy, "reason": reason})
        return DeployResult(state.name, state.url, version.address, strategy, "rolled_back", previous,
                            round(time.monotonic() - clock, 3), steps, reason)  # fmt: skip

    def rollback(self, name: str) -> DeployResult:
        """Put the previous champion back live (the version that served before the last deploy)."""
        clock = time.monotonic()
        state = self.endpoints.get(name)
        if not self.endpoints.alive(state):
            raise FabricError(f"endpoint {name} is not running; start it with `fabric deploy <model> --stack {self.settings.env}`")
        deployed = [h for h in state.history if h["event"] == "deployed" and h.get("previous")]
        if not deployed:
            raise FabricError(f"endpoint {name} has no earlier version to roll back to")
        target = self.registry.get(deployed[-1]["previous"])
        current = state.champion
        self._load(state, "champion", target)
        self.registry.set_alias(target.address, "champion", reason=f"rollback of {current} on {name}")
        state.champion = target.address
        self.endpoints.record(state, "deployed", version=target.address, strategy="rollback", previous=current)
        self.registry.add_event(target.address, "rollback", {"endpoint": name, "from": current})
        return DeployResult(name, state.url, target.address, "rollback", "live", current, round(time.monotonic() - clock, 3))

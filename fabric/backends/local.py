"""The embedded default: everything in-process on this machine, state under $FABRIC_HOME/<stack>."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fabric.backends.base import Backend
from fabric.lifecycle import RunResult, run_pipeline
from fabric.registry import Registry, fabric_home
from fabric.spec import PipelineSpec


class LocalBackend(Backend):
    name = "local"

    @property
    def home(self) -> Path:
        return fabric_home() / self.settings.env

    @property
    def registry(self) -> Registry:
        return Registry(self.home / "registry")

    def run(self, spec: PipelineSpec, progress: Any = None, budget_s: float | None = None) -> RunResult:
        from fabric.cost import record_run

        result = run_pipeline(spec, self.settings.env, self.registry, self.home, progress=progress, budget_s=budget_s)
        record_run(self.home, self.settings, spec, result)
        return result

    def _deployer(self) -> Any:
        from fabric.backends.local_deploy import LocalDeployer
        from fabric.serving.endpoints import Endpoints

        return LocalDeployer(self.settings, self.registry, Endpoints(self.home, self.settings.env))

    def deploy(self, address: str, strategy: str | None = None, **options: Any) -> Any:
        """Start or update the endpoint serving `address` (see fabric.backends.local_deploy)."""
        return self._deployer().deploy(address, strategy, **options)

    def shadow(self, address: str, **options: Any) -> Any:
        return self._deployer().deploy(address, "shadow", **options)

    def rollback(self, endpoint: str) -> Any:
        return self._deployer().rollback(endpoint)

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
        return run_pipeline(spec, self.settings.env, self.registry, self.home, progress=progress, budget_s=budget_s)

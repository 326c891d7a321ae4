"""One small abstract backend; optional abilities are separate protocols, so the capability table
is computed from what each implementation really has, not written by hand."""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

from fabric.spec import PipelineSpec, StackSettings


class Backend(abc.ABC):
    """Runs the lifecycle of a spec for one stack.

    Contract: `run` registers nothing unless every stage succeeded; errors a user can fix are
    `FabricError`s naming the setting; a setting the backend cannot honour raises
    `CapabilityError` instead of being ignored.
    """

    name: str

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def run(self, spec: PipelineSpec, progress: Any = None, budget_s: float | None = None) -> Any:
        """search -> train -> quantize -> register; returns a RunResult."""


@runtime_checkable
class Deploys(Protocol):
    def deploy(self, address: str, strategy: str, **options: Any) -> Any: ...


@runtime_checkable
class Shadows(Protocol):
    def shadow(self, address: str, **options: Any) -> Any: ...


@runtime_checkable
class Monitors(Protocol):
    def monitor(self, spec: PipelineSpec, **options: Any) -> Any: ...


@runtime_checkable
class Renders(Protocol):
    """Prints what it would create instead of creating it (`fabric run --dry-run`)."""

    def render_yaml(self, spec: PipelineSpec, budget_s: float | None = None, run_id: str | None = None) -> str: ...


CAPABILITIES = {"deploy": Deploys, "shadow": Shadows, "monitor": Monitors, "dry_run": Renders}


def capabilities(backend: Backend) -> dict[str, bool]:
    return {"run": True, **{name: isinstance(backend, proto) for name, proto in CAPABILITIES.items()}}

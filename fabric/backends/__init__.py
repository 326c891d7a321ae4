"""Backends by name: `local` (embedded default), `sagemaker`, `kubernetes`."""

from __future__ import annotations

from fabric.backends.base import Backend, capabilities
from fabric.errors import CapabilityError
from fabric.spec import StackSettings

__all__ = ["Backend", "backend_for", "capabilities"]


def backend_for(settings: StackSettings) -> Backend:
    if settings.backend == "local":
        from fabric.backends.local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "kubernetes":
        from fabric.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings)
    if settings.backend == "sagemaker":
        from fabric.backends.sagemaker.backend import SageMakerBackend

        return SageMakerBackend(settings)
    raise CapabilityError(
        f"stack {settings.env}: fabric:backend={settings.backend} is not available in this version; "
        "run with a stack whose fabric:backend is local (e.g. --stack dev)"
    )

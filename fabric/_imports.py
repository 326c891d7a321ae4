"""Lazy imports of heavy optional dependencies, failing with the extra to install.

`fabric --help` must stay fast, so torch, onnxruntime, optuna, boto3, kubernetes and pulumi are
imported only where they are used, through `require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fabric.errors import FabricError

# module -> the extra of the `mlfabric` distribution that installs it
_EXTRAS = {
    "torch": "mlp",
    "pulumi": "infra",
    "pulumi_aws": "infra",
    "pulumi_kubernetes": "infra",
    "boto3": "sagemaker",
    "kubernetes": "kubernetes",
    "psycopg2": "kubernetes",
    "evidently": "evidently",
}


def require(module: str) -> ModuleType:
    """Import `module`, or raise a FabricError that names the extra which installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        hint = f"pip install 'mlfabric[{extra}]'" if extra else f"pip install {top}"
        raise FabricError(f"{module} is not installed ({exc}); install it with: {hint}") from exc

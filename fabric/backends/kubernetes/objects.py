"""Pieces every manifest shares: names, labels, the config volume, the registry volume, scheduling.

Conventions the Pulumi node pools must follow (infra/ sets them on each node group):
- every node carries the label `fabric.io/pool: <pool name>` (the `name` in fabric:gpuPools/cpuPools);
- GPU nodes carry the taint `nvidia.com/gpu=present:NoSchedule`, so only pods that ask for a GPU
  (and tolerate it) land there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fabric.errors import CapabilityError, SpecError
from fabric.spec import SECRET_URL_KEY, KubernetesSettings, NodePool, PipelineSpec, StackSettings

POOL_LABEL = "fabric.io/pool"
TRACK_LABEL = "fabric.io/track"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
CONFIG_DIR = "/etc/fabric"  # the spec and the stack file, from the ConfigMap; FABRIC_PROJECT_ROOT
SPEC_PATH = f"{CONFIG_DIR}/spec.yaml"
HOME_DIR = "/var/lib/fabric"  # the registry volume; FABRIC_HOME
STUDY_URL_ENV = "FABRIC_STUDY_URL"
ONLINE_URL_ENV = "FABRIC_FEATURES_ONLINE_URL"  # = fabric.features.store.ONLINE_URL_ENV (not imported: pandas)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def kube(settings: StackSettings) -> KubernetesSettings:
    if settings.kubernetes is None:
        raise CapabilityError(
            f"stack {settings.env}: the kubernetes backend needs fabric:kubernetes (at least {{image: ...}}); add it"
        )
    return settings.kubernetes


def labels(spec: PipelineSpec, settings: StackSettings, component: str, **extra: str) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "fabric",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "fabric",
        "fabric.io/stack": settings.env,
    }
    # cost tags travel as labels where Kubernetes allows their values
    out.update({f"fabric.io/{k}": v for k, v in settings.tags.items() if len(v) <= 63 and _LABEL_VALUE.match(v)})
    out.update(extra)
    return out


def metadata(name: str, spec: PipelineSpec, settings: StackSettings, component: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "namespace": kube(settings).namespace, "labels": labels(spec, settings, component, **extra)}


def config_map_name(spec: PipelineSpec) -> str:
    return f"{spec.name}-config"


def stack_document(settings: StackSettings) -> dict[str, Any]:
    """The stack as a `Pulumi.<env>.yaml` mapping, so `load_stack` inside the pod sees these settings."""
    dumped = settings.model_dump(mode="json", by_alias=True, exclude={"env", "region"}, exclude_none=True)
    return {"config": {"aws:region": settings.region, **{f"fabric:{k}": v for k, v in dumped.items()}}}


def _shipped_code(spec: PipelineSpec) -> tuple[PipelineSpec, dict[str, str]]:
    """The spec as the pods read it, and the Python files it names (a features module, transformation
    files) under ConfigMap keys: a path on the machine that rendered the manifests means nothing in a
    pod, so each file travels in the ConfigMap and the spec names it relative to its own folder."""
    if spec.features is None:
        return spec, {}
    files: dict[str, str] = {}

    def ship(path: str, field_name: str) -> str:
        source = Path(path)
        if not source.is_file():
            raise SpecError(f"{field_name}={path}: no such file to ship to the cluster; fix the path")
        key = f"code-{len(files)}-{source.name}"
        files[key] = source.read_text()
        return key

    features = spec.features
    tables = []
    for i, table in enumerate(features.tables):
        module, _, function = (table.transformation or "").rpartition(":")
        if module.endswith(".py"):
            table = table.model_copy(update={"transformation": f"{ship(module, f'features.tables[{i}].transformation')}:{function}"})
        tables.append(table)
    module = ship(features.module, "features.module") if features.module else None
    return spec.model_copy(update={"features": features.model_copy(update={"tables": tables, "module": module})}), files


def config_map(spec: PipelineSpec, settings: StackSettings) -> dict[str, Any]:
    shipped, code = _shipped_code(spec)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_map_name(spec), spec, settings, "config"),
        "data": {
            "spec.yaml": yaml.safe_dump(shipped.model_dump(mode="json", exclude_none=True), sort_keys=False),
            "stack.yaml": yaml.safe_dump(stack_document(settings), sort_keys=False),
            **code,
        },
    }


def config_volume(spec: PipelineSpec, settings: StackSettings) -> dict[str, Any]:
    _, code = _shipped_code(spec)
    return {
        "name": "config",
        "configMap": {
            "name": config_map_name(spec),
            "items": [
                {"key": "spec.yaml", "path": "spec.yaml"},
                {"key": "stack.yaml", "path": f"stacks/Pulumi.{settings.env}.yaml"},
                *({"key": key, "path": key} for key in code),
            ],
        },
    }


def registry_volume(settings: StackSettings) -> dict[str, Any]:
    return {"name": "registry", "persistentVolumeClaim": {"claimName": kube(settings).registry_claim}}


def mounts(registry: bool, read_only: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if registry:
        out.append({"name": "registry", "mountPath": HOME_DIR, "readOnly": read_only})
    return out


def env(settings: StackSettings, study: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "FABRIC_HOME", "value": HOME_DIR},
        {"name": "FABRIC_PROJECT_ROOT", "value": CONFIG_DIR},
        {"name": "FABRIC_STACK", "value": settings.env},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if study:
        secret = {"name": kube(settings).study_secret, "key": SECRET_URL_KEY}
        out.append({"name": STUDY_URL_ENV, "valueFrom": {"secretKeyRef": secret}})
    return out


def online_features_env(spec: PipelineSpec, settings: StackSettings) -> list[dict[str, Any]]:
    """Where a server of a spec with feature tables looks entities up. Without it the server would
    open an empty SQLite store under FABRIC_HOME and refuse every entity, so the URL is required:
    from the Secret `features_secret` (not optional, so a missing Secret stops the pod at start)."""
    if spec.features is None:
        return []
    secret = {"name": kube(settings).features_secret, "key": SECRET_URL_KEY}
    return [{"name": ONLINE_URL_ENV, "valueFrom": {"secretKeyRef": secret}}]


def container(settings: StackSettings, name: str, args: list[str], resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    k = kube(settings)
    return {
        "name": name,
        "image": k.image,
        "imagePullPolicy": k.image_pull_policy,
        # `command`, not `args`: the serving image's ENTRYPOINT is `python -m fabric.serving ...`,
        # and `args` would only be appended to it
        "command": args,
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65534},
        **extra,
    }


def cpu_scheduling(settings: StackSettings) -> dict[str, Any]:
    """Pin to the first CPU pool when the stack has one; otherwise leave placement to the scheduler."""
    return {"nodeSelector": {POOL_LABEL: settings.cpu_pools[0].name}} if settings.cpu_pools else {}


def gpu_pool(settings: StackSettings) -> NodePool:
    wanted = kube(settings).train_pool
    pools = settings.gpu_pools
    if not pools:
        raise CapabilityError(
            f"stack {settings.env}: fabric:gpuPools is empty, so no pool can run GPU pods; add a GPU pool "
            "or set fabric:kubernetes.gpus: 0"
        )
    return next(p for p in pools if p.name == wanted) if wanted else pools[0]


def gpu_scheduling(settings: StackSettings) -> dict[str, Any]:
    pool = gpu_pool(settings)
    return {
        "nodeSelector": {POOL_LABEL: pool.name},
        # Exists rather than Equal: tolerate the pool's taint whatever value the node group gives it
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    limits: dict[str, Any] = {"memory": memory}  # no CPU limit: throttling would distort latency
    if gpus:
        # extended resources cannot be overcommitted: request and limit must be equal
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    return {"requests": requests, "limits": limits}


def check_data_source(spec: PipelineSpec, settings: StackSettings) -> None:
    """Pods cannot read this machine's files: a file source must live on the registry volume."""
    source = spec.data.source
    if ":" in source.split("/")[0] or source.startswith(HOME_DIR + "/"):
        return
    raise CapabilityError(
        f"data.source={source} is a file on this machine, which the cluster's pods cannot read; copy it to the "
        f"registry volume ({kube(settings).registry_claim}, mounted at {HOME_DIR}) and point data.source there, "
        "or use a builtin: or sklearn: source"
    )


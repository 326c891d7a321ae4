"""Canary, shadow and blue/green: a second Deployment beside the stable one, the traffic split in a
Gateway API HTTPRoute (backend weights; a RequestMirror filter for shadow, whose answers the
gateway discards), and a rollout Job that steps the weights and rolls back on the candidate's
own `/metrics` (error rate, p99) — see rollout_controller.py.
"""

from __future__ import annotations

from typing import Any

from fabric.backends.kubernetes import objects as o
from fabric.backends.kubernetes import serving
from fabric.errors import CapabilityError
from fabric.spec import PipelineSpec, StackSettings

CONTROLLER_MODULE = "fabric.backends.kubernetes.rollout_controller"
GATEWAY_API = "gateway.networking.k8s.io/v1"
TRACKS = {"canary": "canary", "blue_green": "green", "shadow": "shadow"}


def candidate_track(strategy: str) -> str:
    if strategy not in TRACKS:
        raise CapabilityError(f"rollout.strategy={strategy} has no second Deployment; use one of {sorted(TRACKS)}")
    return TRACKS[strategy]


def parent_ref(settings: StackSettings, strategy: str) -> dict[str, str]:
    gateway = o.kube(settings).gateway
    if not gateway:
        raise CapabilityError(
            f"rollout.strategy={strategy} splits traffic with a Gateway API HTTPRoute, and stack {settings.env} names "
            "no Gateway; set fabric:kubernetes.gateway: <namespace>/<name> (or use rollout.strategy: all_at_once)"
        )
    namespace, _, name = gateway.rpartition("/")
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def http_route(spec: PipelineSpec, settings: StackSettings, strategy: str, candidate_percent: int) -> dict[str, Any]:
    """Weights (stable 100 - p, candidate p) for canary and blue/green; a mirror of p% for shadow."""
    if not 0 <= candidate_percent <= 100:
        raise ValueError(f"candidate_percent={candidate_percent} must be in [0, 100]")
    track = candidate_track(strategy)
    stable = {"name": serving.deployment_name(spec, "stable"), "port": 80}
    candidate = {"name": serving.deployment_name(spec, track), "port": 80}
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
    if strategy == "shadow":
        rule["backendRefs"] = [{**stable, "weight": 100}]
        if candidate_percent:
            mirror = {"backendRef": candidate, "percent": candidate_percent}
            rule["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    else:
        rule["backendRefs"] = [
            {**stable, "weight": 100 - candidate_percent},
            {**candidate, "weight": candidate_percent},
        ]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": o.metadata(spec.name, spec, settings, "rollout"),
        "spec": {"parentRefs": [parent_ref(settings, strategy)], "rules": [rule]},
    }


def controller_job(
    spec: PipelineSpec, settings: StackSettings, strategy: str, candidate_model: str, run_id: str
) -> dict[str, Any]:
    k = o.kube(settings)
    ep = serving.endpoint(spec, settings)
    args = [
        "python", "-m", CONTROLLER_MODULE, "--spec", o.SPEC_PATH, "--stack", settings.env,
        "--strategy", strategy, "--candidate", candidate_model,
    ]  # fmt: skip
    # the judge needs step_requests per step; allow ten minutes per step for that traffic to come
    deadline = k.start_grace_s + 600 * len(spec.rollout.steps) + 300
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": o.metadata(f"{spec.name}-rollout-{run_id}", spec, settings, "rollout"),
        "spec": {
            "backoffLimit": 0,  # a failed rollout is rolled back, never retried blindly
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": o.labels(spec, settings, "rollout")},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": k.service_account,
                    "securityContext": {"fsGroup": 65534},
                    **o.cpu_scheduling(settings),
                    "containers": [
                        o.container(
                            settings,
                            "controller",
                            args,
                            o.resources("100m", "512Mi"),
                            env=[*o.env(settings), {"name": "FABRIC_LATENCY_BUDGET_MS", "value": f"{ep.latency_budget_ms:g}"}],
                            volumeMounts=o.mounts(registry=True),
                        )
                    ],
                    "volumes": [o.config_volume(spec, settings), o.registry_volume(settings)],
                },
            },
        },
    }


def rollout(
    spec: PipelineSpec, settings: StackSettings, candidate_model: str, run_id: str, strategy: str | None = None
) -> list[dict[str, Any]]:
    """The candidate's Deployment and Service, the route at 0% to it, and the Job that steps it up."""
    strategy = strategy or spec.rollout.strategy
    track = candidate_track(strategy)
    replicas = serving.endpoint(spec, settings).min_instances
    return [
        serving.deployment(spec, settings, candidate_model, track=track, replicas=replicas),
        serving.service(spec, settings, track=track),
        http_route(spec, settings, strategy, 0),
        controller_job(spec, settings, strategy, candidate_model, run_id),
    ]


def access(spec: PipelineSpec, settings: StackSettings) -> list[dict[str, Any]]:
    """The ServiceAccount the Jobs run as and what it may do: step routes, swap and scale Deployments,
    find the candidate's pods to scrape, and start retraining Jobs."""
    k = o.kube(settings)
    meta = {"name": k.service_account, "namespace": k.namespace, "labels": o.labels(spec, settings, "access")}
    rules = [
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "create", "patch"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": k.service_account},
            "subjects": [{"kind": "ServiceAccount", "name": k.service_account, "namespace": k.namespace}],
        },
    ]

"""Serve: Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget for one endpoint.

The container is the same server image and contract as every backend (`python -m fabric.serving`:
GET /ping, POST /invocations, GET /metrics). Zero failed requests while a model is swapped:
rolling updates never take a ready pod away first (maxUnavailable 0), a pod is only routed to once
/ping answers, and a stopping pod keeps serving for a few seconds while endpoints drop it.
"""

from __future__ import annotations

from typing import Any

from fabric.backends.kubernetes import objects as o
from fabric.errors import SpecError
from fabric.spec import EndpointSettings, PipelineSpec, StackSettings

SERVING_MODULE = "fabric.serving"
TARGET_CPU_UTILIZATION = 70
DRAIN_S = 5  # preStop sleep: longer than endpoint propagation, shorter than terminationGracePeriodSeconds


def endpoint(spec: PipelineSpec, settings: StackSettings) -> EndpointSettings:
    if spec.name not in settings.endpoints:
        raise SpecError(
            f"stacks/Pulumi.{settings.env}.yaml: fabric:endpoints has no {spec.name!r} (it has "
            f"{sorted(settings.endpoints)}); add fabric:endpoints.{spec.name}: {{instanceType, minInstances, "
            "maxInstances, latencyBudgetMs}}"
        )
    return settings.endpoints[spec.name]


def model_address(spec: PipelineSpec, settings: StackSettings) -> str:
    """The pinned version of the stack when there is one (promotion writes it), else the champion."""
    return endpoint(spec, settings).model or f"{spec.name}@champion"


def deployment_name(spec: PipelineSpec, track: str) -> str:
    return spec.name if track == "stable" else f"{spec.name}-{track}"


def server_args(spec: PipelineSpec, settings: StackSettings, model: str) -> list[str]:
    port = o.kube(settings).serving_port
    return ["python", "-m", SERVING_MODULE, "serve", "--model", model, "--stack", settings.env, "--host", "0.0.0.0",
            "--port", str(port)]


def deployment(
    spec: PipelineSpec, settings: StackSettings, model: str, track: str = "stable", replicas: int | None = None
) -> dict[str, Any]:
    """`replicas=None` leaves the count to the HPA (applying a count would fight it on every apply)."""
    k = o.kube(settings)
    ep = endpoint(spec, settings)
    selector = {"app.kubernetes.io/instance": spec.name, o.TRACK_LABEL: track}
    probe = {"httpGet": {"path": "/ping", "port": "http"}}
    server = o.container(
        settings,
        "server",
        server_args(spec, settings, model),
        o.resources(k.serving_cpu, k.serving_memory, gpus=1 if ep.gpu else 0),
        ports=[{"name": "http", "containerPort": k.serving_port, "protocol": "TCP"}],
        env=[*o.env(settings), {"name": "FABRIC_CAPTURE_RATE", "value": f"{ep.capture_rate(spec.serving.capture_rate):g}"},
             *o.online_features_env(spec, settings)],
        volumeMounts=o.mounts(registry=True),
        # readiness gates traffic; liveness restarts a wedged server; startup covers the model load
        startupProbe={**probe, "periodSeconds": 2, "failureThreshold": 60},
        readinessProbe={**probe, "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 2},
        livenessProbe={**probe, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2},
        lifecycle={"preStop": {"sleep": {"seconds": DRAIN_S}}},
    )
    scheduling = o.gpu_scheduling(settings) if ep.gpu else o.cpu_scheduling(settings)
    spec_body: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {
                "labels": {**o.labels(spec, settings, "serve"), **selector},
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/path": "/metrics",
                    "prometheus.io/port": str(k.serving_port),
                    "fabric.io/model": model,
                },
            },
            "spec": {
                # the server needs no Kubernetes API: no token in its pods
                "automountServiceAccountToken": False,
                "securityContext": {"fsGroup": 65534},
                "terminationGracePeriodSeconds": 30,
                **scheduling,
                "containers": [server],
                "volumes": [o.config_volume(spec, settings), o.registry_volume(settings)],
            },
        },
    }
    if replicas is not None:
        spec_body["replicas"] = replicas
    name = deployment_name(spec, track)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": o.metadata(name, spec, settings, "serve", **{o.TRACK_LABEL: track}),
        "spec": spec_body,
    }


def service(spec: PipelineSpec, settings: StackSettings, track: str = "stable") -> dict[str, Any]:
    name = deployment_name(spec, track)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": o.metadata(name, spec, settings, "serve", **{o.TRACK_LABEL: track}),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/instance": spec.name, o.TRACK_LABEL: track},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(spec: PipelineSpec, settings: StackSettings) -> dict[str, Any]:
    ep = endpoint(spec, settings)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": o.metadata(spec.name, spec, settings, "serve"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": ep.min_instances,
            "maxReplicas": ep.max_instances,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_UTILIZATION},
                    },
                }
            ],
            # scale down slowly: a latency budget is missed faster than a node is paid for
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def disruption_budget(spec: PipelineSpec, settings: StackSettings) -> dict[str, Any]:
    # maxUnavailable rather than minAvailable: with one replica, minAvailable 1 would block node drains forever
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": o.metadata(spec.name, spec, settings, "serve"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": spec.name, o.TRACK_LABEL: "stable"}},
        },
    }


def serving(spec: PipelineSpec, settings: StackSettings, model: str | None = None) -> list[dict[str, Any]]:
    model = model or model_address(spec, settings)
    return [
        deployment(spec, settings, model),
        service(spec, settings),
        autoscaler(spec, settings),
        disruption_budget(spec, settings),
    ]

"""The cluster, through the Kubernetes Python client: server-side apply, Jobs followed to the end.

Server-side apply (`PATCH` with `application/apply-patch+yaml`, field manager `fabric`) makes every
apply idempotent and lets the API server merge our fields with everybody else's; `force` takes
over fields a previous `kubectl apply` of the same objects owned. The dynamic client finds each
kind's endpoint by discovery, so CRDs such as HTTPRoute need no generated class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fabric._imports import require
from fabric.backends.kubernetes.jobs import JobState, job_state
from fabric.errors import FabricError
from fabric.spec import StackSettings

FIELD_MANAGER = "fabric"


class ClusterError(FabricError):
    """The API server refused a request, or a Job failed."""


class Cluster:
    def __init__(self, api_client: Any, namespace: str) -> None:
        dynamic = require("kubernetes.dynamic")
        self.api_client, self.namespace = api_client, namespace
        self.dynamic = dynamic.DynamicClient(api_client)

    @classmethod
    def connect(cls, settings: StackSettings) -> Cluster:
        """In a pod: its service account. Elsewhere: the kubeconfig ($KUBECONFIG), at fabric:kubernetes.context."""
        kubernetes = require("kubernetes")
        k = settings.kubernetes
        assert k is not None  # StackSettings guarantees it for backend kubernetes
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            try:
                kubernetes.config.load_kube_config(context=k.context)
            except (kubernetes.config.ConfigException, FileNotFoundError) as exc:
                raise FabricError(
                    f"stack {settings.env}: no Kubernetes credentials ({exc}); set KUBECONFIG (and "
                    "fabric:kubernetes.context), or print the manifests with --dry-run"
                ) from None
        return cls(kubernetes.client.ApiClient(), k.namespace)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        exceptions = require("kubernetes.dynamic.exceptions")
        client = require("kubernetes.client")
        urllib3 = require("urllib3")
        try:
            return call()
        except (exceptions.DynamicApiError, client.exceptions.ApiException) as exc:
            raise ClusterError(f"{what}: the API server answered {exc.status} {exc.reason}: {exc.body}") from None
        except urllib3.exceptions.HTTPError as exc:
            host = self.api_client.configuration.host
            raise ClusterError(f"{what}: cannot reach the API server at {host} ({exc}); check the kubeconfig") from None
        except exceptions.ResourceNotFoundError as exc:
            raise ClusterError(f"{what}: the cluster does not serve this kind ({exc}); install its CRD") from None

    def apply(self, manifest: dict[str, Any]) -> Any:
        kind, name = manifest["kind"], manifest["metadata"]["name"]

        def call() -> Any:
            resource = self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=kind)
            return self.dynamic.server_side_apply(
                resource,
                body=manifest,
                namespace=manifest["metadata"].get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )

        return self._call(f"apply {kind}/{name}", call)

    def apply_all(self, manifests: list[dict[str, Any]], log: Callable[[str], None] = lambda _: None) -> None:
        for manifest in manifests:
            self.apply(manifest)
            log(f"applied {manifest['kind']}/{manifest['metadata']['name']}")

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any]:
        def call() -> Any:
            resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
            return resource.get(name=name, namespace=self.namespace).to_dict()

        return self._call(f"get {kind}/{name}", call)

    def follow_job(
        self,
        name: str,
        on_update: Callable[[JobState], None] = lambda _: None,
        timeout_s: float | None = None,
        poll_s: float = 3.0,
    ) -> JobState:
        """Poll the Job until it completes or fails; report each change of its counts."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        while True:
            state = job_state(self._get("batch/v1", "Job", name))
            if state != last:
                on_update(state)
                last = state
            if state.done:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(f"Job {self.namespace}/{name} still {state.describe()} after {timeout_s:g} s")
            time.sleep(poll_s)

    def job_logs(self, name: str) -> str:
        """The last pod's log of a Job (its entrypoints print one JSON line at the end)."""
        client = require("kubernetes.client")
        core = client.CoreV1Api(self.api_client)
        pods = core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}").items
        if not pods:
            return ""
        pod = max(pods, key=lambda p: p.metadata.creation_timestamp)
        return core.read_namespaced_pod_log(pod.metadata.name, self.namespace)

    def ready_pods(self, selector: str) -> dict[str, str]:
        client = require("kubernetes.client")
        pods = client.CoreV1Api(self.api_client).list_namespaced_pod(self.namespace, label_selector=selector).items
        ready = {}
        for pod in pods:
            conditions = {c.type: c.status for c in (pod.status.conditions or [])}
            if conditions.get("Ready") == "True" and pod.status.pod_ip and not pod.metadata.deletion_timestamp:
                ready[pod.metadata.name] = pod.status.pod_ip
        return ready

    def scale(self, deployment: str, replicas: int) -> None:
        client = require("kubernetes.client")
        apps = client.AppsV1Api(self.api_client)
        self._call(
            f"scale Deployment/{deployment}",
            lambda: apps.patch_namespaced_deployment_scale(deployment, self.namespace, {"spec": {"replicas": replicas}}),
        )

    def wait_rolled_out(self, deployment: str, timeout_s: float = 900.0, poll_s: float = 3.0) -> None:
        """Like `kubectl rollout status`: the new ReplicaSet is complete and the old pods are gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            body = self._get("apps/v1", "Deployment", deployment)
            spec, status = body.get("spec") or {}, body.get("status") or {}
            wanted = spec.get("replicas", 1)
            if (
                status.get("observedGeneration", 0) >= body["metadata"].get("generation", 0)
                and status.get("updatedReplicas", 0) == wanted
                and status.get("replicas", 0) == wanted
                and status.get("availableReplicas", 0) == wanted
            ):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"Deployment {self.namespace}/{deployment} not rolled out after {timeout_s:g} s: {status}")
            time.sleep(poll_s)

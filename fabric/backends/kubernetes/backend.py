"""The `kubernetes` backend: the lifecycle as Jobs, Deployments and a CronJob on the stack's cluster.

`run` applies the search Indexed Job, follows it, then the train Job, and reports the registered
version; `deploy`, `shadow` and `monitor` apply the serving, rollout and monitoring stages;
`manifests` renders any of them without a cluster (`fabric run --dry-run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fabric.backends.base import Backend
from fabric.backends.kubernetes import objects, plan
from fabric.backends.kubernetes.jobs import JobState
from fabric.errors import CapabilityError, FabricError
from fabric.spec import PipelineSpec, StackSettings

STRATEGIES = ("all_at_once", "canary", "shadow", "blue_green")


@dataclass
class KubernetesRunResult:
    run_id: str
    namespace: str
    jobs: dict[str, str] = field(default_factory=dict)  # stage -> Job name
    states: dict[str, str] = field(default_factory=dict)  # stage -> final state
    trained: dict[str, Any] = field(default_factory=dict)  # the train Job's JSON line

    @property
    def model(self) -> str | None:
        return self.trained.get("model")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "kubernetes", "run_id": self.run_id, "namespace": self.namespace, "jobs": self.jobs,
                "states": self.states, "model": self.model, **{k: v for k, v in self.trained.items() if k != "model"}}  # fmt: skip


def last_json_line(log: str) -> dict[str, Any]:
    for line in reversed(log.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return {}


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.kube = objects.kube(settings)

    # -- rendering (no cluster needed) -------------------------------------------------------
    def manifests(
        self,
        spec: PipelineSpec,
        budget_s: float | None = None,
        run_id: str | None = None,
        stages: tuple[str, ...] = plan.STAGES,
        candidate: str | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        return plan.render(spec, self.settings, run_id or plan.new_run_id(), budget_s, stages, candidate)

    def render_yaml(self, spec: PipelineSpec, budget_s: float | None = None, run_id: str | None = None) -> str:
        header = (
            f"# fabric lifecycle of {spec.name!r} on stack {self.settings.env} (namespace {self.kube.namespace}).\n"
            "# access, config, search, train: applied by `fabric run`; serve, rollout: by deploy; monitor: by monitor.\n"
            f"# Provided by the stack, not rendered: the namespace, Secret {self.kube.study_secret} (key url: the\n"
            f"# PostgreSQL URL of the studies), PVC {self.kube.registry_claim} (ReadWriteMany, the registry)"
            + (f",\n# Secret {self.kube.features_secret} (key url: the online feature store the servers read).\n" if spec.features else ".\n")
        )
        stages = plan.STAGES if spec.name in self.settings.endpoints else plan.RUN_STAGES + ("monitor",)
        if spec.name not in self.settings.endpoints:
            header += f"# serve and rollout: not rendered, fabric:endpoints has no {spec.name!r}.\n"
        return header + plan.to_yaml(self.manifests(spec, budget_s, run_id, stages))

    # -- applying --------------------------------------------------------------------------------
    def _cluster(self) -> Any:
        from fabric.backends.kubernetes.cluster import Cluster

        return Cluster.connect(self.settings)

    def _follow(self, cluster: Any, stage: str, manifest: dict[str, Any], progress: Any) -> JobState:
        name = manifest["metadata"]["name"]
        cluster.apply(manifest)
        progress.stage(stage, f"Job {self.kube.namespace}/{name} applied")
        deadline = manifest["spec"].get("activeDeadlineSeconds")
        state = cluster.follow_job(
            name,
            on_update=lambda s: progress.stage(stage, f"{name}: {s.describe()}"),
            timeout_s=None if deadline is None else deadline + 120,
        )
        if state.phase == "failed":
            raise FabricError(f"Job {self.kube.namespace}/{name} failed: {state.describe()}; see kubectl logs job/{name}")
        return state

    def run(self, spec: PipelineSpec, progress: Any = None, budget_s: float | None = None) -> KubernetesRunResult:
        from fabric.lifecycle import SilentProgress

        progress = progress or SilentProgress()
        run_id = plan.new_run_id()
        pairs = self.manifests(spec, budget_s, run_id, plan.RUN_STAGES)
        cluster = self._cluster()
        progress.stage("apply", f"namespace {self.kube.namespace}, run {run_id}")
        cluster.apply_all([m for stage, m in pairs if stage in ("access", "config")])
        result = KubernetesRunResult(run_id, self.kube.namespace)
        for stage in ("search", "train"):
            manifest = next(m for s, m in pairs if s == stage)
            state = self._follow(cluster, stage, manifest, progress)
            result.jobs[stage], result.states[stage] = manifest["metadata"]["name"], state.describe()
        result.trained = last_json_line(cluster.job_logs(result.jobs["train"]))
        return result

    def deploy(self, address: str, strategy: str, **options: Any) -> dict[str, Any]:
        """Serve `address` (`name:version` or `name@alias`) with `strategy`. Options: `spec` (required),
        `dry_run` (return the manifests only). all_at_once rolls the stable Deployment; the others add the
        candidate beside it and follow the rollout Job, which promotes or rolls back."""
        spec: PipelineSpec | None = options.get("spec")
        if spec is None:
            raise FabricError("deploy needs the pipeline spec (spec=...) for its endpoint and rollout settings")
        if strategy not in STRATEGIES:
            raise CapabilityError(f"strategy={strategy} is not one of {STRATEGIES}")
        run_id = options.get("run_id") or plan.new_run_id()
        base = plan.render(spec, self.settings, run_id, stages=("access", "config"))
        from fabric.backends.kubernetes import rollout, serving

        if strategy == "all_at_once":
            manifests = [m for _, m in base] + serving.serving(spec, self.settings, model=address)
        else:
            manifests = [m for _, m in base] + serving.serving(spec, self.settings)
            manifests += rollout.rollout(spec, self.settings, address, run_id, strategy)
        if options.get("dry_run"):
            return {"manifests": manifests}
        cluster = self._cluster()
        jobs = [m for m in manifests if m["kind"] == "Job"]
        cluster.apply_all([m for m in manifests if m["kind"] != "Job"])
        if strategy == "all_at_once":
            cluster.wait_rolled_out(serving.deployment_name(spec, "stable"))
            return {"strategy": strategy, "model": address, "promoted": True}
        from fabric.lifecycle import SilentProgress

        state = None
        try:
            state = self._follow(cluster, "rollout", jobs[0], options.get("progress") or SilentProgress())
        except FabricError:
            pass  # a rolled-back candidate fails the Job on purpose; its verdict is in the log
        outcome = last_json_line(cluster.job_logs(jobs[0]["metadata"]["name"]))
        return {"strategy": strategy, "model": address, "job": jobs[0]["metadata"]["name"],
                "state": state.describe() if state else "failed", **outcome}  # fmt: skip

    def shadow(self, address: str, **options: Any) -> dict[str, Any]:
        return self.deploy(address, "shadow", **options)

    def monitor(self, spec: PipelineSpec, **options: Any) -> dict[str, Any]:
        """Apply the monitor CronJob (and what it runs as). Option `dry_run` returns the manifests only."""
        manifests = [m for _, m in plan.render(spec, self.settings, plan.new_run_id(), stages=("access", "config", "monitor"))]
        if options.get("dry_run"):
            return {"manifests": manifests}
        self._cluster().apply_all(manifests)
        return {"cronjob": manifests[-1]["metadata"]["name"], "schedule": self.kube.monitor_schedule}

    def start_retraining(self, spec: PipelineSpec, dry_run: bool = False) -> dict[str, Any]:
        """The retrain Job that `fabric monitor` starts on an alarm (monitor_job does the same in-cluster)."""
        from fabric.backends.kubernetes.monitor_job import retrain_job

        job = retrain_job(spec, self.settings)
        if not dry_run:
            self._cluster().apply(job)
        return {"job": job["metadata"]["name"], "manifest": job}

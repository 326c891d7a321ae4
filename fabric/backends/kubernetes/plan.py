"""Every manifest of a spec's lifecycle on one stack, in the order they are applied, by stage.

| stage   | objects                                              | applied by                     |
|---------|------------------------------------------------------|--------------------------------|
| access  | ServiceAccount, Role, RoleBinding                    | run, deploy, monitor           |
| config  | ConfigMap (the spec and the stack file)              | run, deploy, monitor           |
| search  | Indexed Job of Optuna workers                        | run                            |
| train   | Job on the GPU pool                                  | run                            |
| serve   | Deployment, Service, HorizontalPodAutoscaler, PDB    | deploy                         |
| rollout | candidate Deployment + Service, HTTPRoute, Job       | deploy (canary/shadow/blue_green) |
| monitor | CronJob (starts retrain Jobs on alarm)               | monitor                        |
"""

from __future__ import annotations

import time
from typing import Any

from fabric.backends.kubernetes import monitor_cron, objects, rollout, search_job, serving, train_job
from fabric.spec import PipelineSpec, StackSettings

STAGES = ("access", "config", "search", "train", "serve", "rollout", "monitor")
RUN_STAGES = ("access", "config", "search", "train")


def new_run_id(now: float | None = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))


def render(
    spec: PipelineSpec,
    settings: StackSettings,
    run_id: str,
    budget_s: float | None = None,
    stages: tuple[str, ...] = STAGES,
    candidate: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(stage, manifest) pairs. The serve stages need the spec's endpoint in the stack; a canary or
    shadow rollout needs a Gateway. `candidate` is the model a rollout offers (default `<name>@candidate`)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; use {STAGES}")
    objects.kube(settings)
    objects.check_data_source(spec, settings)
    out: list[tuple[str, dict[str, Any]]] = []
    if "access" in stages:
        out += [("access", m) for m in rollout.access(spec, settings)]
    if "config" in stages:
        out.append(("config", objects.config_map(spec, settings)))
    if "search" in stages:
        out.append(("search", search_job.search_job(spec, settings, run_id, budget_s)))
    if "train" in stages:
        out.append(("train", train_job.train_job(spec, settings, run_id)))
    if "serve" in stages:
        out += [("serve", m) for m in serving.serving(spec, settings)]
    if "rollout" in stages and spec.rollout.strategy != "all_at_once":
        model = candidate or f"{spec.name}@candidate"
        out += [("rollout", m) for m in rollout.rollout(spec, settings, model, run_id)]
    if "monitor" in stages:
        out.append(("monitor", monitor_cron.monitor_cronjob(spec, settings)))
    return out


def to_yaml(pairs: list[tuple[str, dict[str, Any]]]) -> str:
    import yaml

    chunks = []
    for stage, manifest in pairs:
        chunks.append(f"---\n# stage: {stage}\n" + yaml.safe_dump(manifest, sort_keys=False))
    return "".join(chunks)

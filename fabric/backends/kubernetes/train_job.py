"""Train (and retrain): a Job on the GPU pool that refits the best trial of the shared study, or
for retraining searches first, then registers the model on the registry volume and copies its
artifacts to the registry's bucket.

Scheduling on the GPU pool takes three things together: the `nvidia.com/gpu` request (equal to
its limit: extended resources are not overcommitted), a toleration of the pool's taint, and a
node selector on the pool's label (the toleration alone would let the pod land anywhere).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from fabric.backends.kubernetes import objects as o
from fabric.spec import PipelineSpec, StackSettings

TRAIN_MODULE = "fabric.backends.kubernetes.train"
Mode = Literal["train", "retrain"]


def job_name(spec: PipelineSpec, run_id: str, mode: Mode = "train") -> str:
    return f"{spec.name}-{mode}-{run_id}"


def train_args(spec: PipelineSpec, settings: StackSettings, mode: Mode) -> list[str]:
    args = ["python", "-m", TRAIN_MODULE, "--spec", o.SPEC_PATH, "--stack", settings.env]
    if mode == "retrain":
        budget = spec.drift.retrain_budget_s or spec.search.budget_s
        args += ["--retrain", "--alias", "challenger", "--parent", f"{spec.name}@champion"]
        if budget is not None:
            args += ["--search-budget-s", f"{budget:g}"]
    k = o.kube(settings)
    if k.registry_bucket:
        args += ["--bucket", k.registry_bucket]
    return args


def train_job(spec: PipelineSpec, settings: StackSettings, run_id: str, mode: Mode = "train") -> dict[str, Any]:
    k = o.kube(settings)
    # right-sizing: the stack says how many GPUs a GPU job gets, the spec whether it is one
    gpus = k.gpus if spec.train.accelerator == "gpu" else 0
    scheduling = o.gpu_scheduling(settings) if gpus else o.cpu_scheduling(settings)
    container = o.container(
        settings,
        "train",
        train_args(spec, settings, mode),
        o.resources(k.train_cpu, k.train_memory, gpus=gpus),
        env=o.env(settings, study=True),
        volumeMounts=o.mounts(registry=True),
    )
    job_spec: dict[str, Any] = {
        "backoffLimit": 1,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {"labels": o.labels(spec, settings, mode)},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": k.service_account,
                "securityContext": {"fsGroup": 65534},
                **scheduling,
                "containers": [container],
                "volumes": [o.config_volume(spec, settings), o.registry_volume(settings)],
            },
        },
    }
    if mode == "retrain":
        budget = spec.drift.retrain_budget_s or spec.search.budget_s
        if budget is not None:  # the search is bounded; refit and registration get as long again
            job_spec["activeDeadlineSeconds"] = k.start_grace_s + math.ceil(budget * 2.2)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": o.metadata(job_name(spec, run_id, mode), spec, settings, mode),
        "spec": job_spec,
    }

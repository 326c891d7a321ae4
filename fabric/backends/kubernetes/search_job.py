"""Search at scale: an Indexed Job of Optuna workers sharing one study in PostgreSQL.

Every worker runs `python -m fabric.backends.kubernetes.worker`: the same search as `local` (same
wall-clock budget, same latency budget enforced in-trial) on the study named by the spec and the
data, stored at the URL in the study Secret. The workers of one run ($FABRIC_RUN_ID) share one
deadline, kept in the study: the first worker's start + the budget. `activeDeadlineSeconds` backs the
budget up for the Job as a whole: scheduling and image pulls get `startGraceS`, the search 110%.
"""

from __future__ import annotations

import math
from typing import Any

from fabric.backends.kubernetes import objects as o
from fabric.errors import CapabilityError
from fabric.spec import PipelineSpec, StackSettings

WORKER_MODULE = "fabric.backends.kubernetes.worker"


def job_name(spec: PipelineSpec, run_id: str) -> str:
    return f"{spec.name}-search-{run_id}"


def worker_args(spec_path: str, workers: int, budget_s: float | None) -> list[str]:
    args = ["python", "-m", WORKER_MODULE, "--spec", spec_path, "--workers", str(workers)]
    if budget_s is not None:
        args += ["--budget-s", f"{budget_s:g}"]
    return args


def search_job(spec: PipelineSpec, settings: StackSettings, run_id: str, budget_s: float | None = None) -> dict[str, Any]:
    k = o.kube(settings)
    budget = budget_s if budget_s is not None else spec.search.budget_s
    if budget is None:
        raise CapabilityError(
            f"search.budget_s is not set: workers of a Kubernetes search need a wall-clock budget (search.trials "
            f"alone gives the Job no deadline); set search.budget_s or pass --budget-s"
        )
    workers = k.search_workers
    labels = o.labels(spec, settings, "search")
    container = o.container(
        settings,
        "worker",
        worker_args(o.SPEC_PATH, workers, budget_s),
        o.resources(k.worker_cpu, k.worker_memory),
        env=[*o.env(settings, study=True), {"name": "FABRIC_RUN_ID", "value": run_id}],
        volumeMounts=o.mounts(registry=False),
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": o.metadata(job_name(spec, run_id), spec, settings, "search"),
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            # one retry per worker; the study survives a lost worker, so up to half may fail
            "backoffLimitPerIndex": 1,
            "maxFailedIndexes": workers // 2,
            "activeDeadlineSeconds": k.start_grace_s + math.ceil(budget * 1.1),
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": k.service_account,
                    "securityContext": {"fsGroup": 65534},
                    **o.cpu_scheduling(settings),
                    "containers": [container],
                    "volumes": [o.config_volume(spec, settings)],
                },
            },
        },
    }

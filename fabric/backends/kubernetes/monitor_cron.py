"""Monitor and retrain: a CronJob that runs `fabric monitor` on the endpoint's captured traffic and,
on an alarm, starts the retraining Job (the train Job in retrain mode: search on fresh data, refit,
register as challenger). Only one monitor runs at a time, and a missed run is not made up later
(the next one reads the newer window anyway).
"""

from __future__ import annotations

from typing import Any

from fabric.backends.kubernetes import objects as o
from fabric.spec import PipelineSpec, StackSettings

MONITOR_MODULE = "fabric.backends.kubernetes.monitor_job"


def monitor_cronjob(spec: PipelineSpec, settings: StackSettings) -> dict[str, Any]:
    k = o.kube(settings)
    args = ["python", "-m", MONITOR_MODULE, "--spec", o.SPEC_PATH, "--stack", settings.env]
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": k.service_account,
        "securityContext": {"fsGroup": 65534},
        **o.cpu_scheduling(settings),
        "containers": [
            o.container(
                settings,
                "monitor",
                args,
                o.resources("500m", "1Gi"),
                env=o.env(settings),
                volumeMounts=o.mounts(registry=True),
            )
        ],
        "volumes": [o.config_volume(spec, settings), o.registry_volume(settings)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": o.metadata(f"{spec.name}-monitor", spec, settings, "monitor"),
        "spec": {
            "schedule": k.monitor_schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": o.labels(spec, settings, "monitor")},
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 1800,
                    "template": {"metadata": {"labels": o.labels(spec, settings, "monitor")}, "spec": pod},
                },
            },
        },
    }

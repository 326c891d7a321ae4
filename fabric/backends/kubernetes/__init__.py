"""The `kubernetes` backend: Jobs, Optuna workers, Deployments and CronJobs on the stack's node pools.

Rendering needs only pyyaml; applying imports the `kubernetes` client lazily (extra `kubernetes`)."""

from fabric.backends.kubernetes.backend import KubernetesBackend, KubernetesRunResult

__all__ = ["KubernetesBackend", "KubernetesRunResult"]

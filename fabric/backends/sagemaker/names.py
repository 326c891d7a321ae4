"""Deterministic names and the artifact bucket's key layout, shared with the Pulumi program (infra/),
so a rerun finds what the last run or `pulumi up` made instead of creating it twice, and the IAM
roles infra/iam.py declares grant exactly the prefixes the backend, its jobs and its endpoints use.

Imports nothing heavy: the Pulumi program and `fabric --help` import this module.
"""

from __future__ import annotations

from typing import Any

# -- the artifact bucket's layout: every key starts with one of these prefixes ------------------
MODELS = "models"  # models/<use case>/<version>/{model.tar.gz, lineage.json}: written by `fabric run`
CAPTURE = "capture"  # capture/<use case>/...: SageMaker data capture, as the serving role
PIPELINES = "pipelines"  # pipelines/<use case>/<step>/...: pipeline job outputs, as the training role
CHECKPOINTS = "checkpoints"  # checkpoints/<use case>/<step>/...: spot training, as the training role
DATA = "data"  # data/...: training data the jobs read
FEATURES = "features"  # features/<table>/...: a feature group's offline store, as the training role

# CloudWatch Logs groups SageMaker writes to (fixed by SageMaker, not chosen here)
TRAINING_LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs")
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints"  # one group per endpoint: /aws/sagemaker/Endpoints/<endpoint>
# the name SageMaker Pipelines gives the jobs it starts: pipelines-<execution id>-<step>-<suffix>
PIPELINE_JOB_PREFIX = "pipelines-"
METRIC_NAMESPACE = "Fabric"  # what `fabric monitor` and the server publish


def bucket(stack: str) -> str:
    return f"fabric-{stack}-artifacts"


def package_group(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def pipeline(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def endpoint(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def versioned(stack: str, use_case: str, version: int) -> str:
    """Model and endpoint config of one registered version (immutable: a new version, a new config)."""
    return f"fabric-{stack}-{use_case}-v{version}"


# every feature group fabric writes carries the row's exact time in ns (SageMaker's event time keeps
# milliseconds); infra declares it on the groups it provisions, the online store writes and reads it
FEATURE_STAMP = "fabric_stamped_ns"


def feature_group(prefix: str, table: str, version: int = 1) -> str:
    """`fabric-<stack>` + table (`_` -> `-`, feature group names allow no `_`), `-v<n>` from version 2."""
    return f"{prefix}-{table.replace('_', '-')}" + (f"-v{version}" if version > 1 else "")


def model_prefix(use_case: str, version: int) -> str:
    return f"{MODELS}/{use_case}/{version}"


def model_url(stack: str, use_case: str, version: int) -> str:
    """What endpoints serve, from infra (the pinned version) and from `fabric deploy` alike."""
    return f"s3://{bucket(stack)}/{model_prefix(use_case, version)}/model.tar.gz"


def capture_prefix(use_case: str) -> str:
    return f"{CAPTURE}/{use_case}"


def pipeline_prefix(use_case: str, step: str) -> str:
    return f"{PIPELINES}/{use_case}/{step}"


def checkpoint_prefix(use_case: str, step: str) -> str:
    return f"{CHECKPOINTS}/{use_case}/{step}"


def feature_prefix(table: str) -> str:
    return f"{FEATURES}/{table}"


def drift_alarm(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}-drift"


def latency_alarm(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}-p99-latency"


# -- the alarms, as CloudWatch PutMetricAlarm parameters: infra declares them from these, the
# backend upserts them with put_metric_alarm (the same name updates, never duplicates) -----------
VARIANT = "champion"


def latency_alarm_request(stack: str, use_case: str, budget_ms: float) -> dict[str, Any]:
    """p99 model latency over the endpoint's budget: the alarm canary and blue/green updates roll back on."""
    name = endpoint(stack, use_case)
    return {
        "AlarmName": latency_alarm(stack, use_case),
        "AlarmDescription": f"{name}: p99 model latency over its {budget_ms} ms budget",
        "Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "ExtendedStatistic": "p99",
        "Dimensions": [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT}],
        "Threshold": budget_ms * 1000.0,  # ModelLatency is in microseconds
        "ComparisonOperator": "GreaterThanThreshold", "Period": 60, "EvaluationPeriods": 5, "DatapointsToAlarm": 3,
        "TreatMissingData": "notBreaching",
    }  # fmt: skip


def drift_alarm_request(stack: str, use_case: str, sigma: float) -> dict[str, Any]:
    name = endpoint(stack, use_case)
    return {
        "AlarmName": drift_alarm(stack, use_case),
        "AlarmDescription": f"{name}: drift score over {sigma} sigma (fabric monitor)",
        "Namespace": METRIC_NAMESPACE, "MetricName": "DriftSigma", "Statistic": "Maximum",
        "Dimensions": [{"Name": "Endpoint", "Value": name}],
        "Threshold": sigma, "ComparisonOperator": "GreaterThanThreshold", "Period": 300, "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2, "TreatMissingData": "notBreaching",
    }  # fmt: skip

"""Endpoints on SageMaker: a model and an endpoint config per version (with data capture), one
endpoint per use case, autoscaling on invocations per instance, and blue/green or canary updates
by traffic shifting with automatic rollback on the endpoint's CloudWatch alarms."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fabric.backends.sagemaker import names
from fabric.backends.sagemaker.aws import Clients, aws_errors
from fabric.errors import FabricError
from fabric.spec import EndpointSettings, RolloutSpec

VARIANT = names.VARIANT
WAIT_S = 30 * 60
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}  # wait for InService before updating


@dataclass(frozen=True)
class EndpointAction:
    create: bool  # create the endpoint (else update it)
    message: str | None = None  # what was done to a broken endpoint first, for the person deploying


def decide(endpoint: str, described: dict[str, Any] | None) -> tuple[str, str | None]:
    """From DescribeEndpoint (None: no such endpoint): create, update, wait (then update), replace
    (a Failed endpoint cannot be updated: delete it, wait for the deletion, create it) or recreate
    (one being deleted: wait for that, create it)."""
    if described is None:
        return "create", None
    status = described["EndpointStatus"]
    if status == "Failed":
        return "replace", (f"endpoint {endpoint} was Failed ({described.get('FailureReason', 'no reason given')}); "
                           "deleted it and created it again")  # fmt: skip
    if status == "Deleting":
        return "recreate", f"endpoint {endpoint} was being deleted; waited for that and created it again"
    if status in BUSY:
        return "wait", None
    return "update", None


def describe_endpoint(clients: Clients, endpoint: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    with aws_errors(f"describe endpoint {endpoint}"):
        try:
            return clients.sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:  # SageMaker says ValidationException "Could not find endpoint"
            if "Could not find" in exc.response.get("Error", {}).get("Message", ""):
                return None
            raise


def prepare_endpoint(clients: Clients, endpoint: str, timeout_s: float = WAIT_S) -> EndpointAction:
    action, message = decide(endpoint, describe_endpoint(clients, endpoint))
    if action == "create":
        return EndpointAction(create=True)
    if action == "wait":
        wait_in_service(clients, endpoint, timeout_s)
        return EndpointAction(create=False)
    if action in ("replace", "recreate"):
        if action == "replace":
            with aws_errors(f"delete failed endpoint {endpoint}"):
                clients.sagemaker.delete_endpoint(EndpointName=endpoint)
        deadline = time.monotonic() + timeout_s
        while describe_endpoint(clients, endpoint) is not None:
            if time.monotonic() > deadline:
                raise FabricError(f"endpoint {endpoint} still being deleted after {timeout_s:.0f} s; deploy again later")
            time.sleep(5)
        return EndpointAction(create=True, message=message)
    return EndpointAction(create=False)


def ensure_latency_alarm(clients: Clients, stack: str, use_case: str, settings: EndpointSettings) -> str:
    """Upsert the endpoint's p99 alarm (PutMetricAlarm with the same name updates it): the alarm a
    canary or blue/green update names in AutoRollbackConfiguration must exist."""
    request = names.latency_alarm_request(stack, use_case, settings.latency_budget_ms)
    with aws_errors(f"alarm {request['AlarmName']}"):
        clients.cloudwatch.put_metric_alarm(**request)
    return request["AlarmName"]


def update_endpoint_request(endpoint: str, config: str, rollout: RolloutSpec, alarms: list[str]) -> dict[str, Any]:
    """The UpdateEndpoint call of a canary or blue/green rollout (all-at-once is blue/green with
    everything shifted at once). The emulator lacks UpdateEndpoint: tests check this request
    against botocore's service model with a Stubber."""
    if rollout.strategy == "canary":
        routing = {"Type": "CANARY", "WaitIntervalInSeconds": 300,
                   "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": rollout.steps[0]}}  # fmt: skip
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    return {
        "EndpointName": endpoint,
        "EndpointConfigName": config,
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": 300},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in alarms]},
        },
        "RetainAllVariantProperties": False,
    }


def ensure_model(clients: Clients, name: str, image: str, data_url: str, role: str, address: str) -> None:
    with aws_errors(f"model {name}"):
        try:
            clients.sagemaker.describe_model(ModelName=name)
            return
        except clients.sagemaker.exceptions.ClientError:
            pass
        clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=role,
                                       PrimaryContainer={"Image": image, "ModelDataUrl": data_url,
                                                         "Environment": {"FABRIC_MODEL": address}})  # fmt: skip


def ensure_config(clients: Clients, name: str, model: str, settings: EndpointSettings, bucket: str, use_case: str) -> None:
    with aws_errors(f"endpoint config {name}"):
        try:
            clients.sagemaker.describe_endpoint_config(EndpointConfigName=name)
            return
        except clients.sagemaker.exceptions.ClientError:
            pass
        clients.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": VARIANT, "ModelName": model, "InitialInstanceCount": settings.min_instances,
                                 "InstanceType": settings.instance_type}],
            DataCaptureConfig={"EnableCapture": settings.data_capture_rate > 0,
                               "InitialSamplingPercentage": max(1, round(settings.data_capture_rate * 100)),
                               "DestinationS3Uri": f"s3://{bucket}/{names.capture_prefix(use_case)}",
                               "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                               "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}},
        )  # fmt: skip


def wait_in_service(clients: Clients, endpoint: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with aws_errors(f"describe endpoint {endpoint}"):
            described = clients.sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status == "InService":
            return described
        if status == "Failed":
            raise FabricError(f"endpoint {endpoint} failed: {described.get('FailureReason', 'no reason given')}; "
                              "fix the cause and deploy again (a Failed endpoint is deleted and created again)")  # fmt: skip
        if time.monotonic() > deadline:
            raise FabricError(f"endpoint {endpoint} still {status} after {timeout_s:.0f} s; `fabric deploy` again resumes waiting")
        time.sleep(5)


def autoscale(clients: Clients, endpoint: str, settings: EndpointSettings) -> None:
    resource = f"endpoint/{endpoint}/variant/{VARIANT}"
    with aws_errors(f"autoscaling of {endpoint}"):
        clients.application_autoscaling.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=settings.min_instances, MaxCapacity=settings.max_instances)  # fmt: skip
        clients.application_autoscaling.put_scaling_policy(
            PolicyName=f"{endpoint}-invocations", ServiceNamespace="sagemaker", ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount", PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": 1000.0, "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})  # fmt: skip

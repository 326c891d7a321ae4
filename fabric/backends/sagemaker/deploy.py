"""Endpoints on SageMaker: a model and an endpoint config per version (with data capture), one
endpoint per use case, autoscaling on invocations per instance, and blue/green or canary updates
by traffic shifting with automatic rollback on the endpoint's CloudWatch alarms."""

from __future__ import annotations

import time
from typing import Any

from fabric.backends.sagemaker import names
from fabric.backends.sagemaker.aws import Clients, aws_errors
from fabric.errors import FabricError
from fabric.spec import EndpointSettings, RolloutSpec

VARIANT = "champion"
WAIT_S = 30 * 60


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
                              "fix the cause and deploy again (the failed endpoint is replaced)")  # fmt: skip
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

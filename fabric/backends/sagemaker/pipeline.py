"""The SageMaker Pipeline definition of a spec: search -> train -> quantize -> evaluate ->
condition (metric and latency budget) -> register. Written as the pipeline JSON schema
(https://aws-sagemaker-mlops.github.io/sagemaker-model-building-pipeline-definition-JSON-schema/),
so no SageMaker SDK is needed at run time. Every job runs the same image and entrypoint
(`python -m fabric.backends.sagemaker.entrypoint <stage>`) as the local lifecycle's code.

Training steps (CPU jobs too) use managed spot capacity by default, with a checkpoint location in
the artifact bucket and a max wait, so a reclaimed instance resumes, not restarts. `fabric:spotTraining:
false` turns it off for the stack, and a GPU job whose pool says `capacityType: ON_DEMAND` runs on demand.
"""

from __future__ import annotations

from typing import Any

from fabric.backends.sagemaker import names
from fabric.spec import PipelineSpec, StackSettings

MAX_WAIT_FACTOR = 3  # spot: wait up to 3x the run time for capacity before failing


def _job(stage: str, settings: StackSettings, spec: PipelineSpec, image: str, role: str, runtime_s: int) -> dict[str, Any]:
    instance, capacity = settings.training_capacity(spec.train.accelerator)
    spot = capacity == "SPOT"
    bucket = names.bucket(settings.env)
    args: dict[str, Any] = {
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                   "ContainerEntrypoint": ["python", "-m", "fabric.backends.sagemaker.entrypoint", stage]},
        "RoleArn": role,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{names.pipeline_prefix(spec.name, stage)}"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": instance,
                           "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime_s},
        "HyperParameters": {"spec": spec.model_dump_json(), "stack": settings.env},
        "EnableManagedSpotTraining": spot,
    }  # fmt: skip
    if spot:
        args["StoppingCondition"]["MaxWaitTimeInSeconds"] = runtime_s * MAX_WAIT_FACTOR
        args["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/{names.checkpoint_prefix(spec.name, stage)}"}
    return args


def _artifacts(step: str) -> dict[str, str]:
    return {"Get": f"Steps.{step}.ModelArtifacts.S3ModelArtifacts"}


def _after(step: str, args: dict[str, Any]) -> dict[str, Any]:
    """A training job whose `previous` channel is the model artifacts of `step`."""
    channel = {"ChannelName": "previous", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": _artifacts(step), "S3DataDistributionType": "FullyReplicated"}}}  # fmt: skip
    return {**args, "InputDataConfig": [channel]}


def _evaluate(settings: StackSettings, spec: PipelineSpec, image: str, role: str) -> dict[str, Any]:
    """Evaluate is a Processing job: only processing steps can publish PropertyFiles to a Condition."""
    bucket = names.bucket(settings.env)
    return {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": image,
                             "ContainerEntrypoint": ["python", "-m", "fabric.backends.sagemaker.entrypoint", "evaluate"]},
        "RoleArn": role,
        "ProcessingInputs": [{"InputName": "model", "S3Input": {"S3Uri": _artifacts("Quantize"), "LocalPath": "/opt/ml/processing/model",
                                                                "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
            "S3Uri": f"s3://{bucket}/{names.pipeline_prefix(spec.name, 'evaluation')}", "LocalPath": "/opt/ml/processing/evaluation",
            "S3UploadMode": "EndOfJob"}}]},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Environment": {"FABRIC_METRIC": spec.metric},
    }  # fmt: skip


def definition(spec: PipelineSpec, settings: StackSettings, image: str, role: str) -> dict[str, Any]:
    """Search runs the lifecycle's search and refit inside its job (studies and checkpoints in
    /opt/ml/checkpoints); Train and Quantize take the previous step's artifacts as their `previous`
    channel; Evaluate publishes evaluation.json; the Condition gates RegisterModel, whose package
    points at Quantize's artifacts."""
    budget = int(spec.search.budget_s or 3600)
    group = names.package_group(settings.env, spec.name)
    evaluation = {"Get": "Steps.Evaluate.PropertyFiles.evaluation"}
    higher = spec.higher_is_better
    endpoint = settings.endpoints.get(spec.name)
    budget_ms = endpoint.latency_budget_ms if endpoint else spec.latency_budget.p99_ms
    return {
        "Version": "2020-12-01",
        "Metadata": {"fabric": {"spec_hash": spec.spec_hash(), "stack": settings.env}},
        "Parameters": [{"Name": "BudgetSeconds", "Type": "Integer", "DefaultValue": budget},
                       {"Name": "MetricThreshold", "Type": "Float", "DefaultValue": 0.0}],
        "Steps": [
            {"Name": "Search", "Type": "Training", "Arguments": _job("search", settings, spec, image, role, budget + 900)},
            {"Name": "Train", "Type": "Training",
             "Arguments": _after("Search", _job("train", settings, spec, image, role, 4 * 3600))},
            {"Name": "Quantize", "Type": "Training",
             "Arguments": _after("Train", _job("quantize", settings, spec, image, role, 3600))},
            {"Name": "Evaluate", "Type": "Processing", "Arguments": _evaluate(settings, spec, image, role),
             "PropertyFiles": [{"PropertyFileName": "evaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}]},
            {"Name": "CheckQualityAndLatency", "Type": "Condition",
             "Arguments": {
                 "Conditions": [
                     {"Type": "GreaterThanOrEqualTo" if higher else "LessThanOrEqualTo",
                      "LeftValue": {"Std:JsonGet": {"PropertyFile": evaluation, "Path": f"test.{spec.metric}"}},
                      "RightValue": {"Get": "Parameters.MetricThreshold"}},
                     {"Type": "LessThanOrEqualTo",
                      "LeftValue": {"Std:JsonGet": {"PropertyFile": evaluation, "Path": "latency.p99_ms"}},
                      "RightValue": budget_ms},
                 ],
                 "IfSteps": [{"Name": "Register", "Type": "RegisterModel", "Arguments": {
                     "ModelPackageGroupName": group,
                     "ModelApprovalStatus": "PendingManualApproval",
                     "InferenceSpecification": {
                         "Containers": [{"Image": image, "ModelDataUrl": _artifacts("Quantize")}],
                         "SupportedContentTypes": ["application/json", "text/csv"],
                         "SupportedResponseMIMETypes": ["application/json"]},
                     "CustomerMetadataProperties": {"spec_hash": spec.spec_hash(), "stack": settings.env},
                 }}],
                 "ElseSteps": [{"Name": "Refuse", "Type": "Fail",
                                "Arguments": {"ErrorMessage": f"{spec.metric} under MetricThreshold or p99 over {budget_ms} ms"}}],
             }},
        ],
    }  # fmt: skip

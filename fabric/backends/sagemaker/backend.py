"""SageMakerBackend: the lifecycle of a spec on a sagemaker-target stack.

run:     upsert the SageMaker Pipeline (search -> train -> quantize -> evaluate -> condition ->
         register), start it and follow it. Against an emulator (FABRIC_AWS_ENDPOINT_URL), which
         records executions but runs no job, the steps run in-process (the same code the job's
         container runs); against AWS the Quantize step's model.tar.gz (with fabric-run.json) is
         imported. Either way the same code then registers the version: local mirror, model and
         lineage.json under models/<name>/<version>/, the package's lineage metadata (the package
         the pipeline's Register step made is adopted, not duplicated).
deploy:  model + endpoint config per version, the p99 alarm upserted, endpoint created (or, when
         Failed, deleted and created again) or updated by traffic shifting with auto-rollback on that
         alarm, wait until InService, autoscaling.
monitor: data capture from S3 -> drift windows -> CloudWatch metric and alarm -> retraining pipeline.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from fabric.backends.base import Backend
from fabric.backends.sagemaker import deploy as sm_deploy
from fabric.backends.sagemaker import monitor as sm_monitor
from fabric.backends.sagemaker import names
from fabric.backends.sagemaker import registry as sm_registry
from fabric.backends.sagemaker.aws import ENDPOINT_ENV, Clients, aws_errors
from fabric.backends.sagemaker.pipeline import definition
from fabric.errors import FabricError
from fabric.registry import Registry, actor, fabric_home
from fabric.spec import PipelineSpec, RolloutSpec

TERMINAL = {"Succeeded", "Failed", "Stopped"}


def training_job_of(step: str, steps: list[dict[str, Any]]) -> str | None:
    """The training job name of a succeeded step, from ListPipelineExecutionSteps (its ARN's last part)."""
    for s in steps:
        arn = s.get("Metadata", {}).get("TrainingJob", {}).get("Arn")
        if s.get("StepName") == step and s.get("StepStatus") == "Succeeded" and arn:
            return arn.rsplit("/", 1)[-1]
    return None


class SageMakerBackend(Backend):
    name = "sagemaker"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.clients = Clients(settings.region)
        self.home = fabric_home() / settings.env
        self.registry = Registry(self.home / "registry")  # the local mirror: artifacts and full lineage

    # -- identity and names ---------------------------------------------------------------------
    def account(self) -> str:
        with aws_errors("identify the AWS account"):
            return self.clients.sts.get_caller_identity()["Account"]

    def image(self) -> str:
        return f"{self.account()}.dkr.ecr.{self.settings.region}.amazonaws.com/fabric-{self.settings.env}/serving:{self.settings.image_tag}"

    def role(self, kind: str) -> str:
        return f"arn:aws:iam::{self.account()}:role/fabric-{self.settings.env}-{kind}"

    def _check_bucket(self) -> str:
        bucket = names.bucket(self.settings.env)
        with aws_errors(f"artifact bucket {bucket}"):
            try:
                self.clients.s3.head_bucket(Bucket=bucket)
            except self.clients.s3.exceptions.ClientError:
                raise FabricError(f"bucket {bucket} does not exist; `pulumi up --stack {self.settings.env}` creates it") from None
        return bucket

    # -- run ------------------------------------------------------------------------------------
    def upsert_pipeline(self, spec: PipelineSpec) -> str:
        name = names.pipeline(self.settings.env, spec.name)
        body = json.dumps(definition(spec, self.settings, self.image(), self.role("training")))
        with aws_errors(f"pipeline {name}"):
            existing = [p["PipelineName"] for p in self.clients.sagemaker.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]]
            if name in existing:
                self.clients.sagemaker.update_pipeline(PipelineName=name, PipelineDefinition=body, RoleArn=self.role("pipeline"))
            else:
                self.clients.sagemaker.create_pipeline(PipelineName=name, PipelineDefinition=body, RoleArn=self.role("pipeline"),
                                                       PipelineDescription=f"fabric lifecycle of {spec.name}")  # fmt: skip
        return name

    def start(self, spec: PipelineSpec, reason: str) -> str:
        name = self.upsert_pipeline(spec)
        with aws_errors(f"start pipeline {name}"):
            return self.clients.sagemaker.start_pipeline_execution(
                PipelineName=name, PipelineExecutionDisplayName=reason[:80],
                PipelineParameters=[{"Name": "BudgetSeconds", "Value": str(int(spec.search.budget_s or 3600))}],
            )["PipelineExecutionArn"]  # fmt: skip

    def follow(self, arn: str, progress: Any = None, timeout_s: float = 6 * 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            with aws_errors(f"pipeline execution {arn}"):
                described = self.clients.sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
            status = described["PipelineExecutionStatus"]
            if progress is not None:
                progress.stage("pipeline", status)
            if status == "Failed":
                steps = self.clients.sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
                failed = [f"{s['StepName']}: {s.get('FailureReason', '?')}" for s in steps if s.get("StepStatus") == "Failed"]
                raise FabricError(f"pipeline execution failed at {failed or described.get('FailureReason')}; fix and run again")
            if status == "Stopped":
                raise FabricError(f"pipeline execution {arn} was stopped; run again to train")
            if status in TERMINAL or self.emulated:
                return described
            if time.monotonic() > deadline:
                raise FabricError(f"pipeline execution {arn} still {status} after {timeout_s:.0f} s; follow it in SageMaker Studio")
            time.sleep(15)

    @property
    def emulated(self) -> bool:
        return bool(os.environ.get(ENDPOINT_ENV))

    def run(self, spec: PipelineSpec, progress: Any = None, budget_s: float | None = None) -> Any:
        from fabric.lifecycle import run_pipeline

        self._check_bucket()
        arn = self.start(spec, "fabric run")
        self.follow(arn, progress)
        if self.emulated:  # the emulator runs no job: the steps run here, as the container's entrypoint would
            result = run_pipeline(spec, self.settings.env, self.registry, self.home, progress=progress, budget_s=budget_s)
            return self.finish(result, arn)
        artifacts = self.step_artifacts(arn, "Quantize")
        return self.finish(sm_registry.import_run(self.clients, artifacts, self.registry, spec.name), arn, artifacts)

    def step_artifacts(self, arn: str, step: str) -> str:
        """The model.tar.gz a training step of an execution produced (ListPipelineExecutionSteps ->
        DescribeTrainingJob)."""
        with aws_errors(f"steps of {arn}"):
            pages = self.clients.sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
            job = training_job_of(step, [s for page in pages for s in page["PipelineExecutionSteps"]])
            if job is None:
                raise FabricError(f"pipeline execution {arn} has no finished {step} step; see it in SageMaker Studio")
            return self.clients.sagemaker.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]

    def finish(self, result: Any, arn: str, pipeline_artifacts: str | None = None) -> Any:
        """What every run does once its version is in the local mirror, emulated or not: the model
        and lineage.json under models/<name>/<version>/, the package with its lineage as metadata."""
        result.package_arn = sm_registry.register_package(self.clients, self.settings.env, result.version, self.image(),
                                                          pipeline_artifacts)  # fmt: skip
        result.pipeline_execution = arn
        self.registry.add_event(result.version.address, "registered_on_sagemaker",
                                {"package": result.package_arn, "pipeline_execution": arn})  # fmt: skip
        return result

    # -- registry -------------------------------------------------------------------------------
    def approve(self, address: str, by: str | None = None) -> dict[str, Any]:
        version = self.registry.get(address)
        group = sm_registry.ensure_group(self.clients, self.settings.env, version.name)
        package = sm_registry.find_package(self.clients, group, version.address)
        if package is None:
            raise FabricError(f"{address} has no model package in {group}; run the pipeline first")
        self.registry.approve(address, by or actor(), "approved on SageMaker")
        return sm_registry.approve(self.clients, package["ModelPackageArn"], version, by or actor())

    # -- deploy ---------------------------------------------------------------------------------
    def deploy(self, address: str, strategy: str | None = None, rollout: RolloutSpec | None = None, **_: Any) -> dict[str, Any]:
        version = self.registry.get(address)
        use_case = version.name
        settings = self.settings.endpoints.get(use_case)
        if settings is None:
            raise FabricError(f"stacks/Pulumi.{self.settings.env}.yaml has no fabric:endpoints.{use_case}; add it")
        group = sm_registry.ensure_group(self.clients, self.settings.env, use_case)
        package = sm_registry.find_package(self.clients, group, version.address)
        if package is None or package.get("ModelApprovalStatus") != "Approved":
            raise FabricError(f"{address} is not an Approved model package in {group}; approve it first")
        # what register_package uploaded for every version (and infra's pinned endpoint serves)
        data_url = names.model_url(self.settings.env, use_case, version.version)
        model = config = names.versioned(self.settings.env, use_case, version.version)
        endpoint = names.endpoint(self.settings.env, use_case)
        sm_deploy.ensure_model(self.clients, model, self.image(), data_url, self.role("serving"), version.address)
        sm_deploy.ensure_config(self.clients, config, model, settings, names.bucket(self.settings.env), use_case)
        # the alarm a traffic-shifting update rolls back on must exist (infra declares the same one)
        alarm = sm_deploy.ensure_latency_alarm(self.clients, self.settings.env, use_case, settings)
        rollout = rollout or RolloutSpec(strategy=strategy or "blue_green")
        action = sm_deploy.prepare_endpoint(self.clients, endpoint)
        with aws_errors(f"endpoint {endpoint}"):
            if action.create:
                self.clients.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
            else:
                self.clients.sagemaker.update_endpoint(**sm_deploy.update_endpoint_request(endpoint, config, rollout, [alarm]))
        described = sm_deploy.wait_in_service(self.clients, endpoint)
        sm_deploy.autoscale(self.clients, endpoint, settings)
        event = {"endpoint": endpoint, "backend": "sagemaker", "config": config}
        if action.message:
            event["replaced"] = action.message
        self.registry.add_event(version.address, "deployed", event)
        return {"endpoint": endpoint, "config": config, "status": described["EndpointStatus"], "model": version.address,
                "message": action.message}  # fmt: skip

    def invoke(self, use_case: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        endpoint = names.endpoint(self.settings.env, use_case)
        with aws_errors(f"invoke {endpoint}"):
            response = self.clients.sagemaker_runtime.invoke_endpoint(
                EndpointName=endpoint, ContentType="application/json", Body=json.dumps({"records": records}))
            return {"body": response["Body"].read().decode(), "content_type": response.get("ContentType")}

    # -- monitor --------------------------------------------------------------------------------
    def monitor(self, spec: PipelineSpec, **options: Any) -> dict[str, Any]:
        from fabric.monitor.profile import Profile

        champion = self.registry.get(f"{spec.name}@champion")
        profile = Profile.load(Path(champion.path) / "profile.json")
        rows, bad = sm_monitor.read_capture(self.clients, self.settings.env, spec.name)
        verdicts = sm_monitor.score_capture(spec, profile, rows)
        sigma = max((v.max_sigma for v in verdicts), default=0.0)
        # the alarm is infra's (fabric:driftAlarmSigma): re-declared with the stack's threshold, never the spec's
        sm_monitor.publish(self.clients, self.settings.env, spec.name, sigma, self.settings.drift_alarm_sigma)
        alarmed = [v for v in verdicts if v.verdict == "alarm"]
        retrain = None
        if alarmed and spec.drift.retrain:
            retrain = self.start(spec, f"drift in {', '.join(alarmed[0].alarmed)}")
            self.registry.add_event(champion.address, "drift_alarm",
                                    {"columns": alarmed[0].alarmed, "backend": "sagemaker", "retrain": retrain})  # fmt: skip
        return {"windows": len(verdicts), "skipped_lines": bad, "max_sigma": sigma,
                "alarm": bool(alarmed), "columns": alarmed[0].alarmed if alarmed else [], "retrain_execution": retrain}  # fmt: skip

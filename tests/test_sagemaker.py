"""The SageMaker backend against moto in server mode on a free loopback port (no fakes of boto3).
UpdateEndpoint and ListPipelineExecutionSteps, which the emulator lacks, are checked against
botocore's service model (Stubber). A Failed endpoint is made by setting the status in moto's own
backend state (the server runs in this process): moto has no call that fails an endpoint."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest

from fabric.backends.sagemaker import names
from fabric.spec import RolloutSpec, load_pipeline, load_stack
from tests.conftest import fabric_cli, write_spec

REGION = "us-east-1"


@pytest.fixture()
def aws(moto_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_EC2_METADATA_DISABLED": "true", "FABRIC_AWS_ENDPOINT_URL": moto_url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()  # a fresh account per test
    boto3.client("s3", endpoint_url=moto_url, region_name=REGION).create_bucket(Bucket=names.bucket("staging"))  # as `pulumi up` does
    return moto_url


def _capture_line(record: dict, score: float) -> str:
    def part(payload: object) -> dict:
        return {"observedContentType": "application/json", "mode": "INPUT",
                "data": base64.b64encode(json.dumps(payload).encode()).decode(), "encoding": "BASE64"}  # fmt: skip

    return json.dumps({"captureData": {"endpointInput": part({"records": [record]}), "endpointOutput": part({"predictions": [score]})},
                       "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-24T10:00:00Z"}, "eventVersion": "0"})  # fmt: skip


def test_the_lifecycle_end_to_end_on_the_emulator(aws: str, tmp_path: Path) -> None:
    from fabric.backends import backend_for, capabilities
    from fabric.data.synthetic import generate_fraud

    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": 30, "trials": 2, "families": ["lightgbm"]},
                                    drift={"window_rows": 500, "persistence": 2, "threshold_sigma": 3.0}))  # fmt: skip
    backend = backend_for(load_stack("staging"))
    assert capabilities(backend) == {"run": True, "deploy": True, "shadow": False, "monitor": True, "dry_run": False}
    result = backend.run(spec)
    sm = backend.clients.sagemaker
    pipeline = sm.describe_pipeline(PipelineName="fabric-staging-fraud")
    steps = [s["Name"] for s in json.loads(pipeline["PipelineDefinition"])["Steps"]]
    assert steps == ["Search", "Train", "Quantize", "Evaluate", "CheckQualityAndLatency"]
    assert sm.describe_pipeline_execution(PipelineExecutionArn=result.pipeline_execution)["PipelineExecutionStatus"]
    package = sm.describe_model_package(ModelPackageName=result.package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["fabric_address"] == "fraud:1"
    lineage = json.loads(backend.clients.s3.get_object(Bucket="fabric-staging-artifacts", Key="models/fraud/1/lineage.json")["Body"].read())
    assert lineage["lineage"]["dataset_fingerprint"] == result.version.lineage.dataset_fingerprint

    with pytest.raises(Exception, match="not an Approved model package"):
        backend.deploy("fraud:1")
    approved = backend.approve("fraud:1", by="alice")
    assert approved["ModelApprovalStatus"] == "Approved"
    assert approved["CustomerMetadataProperties"]["spec_hash"] == result.version.lineage.spec_hash  # survived approval
    again = backend.run(spec)  # idempotent: the same pipeline, a second execution, a second package
    assert sm.list_pipelines()["PipelineSummaries"][0]["PipelineName"] == "fabric-staging-fraud"
    assert len(sm.list_pipelines()["PipelineSummaries"]) == 1 and again.version.address == "fraud:2"

    cli = fabric_cli("deploy", "fraud:1", "--stack", "staging", "--json")  # the CLI prints the backend's own fields
    assert cli.returncode == 0, cli.stderr
    deployed = json.loads(cli.stdout)
    assert deployed["status"] == "InService" and deployed["config"] == "fabric-staging-fraud-v1" and deployed["message"] is None
    model = sm.describe_model(ModelName="fabric-staging-fraud-v1")["PrimaryContainer"]
    assert model["ModelDataUrl"] == "s3://fabric-staging-artifacts/models/fraud/1/model.tar.gz"  # what the serving role may read
    # the alarm an update's AutoRollbackConfiguration names exists, as infra declares it (10 ms budget, in us)
    latency = backend.clients.cloudwatch.describe_alarms(AlarmNames=["fabric-staging-fraud-p99-latency"])["MetricAlarms"]
    assert len(latency) == 1 and latency[0]["Threshold"] == 10_000.0 and latency[0]["ExtendedStatistic"] == "p99"
    assert {d["Name"]: d["Value"] for d in latency[0]["Dimensions"]} == {"EndpointName": "fabric-staging-fraud", "VariantName": "champion"}

    # a Failed endpoint cannot be updated: it is deleted and created again
    from moto.sagemaker.models import sagemaker_backends

    sagemaker_backends["123456789012"][REGION].endpoints["fabric-staging-fraud"].endpoint_status = "Failed"
    assert sm.describe_endpoint(EndpointName="fabric-staging-fraud")["EndpointStatus"] == "Failed"
    replaced = backend.deploy("fraud:1")
    assert replaced["status"] == "InService"
    assert replaced["message"] == "endpoint fabric-staging-fraud was Failed (no reason given); deleted it and created it again"
    assert sm.describe_endpoint(EndpointName="fabric-staging-fraud")["EndpointConfigName"] == "fabric-staging-fraud-v1"
    assert [e.get("replaced") for e in backend.registry.events("fraud", 1) if e["kind"] == "deployed"] == [
        None, replaced["message"]]
    config = sm.describe_endpoint_config(EndpointConfigName="fabric-staging-fraud-v1")
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
    targets = backend.clients.application_autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 4)]
    assert backend.invoke("fraud", [{"amount": 1.0}])["body"]  # the emulator answers with static data

    backend.registry.set_alias("fraud:1", "champion")
    frame = generate_fraud(rows=1500, seed=5, drift=1.5)
    features = [f["name"] for f in json.loads((result.version.path / "schema.json").read_text())["features"]]
    records = frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    lines = [_capture_line(r, 0.9) for r in records] + ["{not json"]
    backend.clients.s3.put_object(Bucket="fabric-staging-artifacts", Key="capture/fraud/2026/11/24/10/part.jsonl",
                                  Body="\n".join(lines).encode())  # fmt: skip
    report = backend.monitor(spec)
    assert report["windows"] == 3 and report["skipped_lines"] == 1
    assert report["alarm"] and report["retrain_execution"]
    alarms = backend.clients.cloudwatch.describe_alarms(AlarmNames=["fabric-staging-fraud-drift"])["MetricAlarms"]
    assert len(alarms) == 1 and alarms[0]["Threshold"] == 2.3  # the stack's driftAlarmSigma, as infra declares it
    executions = sm.list_pipeline_executions(PipelineName="fabric-staging-fraud")["PipelineExecutionSummaries"]
    assert len(executions) == 3  # two runs and the retraining started by the alarm


def test_update_endpoint_request_matches_the_service_model() -> None:
    from botocore.stub import Stubber

    from fabric.backends.sagemaker.deploy import update_endpoint_request

    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    for rollout in (RolloutSpec(strategy="canary", steps=[10, 100]), RolloutSpec(strategy="blue_green")):
        request = update_endpoint_request("fabric-prod-fraud", "fabric-prod-fraud-v3", rollout, ["fabric-prod-fraud-p99-latency"])
        with Stubber(client) as stub:  # validates the parameters against botocore's model of UpdateEndpoint
            stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"}, request)
            client.update_endpoint(**request)
            stub.assert_no_pending_responses()
    canary = update_endpoint_request("e", "c", RolloutSpec(strategy="canary", steps=[10, 100]), ["a"])
    routing = canary["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}
    assert canary["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": "a"}]


def test_spot_training_jobs_checkpoint_to_s3_with_a_max_wait(tmp_path: Path) -> None:
    from fabric.backends.sagemaker.pipeline import definition

    spec = load_pipeline(write_spec(tmp_path, train={"accelerator": "gpu"}))
    body = definition(spec, load_stack("staging"), "img", "role")
    train = next(s for s in body["Steps"] if s["Name"] == "Train")["Arguments"]
    assert train["EnableManagedSpotTraining"] is True and train["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert train["CheckpointConfig"]["S3Uri"] == "s3://fabric-staging-artifacts/checkpoints/fraud/train"
    assert train["StoppingCondition"]["MaxWaitTimeInSeconds"] >= train["StoppingCondition"]["MaxRuntimeInSeconds"]


def test_missing_credentials_and_missing_bucket_are_one_clear_line(tmp_path: Path, home: Path, moto_url: str) -> None:
    spec = write_spec(tmp_path, search={"budget_s": 3, "families": ["lightgbm"]})
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true", "FABRIC_AWS_ENDPOINT_URL": ""}  # fmt: skip
    no_creds = fabric_cli("run", str(spec), "--stack", "staging", env=env)
    assert no_creds.returncode == 2 and "no AWS credentials" in no_creds.stderr.strip().splitlines()[-1]
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "FABRIC_AWS_ENDPOINT_URL": moto_url,
           "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    no_bucket = fabric_cli("run", str(spec), "--stack", "prod", env=env)
    assert no_bucket.returncode == 2 and "fabric-prod-artifacts does not exist; `pulumi up --stack prod`" in no_bucket.stderr


def test_the_pipeline_steps_hand_artifacts_on_and_a_succeeded_pipeline_is_registered_with_lineage(
        tmp_path: Path, aws: str, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import tarfile

    from fabric.backends.sagemaker import entrypoint
    from fabric.backends.sagemaker.pipeline import definition

    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": 8, "families": ["lightgbm"]}))
    body = definition(spec, load_stack("staging"), "img", "role")
    steps = {s["Name"]: s for s in body["Steps"]}
    assert steps["Evaluate"]["Type"] == "Processing" and steps["Evaluate"]["PropertyFiles"][0]["FilePath"] == "evaluation.json"
    assert steps["Train"]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.Search.ModelArtifacts.S3ModelArtifacts"}
    register = steps["CheckQualityAndLatency"]["Arguments"]["IfSteps"][0]
    assert register["Type"] == "RegisterModel"
    assert register["Arguments"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == {
        "Get": "Steps.Quantize.ModelArtifacts.S3ModelArtifacts"}

    # the stages as the jobs run them, in temporary folders instead of /opt/ml
    (tmp_path / "hp.json").write_text(json.dumps({"spec": spec.model_dump_json(), "stack": "staging"}))
    monkeypatch.setenv("SM_HYPERPARAMETERS", str(tmp_path / "hp.json"))
    monkeypatch.setenv("SM_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    previous = None
    for stage in ("search", "train", "quantize"):
        out = tmp_path / stage
        monkeypatch.setenv("SM_MODEL_DIR", str(out))
        if previous is not None:
            monkeypatch.setenv("SM_CHANNEL_PREVIOUS", str(previous))
        assert entrypoint.main([stage]) == 0
        assert (out / "model.onnx").is_file() and (out / "schema.json").is_file()
        previous = tmp_path / f"{stage}-artifacts"  # what SageMaker uploads: /opt/ml/model as model.tar.gz
        previous.mkdir()
        with tarfile.open(previous / "model.tar.gz", "w:gz") as tar:
            for f in out.iterdir():
                tar.add(f, arcname=f.name)
    quantized = previous / "model.tar.gz"
    monkeypatch.setenv("SM_PROCESSING_MODEL", str(previous))
    monkeypatch.setenv("SM_PROCESSING_EVALUATION", str(tmp_path / "evaluation"))
    assert entrypoint.main(["evaluate"]) == 0
    evaluation = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert 0.5 < evaluation["test"]["roc_auc"] <= 1.0 and evaluation["latency"]["p99_ms"] > 0
    # -- the real path after the pipeline succeeded: the Quantize job's model.tar.gz (as SageMaker
    # stores it) and the package the Register step made are registered exactly like an emulated run
    from botocore.stub import Stubber

    from fabric.backends import backend_for
    from fabric.backends.sagemaker import registry as sm_registry

    backend = backend_for(load_stack("staging"))
    sm, s3 = backend.clients.sagemaker, backend.clients.s3
    arguments = dict(steps["Quantize"]["Arguments"])
    arguments["InputDataConfig"] = [{**arguments["InputDataConfig"][0], "DataSource": {"S3DataSource": {
        **arguments["InputDataConfig"][0]["DataSource"]["S3DataSource"], "S3Uri": "s3://fabric-staging-artifacts/pipelines/fraud/train/x"}}}]  # fmt: skip
    job = "pipelines-x1y2-Quantize-abc"
    sm.create_training_job(TrainingJobName=job, **{**arguments, "RoleArn": backend.role("training")})
    artifacts = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifacts == f"s3://fabric-staging-artifacts/pipelines/fraud/quantize/{job}/output/model.tar.gz"
    s3.put_object(Bucket="fabric-staging-artifacts", Key=artifacts.split("/", 3)[3], Body=quantized.read_bytes())
    group = sm_registry.ensure_group(backend.clients, "staging", "fraud")
    register = steps["CheckQualityAndLatency"]["Arguments"]["IfSteps"][0]["Arguments"]
    sm.create_model_package(**{**register, "InferenceSpecification": {**register["InferenceSpecification"], "Containers": [
        {"Image": "img", "ModelDataUrl": artifacts}]}})  # fmt: skip

    # ListPipelineExecutionSteps (moto lacks it) -> the job -> DescribeTrainingJob, checked with a Stubber
    execution = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/fabric-staging-fraud/execution/x1y2"
    described_job = sm.describe_training_job(TrainingJobName=job)
    stubbed = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(stubbed) as stub:
        stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
            {"StepName": "Evaluate", "StepStatus": "Succeeded", "Metadata": {"ProcessingJob": {"Arn": "arn:aws:sagemaker:us-east-1:1:processing-job/p"}}},
            {"StepName": "Quantize", "StepStatus": "Succeeded", "Metadata": {"TrainingJob": {"Arn": described_job["TrainingJobArn"]}}}]},
            {"PipelineExecutionArn": execution})  # fmt: skip
        stub.add_response("describe_training_job", {k: v for k, v in described_job.items() if k != "ResponseMetadata"},
                          {"TrainingJobName": job})  # fmt: skip
        backend.clients._cache["sagemaker"] = stubbed
        try:
            assert backend.step_artifacts(execution, "Quantize") == artifacts
        finally:
            backend.clients._cache["sagemaker"] = sm
        stub.assert_no_pending_responses()

    result = backend.finish(sm_registry.import_run(backend.clients, artifacts, backend.registry, "fraud"), execution, artifacts)
    version = result.version
    assert version.address == "fraud:1" and version.lineage.missing() == [] and "fabric-run.json" not in version.artifacts
    assert result.search.best.family == "lightgbm" and result.pipeline_execution == execution
    packages = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert len(packages) == 1  # the Register step's package, adopted, not a second one
    package = sm.describe_model_package(ModelPackageName=result.package_arn)
    assert package["ModelPackageArn"] == packages[0]["ModelPackageArn"]
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"] == sm_registry._metadata(version)  # as an emulated run records it
    lineage = json.loads(s3.get_object(Bucket="fabric-staging-artifacts", Key="models/fraud/1/lineage.json")["Body"].read())
    assert lineage["lineage"]["dataset_fingerprint"] == version.lineage.dataset_fingerprint and lineage["address"] == "fraud:1"
    assert s3.head_object(Bucket="fabric-staging-artifacts", Key="models/fraud/1/model.tar.gz")["ContentLength"] > 0
    assert backend.finish(result, execution, artifacts).package_arn == result.package_arn  # idempotent
    assert len(sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]) == 1


def test_what_deploy_does_with_each_endpoint_state() -> None:
    from fabric.backends.sagemaker.deploy import decide

    assert decide("e", None) == ("create", None)
    assert decide("e", {"EndpointStatus": "InService"}) == ("update", None)
    assert decide("e", {"EndpointStatus": "Updating"}) == ("wait", None)
    action, message = decide("e", {"EndpointStatus": "Failed", "FailureReason": "image not found"})
    assert action == "replace" and message == "endpoint e was Failed (image not found); deleted it and created it again"
    assert decide("e", {"EndpointStatus": "Deleting"})[0] == "recreate"


def test_training_is_spot_by_default_cpu_jobs_too_and_the_stack_can_turn_it_off(tmp_path: Path) -> None:
    from fabric.backends.sagemaker.pipeline import definition

    settings = load_stack("staging")
    cpu = load_pipeline(write_spec(tmp_path))

    def job(spec, stack, step="Search") -> dict:  # noqa: ANN001
        return next(s for s in definition(spec, stack, "img", "role")["Steps"] if s["Name"] == step)["Arguments"]

    search = job(cpu, settings)
    assert search["EnableManagedSpotTraining"] is True and search["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert search["CheckpointConfig"]["S3Uri"] == "s3://fabric-staging-artifacts/checkpoints/fraud/search"
    assert search["StoppingCondition"]["MaxWaitTimeInSeconds"] == 3 * search["StoppingCondition"]["MaxRuntimeInSeconds"]
    off = job(cpu, settings.model_copy(update={"spot_training": False}))
    assert off["EnableManagedSpotTraining"] is False and "CheckpointConfig" not in off
    assert "MaxWaitTimeInSeconds" not in off["StoppingCondition"]
    on_demand_pool = settings.model_copy(update={"gpu_pools": [settings.gpu_pools[0].model_copy(update={"capacity_type": "ON_DEMAND"})]})
    gpu = load_pipeline(write_spec(tmp_path, train={"accelerator": "gpu"}))
    assert job(gpu, on_demand_pool, "Train")["EnableManagedSpotTraining"] is False  # the pool's explicit choice
    assert job(gpu, settings, "Train")["EnableManagedSpotTraining"] is True

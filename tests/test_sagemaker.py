"""The SageMaker backend against moto in server mode on a free loopback port (no fakes of boto3).
UpdateEndpoint, which the emulator lacks, is checked against botocore's service model (Stubber)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from fabric.backends.sagemaker import names
from fabric.spec import RolloutSpec, load_pipeline, load_stack
from tests.conftest import fabric_cli, write_spec

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def aws(moto_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_EC2_METADATA_DISABLED": "true", "FABRIC_AWS_ENDPOINT_URL": moto_url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
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

    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": 5, "families": ["lightgbm"]},
                                    drift={"window_rows": 500, "persistence": 2}))  # fmt: skip
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

    deployed = backend.deploy("fraud:1")
    assert deployed["status"] == "InService" and deployed["config"] == "fabric-staging-fraud-v1"
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
    assert len(alarms) == 1 and alarms[0]["Threshold"] == 2.3
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


def test_the_pipeline_steps_hand_artifacts_on_and_evaluate_feeds_the_condition(tmp_path: Path, home: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import tarfile

    from fabric.backends.sagemaker import entrypoint
    from fabric.backends.sagemaker.pipeline import definition

    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": 4, "families": ["lightgbm"]}))
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
    monkeypatch.setenv("SM_PROCESSING_MODEL", str(previous))
    monkeypatch.setenv("SM_PROCESSING_EVALUATION", str(tmp_path / "evaluation"))
    assert entrypoint.main(["evaluate"]) == 0
    evaluation = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert 0.5 < evaluation["test"]["roc_auc"] <= 1.0 and evaluation["latency"]["p99_ms"] > 0

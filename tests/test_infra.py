"""The Pulumi program run whole under Pulumi's mocks, one stack at a time. Every test counts the
recorded resources first, so none can pass on an empty plan."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from fabric.errors import SpecError
from fabric.plan import Plan, plan_stack
from tests.conftest import ROOT, fabric_cli

BUCKET = "aws:s3/bucket:Bucket"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EXPECTED_COUNTS = {"dev": 35, "staging": 26, "prod": 26, "onprem": 44}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {env: plan_stack(env, ROOT) for env in EXPECTED_COUNTS}


def test_every_stack_declares_its_resources(plans: dict[str, Plan]) -> None:
    assert {env: len(p.resources) for env, p in plans.items()} == EXPECTED_COUNTS


def test_dev_has_a_gpu_pool_that_scales_to_zero_and_prod_two_endpoint_instances(plans: dict[str, Plan]) -> None:
    dev_gpu = [r for r in plans["dev"].of_type(NODE_GROUP) if r.inputs["amiType"].endswith("NVIDIA")]
    assert len(dev_gpu) == 1
    assert dev_gpu[0].inputs["scalingConfig"]["minSize"] == 0 and dev_gpu[0].inputs["scalingConfig"]["maxSize"] <= 1
    configs = plans["prod"].of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    assert len(configs) == 1
    assert configs[0].inputs["productionVariants"][0]["initialInstanceCount"] >= 2
    targets = plans["prod"].of_type("aws:appautoscaling/target:Target")
    assert len(targets) == 1 and targets[0].inputs["minCapacity"] >= 2


def test_every_bucket_is_encrypted_versioned_and_private(plans: dict[str, Plan]) -> None:
    for env, plan in plans.items():
        buckets = plan.of_type(BUCKET)
        assert len(buckets) == 1, env
        by_bucket = {}
        for kind in ("bucketServerSideEncryptionConfiguration", "bucketVersioning", "bucketPublicAccessBlock"):
            token = f"aws:s3/{kind}:{kind[0].upper()}{kind[1:]}"
            by_bucket[kind] = {r.inputs["bucket"]: r for r in plan.of_type(token)}
        for bucket in buckets:
            encryption = by_bucket["bucketServerSideEncryptionConfiguration"][bucket.id]
            assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
            assert by_bucket["bucketVersioning"][bucket.id].inputs["versioningConfiguration"]["status"] == "Enabled"
            private = by_bucket["bucketPublicAccessBlock"][bucket.id].inputs
            assert all(private[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))


def test_gpu_pools_are_tainted_and_labelled_cpu_pools_are_not(plans: dict[str, Plan]) -> None:
    groups = plans["onprem"].of_type(NODE_GROUP)
    assert len(groups) == 3
    for group in groups:
        gpu = group.inputs["amiType"].endswith("NVIDIA")
        taints = group.inputs.get("taints", [])
        assert (taints == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]) == gpu
        assert group.inputs["labels"]["fabric.io/accelerator"] == ("nvidia" if gpu else "none")


def test_the_endpoint_serves_the_pinned_model_version(plans: dict[str, Plan]) -> None:
    models = plans["staging"].of_type("aws:sagemaker/model:Model")
    assert len(models) == 1
    container = models[0].inputs["primaryContainer"]
    assert container["modelDataUrl"] == "s3://fabric-staging-artifacts/models/fraud/1/model.tar.gz"
    assert container["environment"]["FABRIC_MODEL"] == "fraud:1"
    assert plans["staging"].outputs["pinned_models"] == {"fraud": "fraud:1"}
    capture = plans["staging"].of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")[0].inputs["dataCaptureConfig"]
    assert capture["enableCapture"] is True and capture["initialSamplingPercentage"] == 50


def test_a_kubernetes_stack_declares_deployment_service_hpa_and_pdb(plans: dict[str, Plan]) -> None:
    plan = plans["onprem"]
    kinds = {r.type for r in plan.resources if r.type.startswith("kubernetes:")}
    assert {"kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service",
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:policy/v1:PodDisruptionBudget"} <= kinds  # fmt: skip
    deployment = plan.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    server = deployment["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert server["args"][server["args"].index("--version") + 1] == "fraud:1"
    rds = plan.of_type("aws:rds/instance:Instance")
    assert len(rds) == 1 and rds[0].inputs["storageEncrypted"] is True and rds[0].inputs["publiclyAccessible"] is False


def test_every_taggable_aws_resource_carries_owner_and_cost_center(plans: dict[str, Plan]) -> None:
    tagged = [r for r in plans["prod"].resources if r.type.startswith("aws:") and "tags" in r.inputs]
    assert len(tagged) >= 12
    for r in tagged:
        assert {"owner", "cost-center"} <= set(r.inputs["tags"]), r.name


def test_prod_reads_staging_through_a_stack_reference(plans: dict[str, Plan]) -> None:
    references = plans["prod"].of_type("pulumi:pulumi:StackReference")
    assert [r.name for r in references] == ["organization/fabric/staging"]


def _project(tmp_path: Path, env: str, edit: dict) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copytree(ROOT / "infra", root / "infra")
    (root / "stacks").mkdir()
    config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]
    for key, value in edit.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (root / "stacks" / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump({"config": config}))
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"fabric:gpuPools": [{"name": "train", "instanceTypes": ["g5.xlarge"], "min": 4, "max": 2}]},
         "fabric:gpuPools[0]: max=2 must be >= min (4)"),
        ({"fabric:endpoints": {"fraud": {"instanceType": "c6i.large", "minInstances": 1, "maxInstances": 2}}},
         "fabric:endpoints.fraud.latencyBudgetMs is required"),
        ({"fabric:backend": "openshift"}, "fabric:backend='openshift'"),
        ({"fabric:network": None}, "platform=kubernetes needs fabric:network"),
    ],
)  # fmt: skip
def test_invalid_config_fails_before_any_resource_naming_the_key(tmp_path: Path, edit: dict, message: str) -> None:
    root = _project(tmp_path, "dev", edit)
    with pytest.raises(SpecError) as error:
        plan_stack("dev", root)
    assert message in str(error.value)
    assert "stacks/Pulumi.dev.yaml" in str(error.value)


def test_cli_plan_prints_json_for_machines_and_a_table_for_people(tmp_path: Path) -> None:
    as_json = fabric_cli("infra", "plan", "--stack", "prod", "--json")
    assert as_json.returncode == 0, as_json.stderr
    payload = json.loads(as_json.stdout)
    assert len(payload["resources"]) == EXPECTED_COUNTS["prod"]
    table = fabric_cli("infra", "plan", "--stack", "prod")
    assert table.returncode == 0 and "stack prod: 26 resources" in table.stdout
    root = _project(tmp_path, "dev", {"fabric:backend": "openshift"})
    bad = fabric_cli("infra", "plan", "--stack", "dev", env={"FABRIC_PROJECT_ROOT": str(root)})
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "fabric:backend='openshift'" in bad.stderr


def test_pulumi_yaml_declares_only_types_pulumi_accepts_with_stacksettings_defaults() -> None:
    from fabric.spec import StackSettings

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["main"] == "infra/" and project["stackConfigDir"] == "stacks/"
    declared = project["config"]
    assert len(declared) == 4
    fields = {f.alias or name: f for name, f in StackSettings.model_fields.items()}
    for key, spec in declared.items():
        assert spec["type"] in ("string", "integer", "boolean", "array"), key  # Pulumi's project config types
        assert "default" in spec, f"{key}: Pulumi requires a declared key without a default in every stack"
        assert spec["default"] == fields[key.removeprefix("fabric:")].default, key


def _policies(plan: Plan) -> dict[str, dict]:
    """role (training, serving, pipeline) -> its recorded policy document."""
    documents = plan.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(documents) == 3
    return {r.name.removeprefix("roles-").removesuffix("-policy"): json.loads(r.inputs["policy"]) for r in documents}


def _allows(document: dict, action: str, resource: str) -> bool:
    """IAM's Allow matching (`*` and `?` wildcards), for statements without conditions."""
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] == "Allow" and "Condition" not in statement and any(fnmatchcase(action, a) for a in actions) \
                and any(fnmatchcase(resource, r) for r in resources):  # fmt: skip
            return True
    return False


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_every_key_the_backend_writes_is_allowed_for_the_role_that_writes_it(plans: dict[str, Plan], env: str) -> None:
    from fabric.backends.sagemaker import names
    from fabric.backends.sagemaker.pipeline import definition
    from fabric.spec import load_pipeline

    plan = plans[env]
    policies = _policies(plan)
    (bucket,) = plan.of_type(BUCKET)
    assert bucket.inputs["bucket"] == names.bucket(env)
    roles = {r.inputs["name"]: r for r in plan.of_type("aws:iam/role:Role")}
    assert set(roles) == {f"fabric-{env}-{k}" for k in ("training", "serving", "pipeline")}  # what backend.role() names

    def obj(url: str) -> str:  # s3://<bucket>/<key> -> the object's ARN as the mock run names the bucket
        name, _, key = url.removeprefix("s3://").partition("/")
        assert name == names.bucket(env)
        return f"arn:aws:mock:::{bucket.name}/{key}"

    spec = load_pipeline(ROOT / "pipelines" / "fraud.yaml")
    steps = {s["Name"]: s["Arguments"] for s in definition(spec, plan.settings, "img", "role")["Steps"]}
    checks: list[tuple[str, str, str]] = []  # (role, action, resource)
    for step in ("Search", "Train", "Quantize"):
        job = f"pipelines-x1y2-{step}-abc"  # SageMaker Pipelines names the jobs it starts
        output = f"{steps[step]['OutputDataConfig']['S3OutputPath']}/{job}/output/model.tar.gz"
        checks += [("training", "s3:PutObject", obj(output)), ("training", "s3:GetObject", obj(output)),  # the next step reads it
                   ("pipeline", "sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}")]  # fmt: skip
        checkpoint = steps[step]["CheckpointConfig"]["S3Uri"]  # spot is the default: every training step checkpoints
        checks += [("training", a, obj(f"{checkpoint}/registry/registry.db")) for a in ("s3:PutObject", "s3:GetObject")]
        checks.append(("training", "logs:PutLogEvents",
                       f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/TrainingJobs:log-stream:{job}/algo-1"))
    evaluation = f"{steps['Evaluate']['ProcessingOutputConfig']['Outputs'][0]['S3Output']['S3Uri']}/evaluation.json"
    checks += [("training", "s3:PutObject", obj(evaluation)), ("pipeline", "s3:GetObject", obj(evaluation)),
               ("pipeline", "sagemaker:CreateProcessingJob", "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-x1y2-Evaluate-abc"),
               ("pipeline", "sagemaker:CreateModelPackage", f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{names.package_group(env, 'fraud')}/3"),
               ("pipeline", "iam:PassRole", "arn:aws:mock:::roles-training")]  # fmt: skip
    # serving: the pinned model infra serves and the versions `fabric deploy` serves, data capture, endpoint logs
    (model,) = plan.of_type("aws:sagemaker/model:Model")
    (config,) = plan.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    capture = config.inputs["dataCaptureConfig"]["destinationS3Uri"]
    endpoint = names.endpoint(env, "fraud")
    checks += [("serving", "s3:GetObject", obj(model.inputs["primaryContainer"]["modelDataUrl"])),
               ("serving", "s3:GetObject", obj(names.model_url(env, "fraud", 12))),
               ("serving", "s3:PutObject", obj(f"{capture}/{endpoint}/champion/2026/11/24/10/part.jsonl")),
               ("serving", "logs:CreateLogStream",
                f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{endpoint}:log-stream:champion/i-0abc")]  # fmt: skip
    # the feature group's offline store writes as the role it is given
    (group,) = plan.of_type("aws:sagemaker/featureGroup:FeatureGroup")
    assert group.inputs["roleArn"] == "arn:aws:mock:::roles-training"
    features = {f["featureName"]: f["featureType"] for f in group.inputs["featureDefinitions"]}
    assert features[names.FEATURE_STAMP] == "Integral"  # what `fabric features materialize` writes with every record
    checks.append(("training", "s3:PutObject", obj(f"{group.inputs['offlineStoreConfig']['s3StorageConfig']['s3Uri']}/123/sagemaker/x.parquet")))
    denied = [c for c in checks if not _allows(policies[c[0]], c[1], c[2])]
    assert len(checks) == 28 and denied == []
    offline = f"{group.inputs['offlineStoreConfig']['s3StorageConfig']['s3Uri']}/123/sagemaker/us-east-1/offline-store/g/metadata/m.json"
    assert _allows(policies["training"], "s3:PutObjectAcl", obj(offline)) and _allows(policies["training"], "s3:GetObject", obj(offline))
    assert _allows(policies["training"], "s3:GetBucketAcl", f"arn:aws:mock:::{bucket.name}")
    assert _allows(policies["training"], "glue:UpdateTable", "arn:aws:glue:us-east-1:123456789012:table/sagemaker_featurestore/fabric_x")
    # and nothing more: models are written by `fabric run` (a person's or CI's credentials), never by a job or endpoint
    for role in ("training", "serving"):
        assert not _allows(policies[role], "s3:PutObject", obj(names.model_url(env, "fraud", 12)))
    assert not _allows(policies["serving"], "s3:GetObject", obj(evaluation))
    assert not _allows(policies["pipeline"], "sagemaker:CreateTrainingJob", "arn:aws:sagemaker:us-east-1:1:training-job/other")


def test_alarms_have_the_names_deploy_rolls_back_on(plans: dict[str, Plan]) -> None:
    from fabric.backends.sagemaker import names
    from fabric.backends.sagemaker.deploy import update_endpoint_request
    from fabric.spec import RolloutSpec

    alarms = plans["prod"].of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == 2
    by_name = {a.inputs["name"]: a.inputs for a in alarms}
    assert set(by_name) == {names.latency_alarm("prod", "fraud"), names.drift_alarm("prod", "fraud")}
    request = update_endpoint_request("fabric-prod-fraud", "c", RolloutSpec(strategy="canary", steps=[10, 100]),
                                      [names.latency_alarm("prod", "fraud")])  # what deploy sends
    rollback = request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"][0]["AlarmName"]
    latency = by_name[rollback]
    assert latency["dimensions"] == {"EndpointName": "fabric-prod-fraud", "VariantName": "champion"}
    assert latency["threshold"] == 20_000.0  # 20 ms budget, ModelLatency in microseconds
    onprem = plans["onprem"].of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert [a.inputs["name"] for a in onprem] == [names.drift_alarm("onprem", "fraud")]


def test_training_pools_default_to_spot_and_serving_pools_stay_on_demand(plans: dict[str, Plan]) -> None:
    from fabric.spec import StackSettings

    for env in ("dev", "onprem"):
        groups = plans[env].of_type(NODE_GROUP)
        assert len(groups) == {"dev": 2, "onprem": 3}[env]
        capacity = {g.inputs["nodeGroupName"]: g.inputs["capacityType"] for g in groups}
        assert capacity.pop("train-gpu") == "SPOT"
        assert set(capacity.values()) == {"ON_DEMAND"}, env  # system and serving
    for env in ("staging", "prod"):
        assert [p.capacity_type for p in plans[env].settings.gpu_pools] == ["SPOT"]

    def pools(**config: object) -> list[str]:
        settings = StackSettings.from_config("x", {"fabric:platform": "sagemaker", **{f"fabric:{k}": v for k, v in config.items()}}, "x.yaml")
        return [p.capacity_type for p in settings.gpu_pools]

    two = [{"name": "train", "instanceTypes": ["g5.xlarge"], "min": 0, "max": 2},
           {"name": "infer", "instanceTypes": ["g5.xlarge"], "min": 0, "max": 2}]  # fmt: skip
    assert pools(gpuPools=two) == ["SPOT", "ON_DEMAND"]  # only the pool that trains
    assert pools(gpuPools=[{**two[0], "capacityType": "ON_DEMAND"}]) == ["ON_DEMAND"]  # an explicit choice stands
    gpu_endpoint = {"fraud": {"instanceType": "ml.g5.xlarge", "minInstances": 1, "maxInstances": 1, "latencyBudgetMs": 5, "gpu": True}}
    assert pools(gpuPools=two[:1], endpoints=gpu_endpoint) == ["ON_DEMAND"]  # a GPU pool that may serve


def _references(manifest: dict) -> set[tuple[str, str, str]]:
    """(kind, namespace/name, key) of every Secret key and claim a manifest's pods read."""
    found: set[tuple[str, str, str]] = set()
    namespace = manifest["metadata"]["namespace"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                found.add(("Secret", f"{namespace}/{node['secretKeyRef']['name']}", node["secretKeyRef"]["key"]))
            if "persistentVolumeClaim" in node:
                found.add(("PersistentVolumeClaim", f"{namespace}/{node['persistentVolumeClaim']['claimName']}", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(manifest)
    return found


def test_the_secrets_and_claim_the_backend_manifests_read_are_declared_by_the_stack(plans: dict[str, Plan]) -> None:
    from fabric.backends.kubernetes import KubernetesBackend
    from fabric.spec import load_pipeline

    plan = plans["onprem"]
    assert len(plan.resources) == EXPECTED_COUNTS["onprem"]
    secrets = plan.of_type("kubernetes:core/v1:Secret")
    claims = plan.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert len(secrets) == 2 and len(claims) == 1
    declared = {("Secret", f"{s.inputs['metadata']['namespace']}/{s.inputs['metadata']['name']}", key)
                for s in secrets for key in s.inputs["stringData"]}  # fmt: skip
    declared |= {("PersistentVolumeClaim", f"{c.inputs['metadata']['namespace']}/{c.inputs['metadata']['name']}", "")
                 for c in claims}  # fmt: skip
    namespaces = {r.inputs["metadata"]["name"] for r in plan.of_type("kubernetes:core/v1:Namespace")}
    assert namespaces == {"fabric"}
    backend = KubernetesBackend(plan.settings)
    referenced: set[tuple[str, str, str]] = set()
    for path in ("fraud.yaml", "fraud-features.yaml"):
        spec = load_pipeline(ROOT / "pipelines" / path).model_copy(update={"name": "fraud"})
        for _, manifest in backend.manifests(spec, run_id="r1"):
            referenced |= _references(manifest)
    assert referenced == {
        ("Secret", "fabric/fabric-study", "url"),
        ("Secret", "fabric/fabric-features", "url"),
        ("PersistentVolumeClaim", "fabric/fabric-registry", ""),
    }
    assert referenced <= declared
    study = next(s for s in secrets if s.inputs["metadata"]["name"] == "fabric-study")
    # the RDS instance the stack declares, with the managed password (a mock placeholder here) quoted
    assert study.inputs["stringData"]["url"] == "postgresql://fabric:mock%2Fpass%20word@stores-postgres.rds.mock:5432/fabric"
    registry = claims[0].inputs["spec"]
    assert registry["accessModes"] == ["ReadWriteMany"] and registry["storageClassName"] == "efs-sc"


def test_renamed_secrets_and_claim_are_followed_by_both_sides(tmp_path: Path) -> None:
    from fabric.backends.kubernetes import objects

    kube = yaml.safe_load((ROOT / "stacks" / "Pulumi.onprem.yaml").read_text())["config"]["fabric:kubernetes"]
    root = _project(tmp_path, "onprem", {"fabric:kubernetes": {**kube, "namespace": "ml", "studySecret": "optuna-db",
                                                               "registryClaim": "models"}})  # fmt: skip
    plan = plan_stack("onprem", root)
    assert len(plan.resources) == EXPECTED_COUNTS["onprem"]
    names = {(r.type.rsplit(":", 1)[1], r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
             for r in plan.resources if r.type.startswith("kubernetes:core/v1:") and r.type.rsplit(":", 1)[1] != "Service"}  # fmt: skip
    assert names == {("Namespace", None, "ml"), ("Secret", "ml", "optuna-db"), ("Secret", "ml", "fabric-features"),
                     ("PersistentVolumeClaim", "ml", "models")}  # fmt: skip
    placed = {r.inputs["metadata"].get("namespace") for r in plan.resources if r.type.startswith("kubernetes:")
              and r.type != "kubernetes:core/v1:Namespace"}  # fmt: skip
    assert placed == {"ml"}  # the endpoint's Deployment, Service, HPA and PDB beside the Secrets and claim
    assert objects.registry_volume(plan.settings)["persistentVolumeClaim"]["claimName"] == "models"
    assert objects.env(plan.settings, study=True)[-1]["valueFrom"]["secretKeyRef"]["name"] == "optuna-db"

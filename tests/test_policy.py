"""Policy rules (one violating and one compliant case each), the check command, and promotion."""

from __future__ import annotations

import json
import shutil
import tarfile
import urllib.request
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from fabric.plan import plan_stack
from fabric.policy.rules import RULES, PolicyInput, Resource, evaluate
from fabric.registry import Lineage, ModelVersion, Registry
from tests.conftest import ROOT, fabric_cli
from tests.test_sagemaker import REGION


def _tiny_onnx() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["score"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


LINEAGE = Lineage("sha256:abc", "spec123", "git:1234", "fraud-study", 7, None, "staging", "lightgbm")


def register(home: Path, stack: str, p99: float = 1.0, lineage: Lineage = LINEAGE, extra: str | None = None) -> ModelVersion:
    registry = Registry(home / stack / "registry")
    with registry.stage() as staged:
        (staged / "model.onnx").write_bytes(_tiny_onnx())
        if extra:
            (staged / extra).write_bytes(b"not onnx")
        return registry.register("fraud", staged, replace(lineage, stack=stack), {"test": {"roc_auc": 0.9}}, {"p99_ms": p99})


@pytest.fixture()
def project(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copytree(ROOT / "infra", root / "infra")
    shutil.copytree(ROOT / "stacks", root / "stacks")
    monkeypatch.setenv("FABRIC_PROJECT_ROOT", str(root))
    return root


@pytest.fixture()
def prod_aws(moto_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Promotion into prod (backend sagemaker) publishes to its bucket and package group: on moto."""
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_EC2_METADATA_DISABLED": "true", "FABRIC_AWS_ENDPOINT_URL": moto_url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    def reset() -> None:  # moto's state is per process, shared by every server: leave none behind
        urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=30).close()  # noqa: S310

    reset()
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    s3.create_bucket(Bucket="fabric-prod-artifacts")  # as `pulumi up --stack prod` does
    sagemaker = boto3.client("sagemaker", endpoint_url=moto_url, region_name=REGION)
    yield {"s3": s3, "sagemaker": sagemaker}
    reset()


@pytest.fixture(scope="module")
def prod_plan():  # noqa: ANN201
    return plan_stack("prod", ROOT)


def _input(plan, pinned: dict | None = None, settings=None) -> PolicyInput:  # noqa: ANN001
    resources = [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources]
    return PolicyInput("prod", settings or plan.settings, resources, pinned or {})


def _compliant_model(home: Path) -> ModelVersion:
    version = register(home, "prod", lineage=replace(LINEAGE, promoted_from="staging/fraud:1", parent="staging/fraud:1"))
    return replace(version, lineage=replace(version.lineage, approvals=({"by": "a"}, {"by": "b"})))


def _without(plan, token: str) -> list[Resource]:  # noqa: ANN001
    return [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources if r.type != token]


def _mutate(plan, token: str, **inputs) -> list[Resource]:  # noqa: ANN001, ANN003
    return [Resource(r.type, r.name, r.id, {**r.inputs, **inputs} if r.type == token else r.inputs) for r in plan.resources]


def test_the_real_prod_plan_with_a_promoted_approved_model_is_compliant(prod_plan, home: Path) -> None:  # noqa: ANN001
    assert len(prod_plan.resources) == 26
    assert len(RULES) == 13
    assert evaluate(_input(prod_plan, {"fraud": _compliant_model(home)})) == []


def _violations_for(case: str, plan, home: Path) -> list[str]:  # noqa: ANN001, C901
    model = _compliant_model(home)
    settings = plan.settings
    resources = None
    pinned = {"fraud": model}
    if case == "FAB001":
        settings = settings.model_copy(update={"policy": settings.policy.model_copy(update={"max_latency_budget_ms": 5})})
    elif case == "FAB002":
        pinned = {"fraud": replace(model, latency={"p99_ms": 50.0})}
    elif case == "FAB003":
        pinned = {"fraud": replace(model, lineage=replace(model.lineage, code_version="unknown"))}
    elif case == "FAB004":
        pinned = {"fraud": replace(model, lineage=replace(model.lineage, promoted_from=None, approvals=()))}
    elif case == "FAB005":
        resources = _without(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    elif case == "FAB006":
        resources = _mutate(plan, "aws:ecr/repository:Repository", imageTagMutability="MUTABLE")
    elif case == "FAB007":
        pools = [p.model_copy(update={"max": 40}) for p in settings.gpu_pools]
        settings = settings.model_copy(update={"gpu_pools": pools})
    elif case == "FAB008":
        ep = settings.endpoints["fraud"].model_copy(update={"min_instances": 1})
        settings = settings.model_copy(update={"endpoints": {"fraud": ep}})
    elif case == "FAB009":
        pinned = {"fraud": replace(model, artifacts={**model.artifacts, "model.pkl": {"bytes": 1}})}
    elif case == "FAB010":
        resources = _mutate(plan, "aws:kms/key:Key", tags={"owner": "x"})
    elif case == "FAB012":
        pools = [p.model_copy(update={"min": 1}) for p in settings.gpu_pools]
        settings = settings.model_copy(update={"gpu_pools": pools})
    data = PolicyInput("prod", settings, resources or [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources], pinned)
    return [v.rule for v in evaluate(data)]


@pytest.mark.parametrize("case", [f"FAB{i:03d}" for i in (*range(1, 11), 12)])
def test_each_rule_catches_its_violation_and_only_it(case: str, prod_plan, home: Path) -> None:  # noqa: ANN001
    assert set(_violations_for(case, prod_plan, home)) == {case}


def test_gpu_taints_on_a_kubernetes_stack(home: Path) -> None:
    plan = plan_stack("onprem", ROOT)
    assert len(plan.resources) == 44
    data = PolicyInput("onprem", plan.settings, [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources], {})
    assert "FAB007" not in {v.rule for v in evaluate(data)}
    untainted = _mutate(plan, "aws:eks/nodeGroup:NodeGroup", taints=[])
    found = evaluate(PolicyInput("onprem", plan.settings, untainted, {}), only=["FAB007"])
    assert [v.subject for v in found] == ["gpu-train"]


def test_serving_on_spot_and_gpu_for_tree_families_are_flagged(tmp_path: Path) -> None:
    from fabric.spec import load_pipeline
    from tests.conftest import write_spec

    plan = plan_stack("onprem", ROOT)
    resources = [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources]
    trees = load_pipeline(write_spec(tmp_path, search={"budget_s": 5, "families": ["lightgbm", "xgboost"]}))
    mlp = load_pipeline(write_spec(tmp_path, search={"budget_s": 5, "families": ["lightgbm", "mlp"]}))
    clean = evaluate(PolicyInput("onprem", plan.settings, resources, {}, [mlp]), only=["FAB011", "FAB012", "FAB013"])
    assert clean == []
    spot = [Resource(r.type, r.name, r.id, {**r.inputs, "capacityType": "SPOT"} if r.name == "cpu-serving" else r.inputs)
            for r in plan.resources]  # fmt: skip
    found = evaluate(PolicyInput("onprem", plan.settings, spot, {}, [trees]), only=["FAB011", "FAB012", "FAB013"])
    assert [(v.rule, v.subject) for v in found] == [("FAB011", "cpu-serving"), ("FAB013", "pipelines/fraud")]
    assert "fabric:kubernetes.gpus=1" in found[1].message


def test_check_command_exit_codes_json_and_markdown(project: Path, home: Path) -> None:
    dev = fabric_cli("policy", "check", "--stack", "dev")
    assert dev.returncode == 0 and "passed" in dev.stdout
    prod = fabric_cli("policy", "check", "--stack", "prod", "--json")
    assert prod.returncode == 1  # mandatory, and fraud:1 is not in the prod registry
    payload = json.loads(prod.stdout)
    assert payload["failed"] and [v["rule"] for v in payload["violations"]] == ["FAB003"]
    register(home, "prod", lineage=replace(LINEAGE, promoted_from="staging/fraud:1"))
    Registry(home / "prod" / "registry").approve("fraud:1", "a")
    Registry(home / "prod" / "registry").approve("fraud:1", "b")
    ok = fabric_cli("policy", "check", "--stack", "prod", "--format", "markdown")
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.startswith("### Policy check: stack `prod` ✅ passes")


def test_promotion_refusals_change_nothing_and_name_the_rule(project: Path, home: Path) -> None:
    stack = project / "stacks" / "Pulumi.prod.yaml"
    before = stack.read_bytes()
    slow = register(home, "staging", p99=30.0)  # fraud:1, over prod's 20 ms
    Registry(home / "staging" / "registry").approve(slow.address, "a")
    Registry(home / "staging" / "registry").approve(slow.address, "b")
    refused = fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod")
    assert refused.returncode == 2 and "FAB002" in refused.stderr
    incomplete = register(home, "staging", lineage=replace(LINEAGE, study=None))  # fraud:2
    refused = fabric_cli("promote", incomplete.address, "--to", "prod")
    assert refused.returncode == 2 and "FAB003" in refused.stderr and "FAB004" in refused.stderr  # and no approvals
    assert stack.read_bytes() == before
    assert not (home / "prod" / "registry" / "registry.db").exists() or Registry(home / "prod" / "registry").list() == []


def test_promotion_pins_one_line_copies_lineage_and_rolls_back(project: Path, home: Path, prod_aws: dict) -> None:
    stack = project / "stacks" / "Pulumi.prod.yaml"
    before = stack.read_text()
    good = register(home, "staging")
    staging = Registry(home / "staging" / "registry")
    staging.approve(good.address, "alice")
    staging.approve(good.address, "bob")
    done = fabric_cli("promote", good.address, "--from", "staging", "--to", "prod", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["target"] == "prod/fraud:1" and result["previous"] == "fraud:1"
    changed = [(a, b) for a, b in zip(before.splitlines(), stack.read_text().splitlines(), strict=True) if a != b]
    assert changed == []  # the pin already named fraud:1: the text is the same; promote a second version
    second = register(home, "staging", lineage=replace(LINEAGE, trial=9))
    staging.approve(second.address, "alice")
    staging.approve(second.address, "bob")
    assert fabric_cli("promote", second.address, "--to", "prod").returncode == 0
    changed = [(a, b) for a, b in zip(before.splitlines(), stack.read_text().splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and 'model: "fraud:2"' in changed[0][1] and "dataCaptureRate: 0.2" in changed[0][1]
    prod = Registry(home / "prod" / "registry")
    copied = prod.get("fraud:2")
    assert copied.lineage.promoted_from == "staging/fraud:2" and copied.lineage.trial == 9
    assert (copied.path / "model.onnx").read_bytes() == (second.path / "model.onnx").read_bytes()
    chain = json.loads(fabric_cli("models", "lineage", "fraud:2", "--stack", "prod", "--json").stdout)
    assert [(c["stack"], c["address"]) for c in chain] == [("prod", "fraud:2"), ("staging", "fraud:2")]
    assert fabric_cli("policy", "check", "--stack", "prod").returncode == 0
    back = fabric_cli("promote", "--rollback", "--to", "prod", "--endpoint", "fraud")
    assert back.returncode == 0, back.stderr
    assert 'model: "fraud:1"' in stack.read_text()
    assert any(e["kind"] == "promotion_rolled_back" for e in prod.events("fraud", 2))



def _approved(home: Path, stack: str = "staging", **kwargs) -> ModelVersion:  # noqa: ANN003
    version = register(home, stack, **kwargs)
    registry = Registry(home / stack / "registry")
    registry.approve(version.address, "alice")
    registry.approve(version.address, "bob")
    return version


def _check(home: Path) -> dict:
    done = fabric_cli("policy", "check", "--stack", "prod", "--json", env={"FABRIC_HOME": str(home)})
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_check_with_an_empty_home_reads_the_committed_evidence_and_reaches_the_same_verdict(
    project: Path, home: Path, tmp_path: Path, prod_aws: dict
) -> None:
    fresh = tmp_path / "ci-runner-home"  # what a pull request's runner has: no registry at all
    before = _check(fresh)
    assert before["failed"] and [v["rule"] for v in before["violations"]] == ["FAB003"]
    assert "stacks/evidence/prod/fraud-1.json does not exist" in before["violations"][0]["message"]
    _approved(home)
    assert fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod").returncode == 0
    proof = project / "stacks" / "evidence" / "prod" / "fraud-1.json"
    record = json.loads(proof.read_text())
    assert (record["stack"], record["address"], record["promotion"]["from"]) == ("prod", "fraud:1", "staging/fraud:1")
    assert len(record["lineage"]["approvals"]) == 2 and record["latency"]["p99_ms"] == 1.0
    assert len(record["artifacts"]["model.onnx"]["sha256"]) == 64
    with_registry, without = _check(home), _check(fresh)
    assert with_registry["evidence"] == {"fraud": "registry"}
    assert without["evidence"] == {"fraud": "stacks/evidence/prod/fraud-1.json"}
    assert not with_registry["failed"] and with_registry["violations"] == []
    assert {k: v for k, v in without.items() if k != "evidence"} == {k: v for k, v in with_registry.items() if k != "evidence"}
    # a slower model in the evidence fails both ways alike (FAB002 reads the committed p99)
    proof.write_text(json.dumps({**record, "latency": {"p99_ms": 45.0}}))
    assert [v["rule"] for v in _check(fresh)["violations"]] == ["FAB002"]


def test_evidence_must_be_for_exactly_the_pinned_version(project: Path, home: Path, tmp_path: Path, prod_aws: dict) -> None:
    _approved(home)
    assert fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod").returncode == 0
    proof = project / "stacks" / "evidence" / "prod" / "fraud-1.json"
    record = json.loads(proof.read_text())
    proof.write_text(json.dumps({**record, "address": "fraud:2"}))
    found = _check(tmp_path / "empty")
    assert found["failed"] and [(v["rule"], v["subject"]) for v in found["violations"]] == [("FAB003", "fraud")]
    assert "is evidence for prod/fraud:2, not the pinned prod/fraud:1" in found["violations"][0]["message"]
    proof.write_text(json.dumps(record))
    other = tmp_path / "other-home"  # a home whose prod fraud:1 is another model than the one promoted
    register(other, "prod", lineage=replace(LINEAGE, promoted_from="staging/fraud:1"), extra="notes.md")
    found = _check(other)
    assert [v["rule"] for v in found["violations"]] == ["FAB003", "FAB004"]
    assert "artifacts ['notes.md'] differ" in found["violations"][0]["message"]


def test_a_corrupted_artifact_refuses_the_promotion_and_changes_nothing(project: Path, home: Path) -> None:
    stack = project / "stacks" / "Pulumi.prod.yaml"
    before = stack.read_bytes()
    good = _approved(home)
    onnx_file = good.path / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: bit rot or tampering after registration
    onnx_file.write_bytes(bytes(data))
    refused = fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: fraud:1: artifact model.onnx in ") and "is not the file registered" in refused.stderr
    assert stack.read_bytes() == before
    assert not (project / "stacks" / "evidence").exists()
    assert Registry(home / "prod" / "registry").list() == []


def test_an_interrupted_promotion_changes_nothing(project: Path, home: Path, monkeypatch: pytest.MonkeyPatch, prod_aws: dict) -> None:
    from fabric import promote as promotion

    _approved(home)
    promotion.promote("fraud:1", "staging", "prod", root=project)
    stack = project / "stacks" / "Pulumi.prod.yaml"
    evidence_dir = project / "stacks" / "evidence" / "prod"
    before = stack.read_bytes()
    first_proof = (evidence_dir / "fraud-1.json").read_bytes()
    _approved(home, lineage=replace(LINEAGE, trial=9))  # staging fraud:2
    written: list[str] = []
    real = promotion._write_atomic

    def interrupted(path: Path, text: str) -> None:
        written.append(path.name)
        if path == stack:
            raise KeyboardInterrupt  # Ctrl-C while the pin is written
        real(path, text)

    monkeypatch.setattr(promotion, "_write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        promotion.promote("fraud:2", "staging", "prod", root=project)
    assert written == ["fraud-2.json", "Pulumi.prod.yaml"]  # the evidence was written, then taken back
    prod = Registry(home / "prod" / "registry")
    assert [v.address for v in prod.list()] == ["fraud:1"]
    assert prod.get("fraud@champion").address == "fraud:1"
    assert not (prod.artifacts / "fraud" / "2").exists()
    assert stack.read_bytes() == before
    assert sorted(p.name for p in evidence_dir.iterdir()) == ["fraud-1.json"]
    assert (evidence_dir / "fraud-1.json").read_bytes() == first_proof
    # on SageMaker too: the aborted attempt's package is Rejected (never deployable) and its objects are gone
    assert [(p["CustomerMetadataProperties"]["fabric_address"], p["ModelApprovalStatus"]) for p in _packages(prod_aws)] == [
        ("fraud:1", "Approved"), ("fraud:2", "Rejected")]  # fmt: skip
    keys = [o["Key"] for o in prod_aws["s3"].list_objects_v2(Bucket="fabric-prod-artifacts").get("Contents", [])]
    assert sorted(keys) == ["models/fraud/1/lineage.json", "models/fraud/1/model.tar.gz"]
    monkeypatch.setattr(promotion, "_write_atomic", real)
    done = promotion.promote("fraud:2", "staging", "prod", root=project)  # the retry gets the number the failed try freed
    assert done.target == "prod/fraud:2" and prod.get("fraud@champion").address == "fraud:2"
    statuses = sorted((p["CustomerMetadataProperties"]["fabric_address"], p["ModelApprovalStatus"]) for p in _packages(prod_aws))
    assert statuses == [("fraud:1", "Approved"), ("fraud:2", "Approved"), ("fraud:2", "Rejected")]


def _packages(aws: dict, group: str = "fabric-prod-fraud") -> list[dict]:
    listed = aws["sagemaker"].list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    return [aws["sagemaker"].describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


def test_promotion_into_a_sagemaker_stack_uploads_and_registers_an_approved_package_with_lineage(
    project: Path, home: Path, prod_aws: dict
) -> None:
    import io

    good = _approved(home)
    done = fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod", "--json")
    assert done.returncode == 0, done.stderr
    packages = _packages(prod_aws)
    assert len(packages) == 1
    package = packages[0]
    assert package["ModelApprovalStatus"] == "Approved"
    assert "alice, bob; promoted from staging/fraud:1" in package["ApprovalDescription"]
    meta = package["CustomerMetadataProperties"]
    assert (meta["fabric_address"], meta["parent"], meta["study"], meta["p99_ms"]) == ("fraud:1", "staging/fraud:1", "fraud-study", "1.0")
    data_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert data_url == "s3://fabric-prod-artifacts/models/fraud/1/model.tar.gz"
    s3 = prod_aws["s3"]
    archive = s3.get_object(Bucket="fabric-prod-artifacts", Key="models/fraud/1/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        served = tar.extractfile("model.onnx").read()  # type: ignore[union-attr]
    assert served == (good.path / "model.onnx").read_bytes()
    lineage = json.loads(s3.get_object(Bucket="fabric-prod-artifacts", Key="models/fraud/1/lineage.json")["Body"].read())
    assert lineage["lineage"]["promoted_from"] == "staging/fraud:1" and len(lineage["lineage"]["approvals"]) == 2
    assert json.loads(done.stdout)["evidence"]["model_package"] == package["ModelPackageArn"]
    proof = json.loads((project / "stacks" / "evidence" / "prod" / "fraud-1.json").read_text())
    assert proof["promotion"]["checked"]["model_package"] == package["ModelPackageArn"]


def test_promotion_into_a_sagemaker_stack_without_its_bucket_changes_nothing(project: Path, home: Path, prod_aws: dict) -> None:
    prod_aws["s3"].delete_bucket(Bucket="fabric-prod-artifacts")
    stack = project / "stacks" / "Pulumi.prod.yaml"
    before = stack.read_bytes()
    _approved(home)
    refused = fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("error: bucket fabric-prod-artifacts does not exist; "
                                      "`pulumi up --stack prod` creates it")  # fmt: skip
    assert stack.read_bytes() == before and not (project / "stacks" / "evidence").exists()
    assert Registry(home / "prod" / "registry").list() == []


def test_an_interruption_after_the_champion_moved_puts_it_back(project: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
                                                               prod_aws: dict) -> None:  # fmt: skip
    from fabric import promote as promotion

    _approved(home)
    promotion.promote("fraud:1", "staging", "prod", root=project)
    _approved(home, lineage=replace(LINEAGE, trial=9))
    stack = project / "stacks" / "Pulumi.prod.yaml"
    before = stack.read_bytes()
    real = Registry.set_alias

    def then_interrupted(self: Registry, address: str, alias: str, reason: str = "") -> ModelVersion:
        real(self, address, alias, reason)
        raise KeyboardInterrupt  # after the alias moved: the last step

    monkeypatch.setattr(Registry, "set_alias", then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        promotion.promote("fraud:2", "staging", "prod", root=project)
    prod = Registry(home / "prod" / "registry")
    assert [v.address for v in prod.list()] == ["fraud:1"]
    assert prod.get("fraud@champion").address == "fraud:1"
    assert stack.read_bytes() == before and not (project / "stacks" / "evidence" / "prod" / "fraud-2.json").exists()


def test_an_approval_in_the_target_stack_reaches_the_committed_evidence(project: Path, home: Path, tmp_path: Path,
                                                                        prod_aws: dict) -> None:  # fmt: skip
    version = register(home, "staging")
    staging = Registry(home / "staging" / "registry")
    for by in ("alice", "bob"):
        staging.approve(version.address, by)
    assert fabric_cli("promote", "fraud:1", "--from", "staging", "--to", "prod").returncode == 0
    approved = fabric_cli("models", "approve", "fraud:1", "--stack", "prod", "--by", "carol")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout == ("fraud:1 approved by carol (3 approval(s))\n"
                               "updated stacks/evidence/prod/fraud-1.json; commit it with the approval\n")  # fmt: skip
    record = json.loads((project / "stacks" / "evidence" / "prod" / "fraud-1.json").read_text())
    assert [a["by"] for a in record["lineage"]["approvals"]] == ["alice", "bob", "carol"]
    assert record["address"] == "fraud:1" and record["promotion"]["from"] == "staging/fraud:1"
    assert _check(home) == {**_check(tmp_path / "empty"), "evidence": {"fraud": "registry"}}


def test_a_gpu_pool_that_may_serve_is_flagged_on_spot() -> None:
    plan = plan_stack("onprem", ROOT)
    resources = [Resource(r.type, r.name, r.id, r.inputs) for r in plan.resources]
    (gpu,) = [r for r in resources if r.type == "aws:eks/nodeGroup:NodeGroup" and r.name == "gpu-train"]
    assert gpu.inputs["capacityType"] == "SPOT"  # the training pool: spot is the cheap, resumable default
    assert evaluate(PolicyInput("onprem", plan.settings, resources, {}), only=["FAB011"]) == []
    endpoints = {k: e.model_copy(update={"gpu": True}) for k, e in plan.settings.endpoints.items()}
    serving_on_gpu = plan.settings.model_copy(update={"endpoints": endpoints})
    found = evaluate(PolicyInput("onprem", serving_on_gpu, resources, {}), only=["FAB011"])
    assert [(v.rule, v.subject) for v in found] == [("FAB011", "gpu-train")]
    assert "an endpoint sets gpu: true" in found[0].message and "ON_DEMAND" in found[0].message
    other = [Resource(r.type, r.name, r.id, {**r.inputs, "nodeGroupName": "infer-gpu"}) if r is gpu else r for r in resources]
    found = evaluate(PolicyInput("onprem", plan.settings, other, {}), only=["FAB011"])
    assert [v.subject for v in found] == ["gpu-train"] and "not the training pool (train)" in found[0].message

"""Every manifest the kubernetes backend renders is valid for the Kubernetes API of a current
release (and of the stack's own version), and says what the lifecycle needs: GPU scheduling for
training, probes and a surge-only rollout for serving, weights and mirrors for canary and shadow."""

from __future__ import annotations

import json

import math
from pathlib import Path

import jsonschema
import pytest
import yaml

from fabric.backends import backend_for, capabilities
from fabric.backends.kubernetes import KubernetesBackend, monitor_job, plan, rollout
from fabric.errors import CapabilityError, FabricError, SpecError
from fabric.spec import PipelineSpec, StackSettings, load_pipeline, load_stack
from tests.conftest import ROOT, fabric_cli, write_spec
from tests.k8s_schema import NEWEST, validate

ONPREM = load_stack("onprem", ROOT)
VERSIONS = sorted({NEWEST, ONPREM.kubernetes_version})  # newest shipped schemas, and the stack's own


def _settings(**kubernetes: object) -> StackSettings:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.onprem.yaml").read_text())["config"]
    raw["fabric:kubernetes"] = {**raw["fabric:kubernetes"], **kubernetes}
    return StackSettings.from_config("onprem", raw, "Pulumi.onprem.yaml")


def _spec(tmp_path: Path, **overrides: object) -> PipelineSpec:
    return load_pipeline(write_spec(tmp_path, search={"budget_s": 60, "families": ["lightgbm"]}, **overrides))


def _all(spec: PipelineSpec, settings: StackSettings = ONPREM) -> list[tuple[str, dict]]:
    backend = KubernetesBackend(settings)
    pairs = backend.manifests(spec, run_id="r1")
    pairs.append(("retrain", monitor_job.retrain_job(spec, settings, now=0)))
    deployed = backend.deploy("fraud:3", "all_at_once", spec=spec, dry_run=True, run_id="r2")["manifests"]
    return pairs + [("deploy", m) for m in deployed]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("strategy", ["all_at_once", "canary", "shadow", "blue_green"])
def test_every_manifest_is_valid_for_the_kubernetes_api(tmp_path: Path, version: str, strategy: str) -> None:
    spec = _spec(tmp_path, rollout={"strategy": strategy, "steps": [10, 50, 100]})
    pairs = _all(spec)
    gpu_spec = spec.model_copy(update={"train": spec.train.model_copy(update={"accelerator": "gpu"})})
    for settings in (_settings(gpus=0), _settings(gpus=2)):  # CPU-only training and multi-GPU training
        pairs += [(s, m) for s, m in plan.render(gpu_spec, settings, "r3", stages=("train",))]
    kinds = {m["kind"] for _, m in pairs}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Job", "Deployment", "Service",
            "HorizontalPodAutoscaler", "PodDisruptionBudget", "CronJob"} <= kinds  # fmt: skip
    assert ("HTTPRoute" in kinds) == (strategy != "all_at_once")
    for stage, manifest in pairs:
        try:
            validate(manifest, version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{stage} {manifest['kind']}/{manifest['metadata']['name']} at {list(exc.absolute_path)}: {exc.message}")


def test_the_validation_is_not_vacuous(tmp_path: Path) -> None:
    """What the API server would refuse (or silently drop), the schemas refuse too."""
    spec = _spec(tmp_path, rollout={"strategy": "canary", "steps": [10, 100]}, train={"accelerator": "gpu"})
    pairs = dict((m["kind"] + "/" + s, m) for s, m in _all(spec))
    train = pairs["Job/train"]
    bad = yaml.safe_load(yaml.safe_dump(train))
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = bad["spec"]["template"]["spec"]["containers"][0].pop("resources")
    bad_toleration = yaml.safe_load(yaml.safe_dump(train))
    bad_toleration["spec"]["template"]["spec"]["tolerations"][0]["effect"] = 7
    route = pairs["HTTPRoute/rollout"]
    bad_weight = yaml.safe_load(yaml.safe_dump(route))
    bad_weight["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    bad_field = yaml.safe_load(yaml.safe_dump(route))
    bad_field["spec"]["rules"][0]["backendRefs"][0]["percent"] = 10
    for manifest in (bad, bad_toleration, bad_weight, bad_field):
        with pytest.raises(jsonschema.ValidationError):
            validate(manifest)


def test_training_asks_for_gpus_on_the_gpu_pool_and_tolerates_its_taint(tmp_path: Path) -> None:
    spec = _spec(tmp_path, train={"accelerator": "gpu"})
    pairs = dict(plan.render(spec, _settings(gpus=2), "r1", stages=("search", "train")))
    pod = pairs["train"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"fabric.io/pool": "train"}  # the gpuPools entry of the stack
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "registry", "mountPath": "/var/lib/fabric", "readOnly": False} in pod["containers"][0]["volumeMounts"]
    args = pod["containers"][0]["command"]
    assert args[:3] == ["python", "-m", "fabric.backends.kubernetes.train"]
    assert args[args.index("--bucket") + 1] == "s3://fabric-onprem-artifacts"
    # the search runs on the CPU pool: no GPU asked for, no toleration
    search = pairs["search"]["spec"]
    assert search["completionMode"] == "Indexed" and search["completions"] == search["parallelism"] == 4
    assert search["activeDeadlineSeconds"] == 600 + math.ceil(60 * 1.1)
    worker = search["template"]["spec"]
    assert "tolerations" not in worker and "nvidia.com/gpu" not in worker["containers"][0]["resources"]["requests"]
    assert worker["nodeSelector"] == {"fabric.io/pool": "system"}
    study = next(e for e in worker["containers"][0]["env"] if e["name"] == "FABRIC_STUDY_URL")
    assert study["valueFrom"] == {"secretKeyRef": {"name": "fabric-study", "key": "url"}}
    assert worker["containers"][0]["command"][:3] == ["python", "-m", "fabric.backends.kubernetes.worker"]


def test_a_cpu_spec_never_asks_for_a_gpu_whatever_the_stack_offers(tmp_path: Path) -> None:
    spec = _spec(tmp_path)  # train.accelerator defaults to cpu
    pod = dict(plan.render(spec, _settings(gpus=2), "r1", stages=("train",)))["train"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["requests"]
    assert "tolerations" not in pod and pod["nodeSelector"] == {"fabric.io/pool": "system"}


def test_every_container_runs_its_own_command_not_the_images_entrypoint(tmp_path: Path) -> None:
    containers = []
    for _, manifest in _all(_spec(tmp_path, rollout={"strategy": "canary", "steps": [10, 100]})):
        pod = manifest.get("spec", {}).get("template", {}).get("spec") or (
            manifest.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec"))
        containers += (pod or {}).get("containers", [])
    assert len(containers) >= 5  # search, train, serve, monitor, retrain at least
    for c in containers:  # the serving image's ENTRYPOINT would swallow `args`
        assert "args" not in c and c["command"][:2] == ["python", "-m"], c["name"]


def test_serving_is_probed_on_ping_and_rolls_without_losing_a_ready_pod(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    manifests = {m["kind"]: m for s, m in plan.render(spec, ONPREM, "r1", stages=("serve",))}
    deployment, service = manifests["Deployment"], manifests["Service"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    pod = deployment["spec"]["template"]
    server = pod["spec"]["containers"][0]
    assert server["image"] == ONPREM.kubernetes.image
    assert server["command"][:4] == ["python", "-m", "fabric.serving", "serve"] and "fraud:1" in server["command"]  # the pinned version
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert server[probe]["httpGet"] == {"path": "/ping", "port": "http"}
    assert server["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):  # fmt: skip
        assert selector.items() <= labels.items()
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)  # fabric:endpoints.fraud
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_canary_and_shadow_split_traffic_with_an_httproute(tmp_path: Path) -> None:
    spec = _spec(tmp_path, rollout={"strategy": "canary", "steps": [10, 50, 100]})
    route = rollout.http_route(spec, ONPREM, "canary", 10)
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("fraud", 90), ("fraud-canary", 10)]
    shadow = rollout.http_route(spec, ONPREM, "shadow", 100)
    rule = shadow["spec"]["rules"][0]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [("fraud", 100)]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "fraud-shadow", "port": 80}, "percent": 100}}]
    assert "filters" not in rollout.http_route(spec, ONPREM, "shadow", 0)["spec"]["rules"][0]
    job = rollout.controller_job(spec, ONPREM, "canary", "fraud:8", "r1")
    args = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[:3] == ["python", "-m", "fabric.backends.kubernetes.rollout_controller"]
    assert args[args.index("--candidate") + 1] == "fraud:8" and job["spec"]["backoffLimit"] == 0
    with pytest.raises(CapabilityError, match=r"fabric:kubernetes.gateway"):
        rollout.rollout(spec, _settings(gateway=None), "fraud:8", "r1")


def test_the_monitor_cronjob_runs_fabric_monitor_and_starts_a_retrain_job(tmp_path: Path) -> None:
    spec = _spec(tmp_path, drift={"retrain_budget_s": 30}, train={"accelerator": "gpu"})
    cron = dict(plan.render(spec, ONPREM, "r1", stages=("monitor",)))["monitor"]
    assert cron["spec"]["schedule"] == "*/15 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[:3] == ["python", "-m", "fabric.backends.kubernetes.monitor_job"]
    job = monitor_job.retrain_job(spec, ONPREM, now=0)
    assert job["metadata"]["name"] == "fraud-retrain-19700101-000000"
    retrain_args = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert {"--retrain", "--search-budget-s", "30", "challenger"} <= set(retrain_args)
    assert job["spec"]["template"]["spec"]["tolerations"]  # retraining trains on the GPU pool too
    reports = [{"endpoint": "fraud", "alarm": {"columns": ["amount"]}}, {"endpoint": "other", "alarm": None}]
    assert monitor_job.read_verdict(json.dumps(reports))["alarm"] is True
    assert monitor_job.read_verdict(json.dumps(reports[1:]))["alarm"] is False
    with pytest.raises(FabricError, match="no list of reports"):
        monitor_job.read_verdict("drift!\n")


def test_the_config_map_carries_the_spec_and_stack_the_pods_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    config = dict(plan.render(spec, ONPREM, "r1", stages=("config",)))["config"]
    folder = tmp_path / "etc"
    (folder / "stacks").mkdir(parents=True)
    (folder / "spec.yaml").write_text(config["data"]["spec.yaml"])
    (folder / "stacks" / "Pulumi.onprem.yaml").write_text(config["data"]["stack.yaml"])
    assert load_pipeline(folder / "spec.yaml").spec_hash() == spec.spec_hash()  # same study name, same lineage
    assert load_stack("onprem", folder) == ONPREM


def test_settings_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.onprem.yaml").read_text())["config"]
    without = {k: v for k, v in raw.items() if k != "fabric:kubernetes"}
    with pytest.raises(SpecError, match=r"backend=kubernetes needs fabric:kubernetes"):
        StackSettings.from_config("onprem", without, "Pulumi.onprem.yaml")
    with pytest.raises(SpecError, match=r"kubernetes.trainPool='gpu' is not a gpuPools name; use one of \['train'\]"):
        _settings(trainPool="gpu")
    with pytest.raises(SpecError, match=r"registryBucket='bucket' .*must be s3://"):
        _settings(registryBucket="bucket")
    (tmp_path / "rows.csv").write_text("a,b\n1,0\n")
    local_file = load_pipeline(write_spec(tmp_path, data={"source": "rows.csv", "target": "b", "rows": None}))
    with pytest.raises(CapabilityError, match=r"data.source=.*rows.csv is a file on this machine"):
        KubernetesBackend(ONPREM).manifests(local_file)
    spec = _spec(tmp_path)
    with pytest.raises(SpecError, match=r"fabric:endpoints has no 'fraud'"):
        plan.render(spec, ONPREM.model_copy(update={"endpoints": {}}), "r1", stages=("serve",))


def test_the_backend_says_what_it_can_do() -> None:
    backend = backend_for(ONPREM)
    assert backend.name == "kubernetes"
    assert capabilities(backend) == {"run": True, "deploy": True, "shadow": True, "monitor": True, "dry_run": True}
    assert capabilities(backend_for(load_stack("dev", ROOT)))["dry_run"] is False


def test_dry_run_prints_the_manifests_of_every_stage(tmp_path: Path, home: Path) -> None:
    result = fabric_cli("run", "pipelines/fraud.yaml", "--stack", "onprem", "--dry-run")
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    stages = [d["metadata"]["labels"]["app.kubernetes.io/component"] for d in documents]
    assert stages == ["access"] * 3 + ["config", "search", "train"] + ["serve"] * 4 + ["serve", "serve", "rollout", "rollout", "monitor"]
    for document in documents:
        validate(document)
    assert not home.exists()  # a dry run writes nothing


def test_dry_run_on_a_local_stack_and_a_run_without_a_cluster_are_user_errors(tmp_path: Path, home: Path) -> None:
    local = fabric_cli("run", "pipelines/fraud.yaml", "--stack", "dev", "--dry-run")
    assert local.returncode == 2 and local.stderr.strip().splitlines()[-1] == (
        "error: --dry-run: stack dev runs on fabric:backend=local, which has nothing to print; "
        "use a stack whose backend is kubernetes, or drop --dry-run"
    )
    nowhere = fabric_cli("run", "pipelines/fraud.yaml", "--stack", "onprem",
                         env={"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""})  # fmt: skip
    last = nowhere.stderr.strip().splitlines()[-1]
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr, nowhere.stderr
    assert last.startswith("error: stack onprem: no Kubernetes credentials") and "--dry-run" in last


def test_a_followed_job_is_read_from_its_status_conditions() -> None:
    from kubernetes import client

    from fabric.backends.kubernetes.jobs import job_state

    def job(completions: int, **status: object) -> dict:
        body = client.V1Job(spec=client.V1JobSpec(completions=completions, template=client.V1PodTemplateSpec()),
                            status=client.V1JobStatus(**status))  # fmt: skip
        return client.ApiClient().sanitize_for_serialization(body)  # the JSON the API server sends

    condition = client.V1JobCondition
    assert job_state(job(4)).phase == "pending"
    running = job_state(job(4, active=3, succeeded=1))
    assert running.phase == "running" and running.describe() == "running: 1/4 succeeded, 3 running, 0 failed"
    done = job_state(job(4, succeeded=4, conditions=[condition(type="SuccessCriteriaMet", status="True"),
                                                     condition(type="Complete", status="True")]))  # fmt: skip
    assert done.phase == "complete" and done.done
    deadline = condition(type="Failed", status="True", reason="DeadlineExceeded", message="Job was active longer than specified deadline")
    failed = job_state(job(4, succeeded=2, failed=2, conditions=[deadline]))
    assert failed.phase == "failed" and failed.reason == "DeadlineExceeded: Job was active longer than specified deadline"
    ignored = condition(type="Failed", status="False")
    assert job_state(job(1, active=1, conditions=[ignored])).phase == "running"


def test_servers_of_a_spec_with_feature_tables_read_the_online_store_url_from_a_secret(tmp_path: Path) -> None:
    from fabric.features.store import ONLINE_URL_ENV

    spec = load_pipeline(ROOT / "pipelines" / "fraud-features.yaml")
    spec = spec.model_copy(update={"name": "fraud"})  # the onprem stack's endpoint
    assert spec.features is not None and spec.rollout.strategy == "canary"
    deployments = [m for s, m in plan.render(spec, _settings(featuresSecret="card-store"), "r1", stages=("serve", "rollout"))
                   if m["kind"] == "Deployment"]  # fmt: skip
    assert sorted(d["metadata"]["name"] for d in deployments) == ["fraud", "fraud-canary"]
    for deployment in deployments:
        validate(deployment)
        server = deployment["spec"]["template"]["spec"]["containers"][0]
        online = [e for e in server["env"] if e["name"] == ONLINE_URL_ENV]
        assert online == [{"name": "FABRIC_FEATURES_ONLINE_URL", "valueFrom": {"secretKeyRef": {"name": "card-store", "key": "url"}}}]
    plain = [m for s, m in plan.render(_spec(tmp_path), ONPREM, "r1", stages=("serve",)) if m["kind"] == "Deployment"]
    assert len(plain) == 1
    assert ONLINE_URL_ENV not in {e["name"] for e in plain[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    header = KubernetesBackend(ONPREM).render_yaml(spec)
    assert "Secret fabric-features (key url: the online feature store" in header


def test_a_features_module_travels_in_the_config_map_and_loads_in_the_pod(tmp_path: Path) -> None:
    from fabric.features.definitions import load_feature_set

    spec = load_pipeline(ROOT / "pipelines" / "fraud-features.yaml").model_copy(update={"name": "fraud"})  # onprem's endpoint
    config = dict(plan.render(spec, ONPREM, "r1", stages=("config",)))["config"]
    (volume,) = [v for _, m in _all(spec) if m["kind"] == "Job" for v in m["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "config"][:1]  # fmt: skip
    pod = tmp_path / "etc-fabric"  # what the pod sees at /etc/fabric: the volume's items, by their paths
    for item in volume["configMap"]["items"]:
        (pod / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (pod / item["path"]).write_text(config["data"][item["key"]])
    assert [i["key"] for i in volume["configMap"]["items"]] == ["spec.yaml", "stack.yaml", "code-0-fraud_features.py"]
    shipped = load_pipeline(pod / "spec.yaml")
    assert shipped.features is not None and shipped.features.module == str(pod / "code-0-fraud_features.py")
    local, remote = load_feature_set(spec), load_feature_set(shipped)
    assert len(local.tables) == 2  # card_activity, card_history
    # the same definitions, so the pod's tables are not taken for changed versions
    assert [t.definition_hash() for t in remote.tables] == [t.definition_hash() for t in local.tables]
    for _, manifest in _all(spec):
        validate(manifest)


def test_the_server_captures_at_the_stack_rate_where_set_else_the_spec_rate(tmp_path: Path) -> None:
    spec = _spec(tmp_path, serving={"capture_rate": 0.05})
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.onprem.yaml").read_text())["config"]

    def rate(settings: StackSettings) -> str:
        (deployment,) = [m for stage, m in _all(spec, settings) if stage == "serve" and m["kind"] == "Deployment"]
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["FABRIC_CAPTURE_RATE"]

    assert raw["fabric:endpoints"]["fraud"]["dataCaptureRate"] == 0.2
    assert rate(ONPREM) == "0.2"  # the stack file sets it: the environment decides
    unset = {**raw, "fabric:endpoints": {"fraud": {k: v for k, v in raw["fabric:endpoints"]["fraud"].items() if k != "dataCaptureRate"}}}
    assert rate(StackSettings.from_config("onprem", unset, "Pulumi.onprem.yaml")) == "0.05"  # else the spec's

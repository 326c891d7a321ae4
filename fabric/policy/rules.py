"""Policy rules as plain functions, shared by `fabric policy check` and the CrossGuard pack.

Each rule reads a `PolicyInput` (the stack's settings, the resources its Pulumi program declares,
and registry evidence about the pinned models) and returns violations. A rule never raises on odd
input: it reports. Resources are plain records (type, name, id, inputs), so the same functions run
on `fabric.plan` output and on CrossGuard's `PolicyResource`s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fabric.plan import PlannedResource as Resource  # the rules read plans and CrossGuard resources alike
from fabric.registry import FORBIDDEN_SUFFIXES, ModelVersion
from fabric.spec import PipelineSpec, StackSettings

S3 = "aws:s3/"
BUCKET = "aws:s3/bucket:Bucket"
TAGGABLE_PREFIXES = ("aws:s3/bucket:", "aws:ecr/", "aws:eks/", "aws:sagemaker/", "aws:kms/", "aws:iam/role:", "aws:rds/instance:")


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: str  # mandatory | advisory (per rule; the stack's enforcement decides what fails)
    subject: str  # the resource, endpoint or model concerned
    message: str  # what is wrong and how to fix it

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class PolicyInput:
    stack: str
    settings: StackSettings
    resources: list[Resource] = field(default_factory=list)
    pinned: dict[str, ModelVersion | None] = field(default_factory=dict)  # endpoint -> its pinned version, if found
    specs: list[PipelineSpec] = field(default_factory=list)  # the project's pipelines, for right-sizing
    sources: dict[str, str] = field(default_factory=dict)  # endpoint -> where its evidence came from
    problems: dict[str, str] = field(default_factory=dict)  # endpoint -> why its evidence is absent or untrusted

    def of_type(self, token: str) -> list[Resource]:
        return [r for r in self.resources if r.type == token]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    check: Callable[[PolicyInput], list[Violation]]


RULES: list[Rule] = []


def rule(rule_id: str, title: str, severity: str = "mandatory") -> Callable:
    def register(fn: Callable[[PolicyInput], list[tuple[str, str]]]) -> Callable:
        def check(data: PolicyInput) -> list[Violation]:
            return [Violation(rule_id, severity, subject, message) for subject, message in fn(data)]

        RULES.append(Rule(rule_id, title, severity, check))
        return fn

    return register


def _file(data: PolicyInput) -> str:
    return f"stacks/Pulumi.{data.stack}.yaml"


@rule("FAB001", "every endpoint declares a latency budget within the stack's maximum")
def latency_budget_declared(data: PolicyInput) -> list[tuple[str, str]]:
    limit = data.settings.policy.max_latency_budget_ms
    return [
        (name, f"{_file(data)}: fabric:endpoints.{name}.latencyBudgetMs={e.latency_budget_ms} exceeds "
               f"policy.maxLatencyBudgetMs={limit}; lower the budget or raise the stack's maximum")  # fmt: skip
        for name, e in data.settings.endpoints.items()
        if e.latency_budget_ms > limit
    ]


@rule("FAB002", "the pinned model's measured p99 is within its endpoint's budget")
def pinned_model_latency(data: PolicyInput) -> list[tuple[str, str]]:
    out = []
    for name, endpoint in data.settings.endpoints.items():
        version = data.pinned.get(name)
        if endpoint.model is None or version is None:
            continue
        p99 = version.latency.get("p99_ms")
        if p99 is None or p99 > endpoint.latency_budget_ms:
            out.append((f"{name} -> {version.address}", f"measured p99 {p99} ms is over the endpoint's latencyBudgetMs="
                        f"{endpoint.latency_budget_ms}; pin a faster version or quantize it"))  # fmt: skip
    return out


@rule("FAB003", "the pinned model exists and its lineage is complete")
def pinned_model_lineage(data: PolicyInput) -> list[tuple[str, str]]:
    out = []
    for name, endpoint in data.settings.endpoints.items():
        if endpoint.model is None:
            continue
        version = data.pinned.get(name)
        source = data.settings.promote_from or "<stack>"
        fix = f"`fabric promote {endpoint.model} --from {source} --to {data.stack}` (it writes the evidence file)"
        if version is None:
            problem = data.problems.get(name) or f"pinned model {endpoint.model} is not in the {data.stack} registry"
            out.append((name, f"{problem}; promote it with {fix}"))
            continue
        if name in data.problems:
            out.append((version.address, f"{data.problems[name]}; use the registry the promotion wrote, or promote again with {fix}"))
            continue
        missing = version.lineage.missing()
        if missing:
            out.append((version.address, f"lineage lacks {missing}; retrain with `fabric run` so they are recorded"))
    return out


@rule("FAB004", "a model pinned in a stack that promotes was promoted from its source and approved")
def promoted_and_approved(data: PolicyInput) -> list[tuple[str, str]]:
    source, needed = data.settings.promote_from, data.settings.approvals.required
    out = []
    for name, version in data.pinned.items():
        if version is None:
            continue
        if source and not (version.lineage.promoted_from or "").startswith(f"{source}/"):
            out.append((version.address, f"was not promoted from {source} (promoted_from={version.lineage.promoted_from}); "
                                         f"never train straight into {data.stack}: `fabric promote` it from {source}"))  # fmt: skip
        if len(version.lineage.approvals) < needed:
            out.append((version.address, f"has {len(version.lineage.approvals)} approval(s), {_file(data)} "
                                         f"fabric:approvals.required={needed}; `fabric models approve` it in {source or data.stack}"))  # fmt: skip
    return out


@rule("FAB005", "buckets are encrypted, versioned and private")
def buckets_protected(data: PolicyInput) -> list[tuple[str, str]]:
    def by_bucket(token: str) -> dict[str, Resource]:
        return {str(r.inputs.get("bucket")): r for r in data.of_type(token)}

    encryption = by_bucket("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    versioning = by_bucket("aws:s3/bucketVersioning:BucketVersioning")
    private = by_bucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    out = []
    for bucket in data.of_type(BUCKET):
        keys = {bucket.id, bucket.name, str(bucket.inputs.get("bucket"))}
        enc = next((encryption[k] for k in keys if k in encryption), None)
        if enc is None or not any(r.get("applyServerSideEncryptionByDefault", {}).get("sseAlgorithm") in ("aws:kms", "AES256")
                                  for r in enc.inputs.get("rules", [])):  # fmt: skip
            out.append((bucket.name, "has no server-side encryption; add a BucketServerSideEncryptionConfiguration (aws:kms)"))
        ver = next((versioning[k] for k in keys if k in versioning), None)
        if ver is None or ver.inputs.get("versioningConfiguration", {}).get("status") != "Enabled":
            out.append((bucket.name, "is not versioned; add a BucketVersioning with status Enabled"))
        block = next((private[k] for k in keys if k in private), None)
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        if block is None or not all(block.inputs.get(f) is True for f in flags):
            out.append((bucket.name, f"is not private; add a BucketPublicAccessBlock with {', '.join(flags)} true"))
    return out


@rule("FAB006", "image repositories are immutable and scanned on push")
def ecr_immutable(data: PolicyInput) -> list[tuple[str, str]]:
    out = []
    for repo in data.of_type("aws:ecr/repository:Repository"):
        if repo.inputs.get("imageTagMutability") != "IMMUTABLE":
            out.append((repo.name, "tags are mutable; set imageTagMutability IMMUTABLE so a tag always means one image"))
        if not repo.inputs.get("imageScanningConfiguration", {}).get("scanOnPush"):
            out.append((repo.name, "images are not scanned; set imageScanningConfiguration.scanOnPush true"))
    return out


def _is_gpu(group: Resource) -> bool:
    return "NVIDIA" in str(group.inputs.get("amiType", "")) or "GPU" in str(group.inputs.get("amiType", ""))


@rule("FAB007", "GPU pools are tainted and within the stack's GPU quota")
def gpu_pools(data: PolicyInput) -> list[tuple[str, str]]:
    out = []
    total = 0
    for group in data.of_type("aws:eks/nodeGroup:NodeGroup"):
        if not _is_gpu(group):
            continue
        total += int(group.inputs.get("scalingConfig", {}).get("maxSize", 0))
        taints = group.inputs.get("taints") or []
        if not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE" for t in taints):
            out.append((group.name, "GPU nodes are not tainted; add taint nvidia.com/gpu NO_SCHEDULE so only GPU jobs land there"))
    quota = data.settings.policy.gpu_quota
    if data.settings.platform == "sagemaker":
        total = sum(p.max for p in data.settings.gpu_pools)
    if total > quota:
        out.append(("gpuPools", f"GPU pools may grow to {total} nodes, over policy.gpuQuota={quota}; lower their max"))
    return out


@rule("FAB008", "endpoints capture data and autoscale; prod keeps at least two instances")
def endpoints_observable(data: PolicyInput) -> list[tuple[str, str]]:
    out = []
    for name, endpoint in data.settings.endpoints.items():
        if endpoint.data_capture_rate <= 0:
            out.append((name, f"fabric:endpoints.{name}.dataCaptureRate=0: drift cannot be watched; capture a share of traffic"))
        if data.stack == "prod" and endpoint.min_instances < 2:
            out.append((name, f"fabric:endpoints.{name}.minInstances={endpoint.min_instances}: prod needs >= 2 for availability"))
    configs = data.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    for config in configs:
        if not config.inputs.get("dataCaptureConfig", {}).get("enableCapture"):
            out.append((config.name, "data capture is off; enable dataCaptureConfig"))
    if configs and not data.of_type("aws:appautoscaling/target:Target"):
        out.append(("endpoints", "no application autoscaling target for the SageMaker endpoints; add one"))
    deployments = data.of_type("kubernetes:apps/v1:Deployment")
    if deployments and not data.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"):
        out.append(("endpoints", "Deployments without a HorizontalPodAutoscaler; add one"))
    return out


@rule("FAB009", "no pickle artifacts")
def no_pickle(data: PolicyInput) -> list[tuple[str, str]]:
    return [
        (version.address, f"artifact {artifact} is a pickle-like format; export to ONNX")
        for version in data.pinned.values()
        if version is not None
        for artifact in version.artifacts
        if artifact.lower().endswith(FORBIDDEN_SUFFIXES)
    ]


@rule("FAB010", "required tags are present on taggable resources")
def required_tags(data: PolicyInput) -> list[tuple[str, str]]:
    required = data.settings.policy.required_tags
    out = []
    for r in data.resources:
        if r.type.startswith(TAGGABLE_PREFIXES) and "Policy" not in r.type:
            missing = [t for t in required if t not in (r.inputs.get("tags") or {})]
            if missing:
                out.append((r.name, f"lacks tags {missing}; add them to fabric:tags in {_file(data)}"))
    return out


@rule("FAB011", "serving stays on on-demand capacity")
def serving_on_demand(data: PolicyInput) -> list[tuple[str, str]]:
    if data.settings.policy.enforcement != "mandatory":
        return []  # spot serving is a fair trade in dev
    settings = data.settings
    gpu_serving = any(e.gpu for e in settings.endpoints.values())
    train_pool = settings.kubernetes.train_pool if settings.kubernetes and settings.kubernetes.train_pool else None
    if train_pool is None and settings.gpu_pools:
        train_pool = settings.gpu_pools[0].name
    out = []
    for group in data.of_type("aws:eks/nodeGroup:NodeGroup"):
        if group.inputs.get("capacityType") != "SPOT":
            continue
        if not _is_gpu(group):
            out.append((group.name, "a serving (CPU) pool runs on SPOT capacity; reclaimed nodes drop live traffic: use ON_DEMAND"))
        elif gpu_serving or group.inputs.get("nodeGroupName") != f"{train_pool}-gpu":
            why = "an endpoint sets gpu: true" if gpu_serving else f"it is not the training pool ({train_pool})"
            out.append((group.name, f"a GPU pool that may serve ({why}) runs on SPOT capacity; set its capacityType: ON_DEMAND"))
    return out


@rule("FAB012", "GPU training pools scale to zero when idle")
def training_scales_to_zero(data: PolicyInput) -> list[tuple[str, str]]:
    out = [
        (group.name, f"GPU pool keeps minSize={group.inputs['scalingConfig']['minSize']:g} nodes when idle; set min: 0")
        for group in data.of_type("aws:eks/nodeGroup:NodeGroup")
        if _is_gpu(group) and group.inputs.get("scalingConfig", {}).get("minSize", 0) > 0
    ]
    if data.settings.platform == "sagemaker":
        out += [(f"gpuPools.{p.name}", f"min={p.min}: keep no idle GPU capacity; set min: 0") for p in data.settings.gpu_pools if p.min > 0]
    return out


@rule("FAB013", "no GPU is requested for a model family that cannot use it")
def gpu_right_sizing(data: PolicyInput) -> list[tuple[str, str]]:
    from fabric.families import get_family

    out = []
    kube = data.settings.kubernetes
    for spec in data.specs:
        gpu_families = [f for f in spec.search.families if get_family(f).uses_gpu]
        wants_gpu = spec.train.accelerator == "gpu" or (data.settings.backend == "kubernetes" and kube is not None and kube.gpus > 0)
        if wants_gpu and not gpu_families:
            what = "train.accelerator: gpu" if spec.train.accelerator == "gpu" else f"fabric:kubernetes.gpus={kube.gpus}"  # type: ignore[union-attr]
            out.append((f"pipelines/{spec.name}", f"{what} asks for a GPU but {list(spec.search.families)} cannot use one; "
                                                 "train on CPU (accelerator: cpu, kubernetes.gpus: 0) or add the mlp family"))  # fmt: skip
    return out


def evaluate(data: PolicyInput, only: list[str] | None = None) -> list[Violation]:
    return [v for r in RULES if only is None or r.id in only for v in r.check(data)]

"""Pydantic models of the two inputs a user writes: a pipeline spec and a stack config.

`pipelines/<name>.yaml` describes one ML use case; `stacks/Pulumi.<env>.yaml` describes one
environment and is read by Pulumi (`pulumi.Config`) and by `fabric` through `StackSettings`, so a
latency budget or an instance type is written once. Every validation error is reported as
`<file>: <field>=<value> <rule>; <fix>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)
from pydantic.alias_generators import to_camel

from fabric.errors import SpecError

Family = Literal["lightgbm", "xgboost", "mlp"]
Task = Literal["binary", "regression"]
Precision = Literal["fp32", "int8", "int4"]

# metric -> (task it applies to, True when higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "roc_auc": ("binary", True),
    "pr_auc": ("binary", True),
    "log_loss": ("binary", False),
    "accuracy": ("binary", True),
    "rmse": ("regression", False),
    "mae": ("regression", False),
    "r2": ("regression", True),
}
LATENCY_OBJECTIVE = "p99_ms"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    validation: float = Field(0.15, gt=0, lt=0.5)
    test: float = Field(0.15, gt=0, lt=0.5)


class DataSpec(_Strict):
    """Where the rows come from and which columns mean what.

    `source` is `builtin:fraud` (the embedded generator), `sklearn:<name>` (a data set bundled with
    scikit-learn), or a path to a `.csv` or `.parquet` file, relative to the spec file.
    """

    source: str
    target: str
    time_column: str | None = None
    id_column: str | None = None
    features: list[str] | None = None
    categorical: list[str] | None = None
    rows: int | None = Field(None, gt=0, description="rows to generate, builtin sources only")
    seed: int = 0
    drift: float = Field(0.0, ge=0, description="builtin:fraud only: shift injected into the rows")
    split: SplitSpec = SplitSpec()


class SearchSpec(_Strict):
    budget_s: float | None = Field(None, gt=0)
    trials: int | None = Field(None, gt=0)
    families: list[Family] = Field(default_factory=lambda: ["lightgbm", "xgboost", "mlp"], min_length=1)
    objectives: list[str] | None = None
    pruning: bool = True
    seed: int = 0
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite under the stack's home")

    @model_validator(mode="after")
    def _some_budget(self) -> SearchSpec:
        if self.budget_s is None and self.trials is None:
            raise ValueError("needs budget_s (wall-clock seconds) or trials; set at least one")
        return self


class LatencyBudget(_Strict):
    p99_ms: float = Field(gt=0, description="model compute, single row, as served (ONNX Runtime)")


class QuantizeSpec(_Strict):
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32"], min_length=1)
    max_metric_drop: float = Field(0.005, ge=0)


class RolloutSpec(_Strict):
    strategy: Literal["all_at_once", "canary", "shadow", "blue_green"] = "all_at_once"
    steps: list[int] = Field(default_factory=lambda: [100])
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    step_requests: int = Field(200, gt=0, description="requests observed per canary step before it is judged")

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(steps) or steps[-1] != 100:
            raise ValueError("must be increasing percentages in (0, 100] ending at 100, e.g. [10, 50, 100]")
        return steps


class ServingSpec(_Strict):
    capture_rate: float = Field(1.0, ge=0, le=1, description="share of requests written to the capture log")
    max_body_bytes: int = Field(1_048_576, gt=0)


class DriftSpec(_Strict):
    window_rows: int = Field(1000, gt=0)
    threshold_sigma: float = Field(2.3, gt=0)
    min_effect: float = Field(0.1, ge=0)
    persistence: int = Field(2, ge=1)
    retrain: bool = True
    promote_margin: float = Field(0.002, ge=0)
    retrain_budget_s: float | None = Field(None, gt=0)


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """`90s`, `15m`, `24h`, `7d`, `2w` -> seconds."""
    match = _DURATION.match(str(text).strip())
    if not match or float(match[1]) <= 0:
        raise ValueError(f"duration {text!r} is not valid; write a positive number and a unit s, m, h, d or w, e.g. 24h or 7d")
    return float(match[1]) * _DURATION_UNITS[match[2]]


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError("must be lowercase letters, digits and '_', starting with a letter (a SQL table or column name)")
    return name


def _duration(text: str) -> str:
    duration_seconds(text)
    return text


Identifier = Annotated[str, AfterValidator(_identifier)]
Duration = Annotated[str, AfterValidator(_duration)]


class FeatureColumnSpec(_Strict):
    """One feature of a feature table: a numeric value per entity and time."""

    name: Identifier
    type: Literal["float", "int", "bool"] = "float"
    ttl: Duration | None = Field(None, description="overrides the table's ttl for this feature")
    default: float | None = Field(None, description="served and joined when there is no value (none, expired, unknown entity)")
    description: str = ""


class FeatureTableSpec(_Strict):
    """A feature table: values of `features` per entity, each stamped with the time it became known.

    `source` is `data` (the spec's own data source), `builtin:<name>`, `sklearn:<name>` or a .csv or
    .parquet file relative to the spec; `transformation` is `module:function` or `file.py:function`
    (a function DataFrame -> DataFrame with the entity column, `event_time` and the features).
    """

    name: Identifier
    version: int = Field(1, ge=1)
    source: str = "data"
    event_time: str = "event_time"
    transformation: str | None = None
    ttl: Duration | None = Field(None, description="a value older than this is not used (7d, 24h, ...); none: never expires")
    features: list[FeatureColumnSpec] = Field(min_length=1)
    description: str = ""

    @field_validator("transformation")
    @classmethod
    def _transformation(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError("must be `module:function` or `file.py:function`, e.g. features.py:card_activity")
        return value

    @model_validator(mode="after")
    def _unique_features(self) -> FeatureTableSpec:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique within a table; rename {duplicates}")
        return self


class SkewSpec(_Strict):
    sample: int = Field(1000, gt=0, description="served requests compared with the offline store per check")
    tolerance: float = Field(1e-6, ge=0, description="relative difference below which two values agree")
    max_mismatch_rate: float = Field(0.0, ge=0, le=1, description="alarm above this share of mismatched requests")


class FeaturesSpec(_Strict):
    """Feature tables joined point-in-time to the data's rows for training and looked up for serving.

    The tables are declared here (`tables:`) or in a Python module the spec names (`module:`, a .py
    file relative to the spec that defines `TABLES`, a list of `fabric.features.FeatureTable`).
    """

    entity: str = Field(description="the key column shared by the data's rows and every table, e.g. card_id")
    module: str | None = None
    tables: list[FeatureTableSpec] = Field(default_factory=list)
    on_unknown: Literal["reject", "default"] = Field(
        "reject", description="serving an entity no table knows: reject (404) or serve the features' defaults"
    )
    skew: SkewSpec = SkewSpec()

    @model_validator(mode="after")
    def _one_source_of_tables(self) -> FeaturesSpec:
        if (self.module is None) == (not self.tables):
            raise ValueError("needs exactly one of `tables:` (declared here) or `module:` (a .py file defining TABLES)")
        names = [t.name for t in self.tables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"table names must be unique; rename {duplicates}")
        columns = [f.name for t in self.tables for f in t.features]
        shared = sorted({n for n in columns if columns.count(n) > 1})
        if shared:
            raise ValueError(f"feature names must be unique across tables (they become model inputs); rename {shared}")
        return self


class TrainSpec(_Strict):
    checkpoint_every: int = Field(50, gt=0, description="boosting rounds between checkpoints (an MLP saves every epoch)")
    accelerator: Literal["cpu", "gpu"] = Field("cpu", description="what training asks for; tabular families never need a GPU")


class PipelineSpec(_Strict):
    name: str
    data: DataSpec
    task: Task
    metric: str
    search: SearchSpec
    latency_budget: LatencyBudget
    train: TrainSpec = TrainSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    rollout: RolloutSpec = RolloutSpec()
    serving: ServingSpec = ServingSpec()
    drift: DriftSpec = DriftSpec()
    features: FeaturesSpec | None = None
    # resolved file path -> as the spec file wrote it (see resolve_source and spec_hash)
    _written_paths: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("must be lowercase letters, digits and '-', starting with a letter")
        return name

    @model_validator(mode="after")
    def _metric_fits_task(self) -> PipelineSpec:
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r} is unknown; use one of {sorted(METRICS)}")
        task, _ = METRICS[self.metric]
        if task != self.task:
            fitting = sorted(m for m, (t, _) in METRICS.items() if t == self.task)
            raise ValueError(f"metric={self.metric!r} is for {task} tasks, not {self.task}; use one of {fitting}")
        for objective in self.objectives:
            if objective not in (self.metric, LATENCY_OBJECTIVE):
                raise ValueError(
                    f"search.objectives has {objective!r}; objectives are the metric ({self.metric}) and {LATENCY_OBJECTIVE}"
                )
        return self

    @model_validator(mode="after")
    def _features_need_time(self) -> PipelineSpec:
        if self.features is not None and self.data.time_column is None:
            raise ValueError("features: joins feature tables as of each row's time; set data.time_column")
        return self

    @property
    def objectives(self) -> list[str]:
        return list(self.search.objectives or [self.metric])

    @property
    def multi_objective(self) -> bool:
        return LATENCY_OBJECTIVE in self.objectives

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][1]

    def spec_hash(self) -> str:
        """A hash of the spec as written: file paths that loading made absolute count as the spec file
        wrote them, so the same spec in another checkout, or in a pod, has the same hash (and so the
        same study name and lineage). What the files hold is the dataset fingerprint's business."""
        written = _as_written(self.model_dump(mode="json"), self._written_paths)
        canonical = json.dumps(written, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _as_written(value: Any, written_paths: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _as_written(v, written_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_written(v, written_paths) for v in value]
    return written_paths.get(value, value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------
# Stack settings: the `config:` mapping of stacks/Pulumi.<env>.yaml


class _Camel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class NodePool(_Camel):
    name: str
    instance_types: list[str] = Field(min_length=1)
    min: int = Field(ge=0)
    max: int = Field(ge=0)
    desired: int | None = Field(None, ge=0)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field(
        "ON_DEMAND", description="default: SPOT for the GPU training pool, ON_DEMAND otherwise (StackSettings decides)"
    )
    disk_gb: int = Field(100, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> NodePool:
        if self.max < self.min:
            raise ValueError(f"max={self.max} must be >= min ({self.min}); raise max or lower min")
        if self.desired is not None and not self.min <= self.desired <= self.max:
            raise ValueError(f"desired={self.desired} must lie in [min, max] = [{self.min}, {self.max}]")
        return self

    @property
    def desired_size(self) -> int:
        return self.min if self.desired is None else self.desired


class EndpointSettings(_Camel):
    instance_type: str
    min_instances: int = Field(ge=1)
    max_instances: int = Field(ge=1)
    latency_budget_ms: float = Field(gt=0)
    model: str | None = Field(None, description="pinned model version, `name:version`; written by `fabric promote`")
    data_capture_rate: float = Field(1.0, ge=0, le=1)
    gpu: bool = False

    def capture_rate(self, spec_rate: float) -> float:
        """`dataCaptureRate` when the stack file sets it (the environment decides what it can store),
        else the spec's `serving.capture_rate`: this model's default must not win over the spec."""
        return self.data_capture_rate if "data_capture_rate" in self.model_fields_set else spec_rate

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSettings:
        if self.max_instances < self.min_instances:
            raise ValueError(
                f"maxInstances={self.max_instances} must be >= minInstances ({self.min_instances}); raise maxInstances"
            )
        if self.model is not None and not re.match(r"^[a-z][a-z0-9-]*:[0-9]+$", self.model):
            raise ValueError(f"model={self.model!r} must be `name:version`, e.g. fraud:7")
        return self


class PolicySettings(_Camel):
    enforcement: Literal["advisory", "mandatory"] = "advisory"
    max_latency_budget_ms: float = Field(100.0, gt=0)
    gpu_quota: int = Field(8, ge=0)
    required_tags: list[str] = Field(default_factory=lambda: ["owner", "cost-center"])


class ApprovalSettings(_Camel):
    required: int = Field(0, ge=0)
    approvers: list[str] = Field(default_factory=list)


class NetworkSettings(_Camel):
    """The VPC the platform team already runs: the cluster, node pools and database go in its subnets."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-z]+$")
    subnet_ids: list[str] = Field(min_length=2, description="private subnets in at least two zones")


FeatureType = Literal["Integral", "Fractional", "String"]


class FeatureTableSettings(_Camel):
    record_id: str
    event_time: str
    features: dict[str, FeatureType] = Field(min_length=1)
    online: bool = True

    @model_validator(mode="after")
    def _keys_declared(self) -> FeatureTableSettings:
        for key in (self.record_id, self.event_time):
            if key not in self.features:
                raise ValueError(f"{key!r} must be one of the features {sorted(self.features)}; declare its type")
        return self


# Names the kubernetes backend's manifests refer to and the Pulumi program declares (infra/stores.py):
# written once here, as the defaults of KubernetesSettings, so both sides follow a stack's override.
STUDY_SECRET = "fabric-study"  # key `url`: postgresql://... of the Optuna studies
FEATURES_SECRET = "fabric-features"  # key `url`: the online feature store the model servers read
REGISTRY_CLAIM = "fabric-registry"  # ReadWriteMany PVC mounted as FABRIC_HOME by Jobs and Deployments
SECRET_URL_KEY = "url"


class KubernetesSettings(_Camel):
    """`fabric:kubernetes`: where and how the `kubernetes` backend runs its Jobs and Deployments.

    The cluster, its node pools, the registry volume and the study Secret are provisioned by the
    stack (Pulumi) or the platform team; these settings only name them."""

    image: str = Field(description="the fabric image every Job, CronJob and Deployment runs")
    namespace: str = "fabric"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account: str = Field("fabric", description="runs the Jobs; the backend renders its Role")
    study_secret: str = Field(STUDY_SECRET, description="Secret whose key `url` is the PostgreSQL URL of the studies")
    features_secret: str = Field(
        FEATURES_SECRET, description="Secret whose key `url` is the online feature store URL; read by servers of specs with features"
    )
    registry_claim: str = Field(REGISTRY_CLAIM, description="ReadWriteMany PVC mounted as FABRIC_HOME")
    registry_storage_class: str = Field("efs-sc", description="StorageClass of the registry PVC (ReadWriteMany: EFS on EKS)")
    registry_size: str = Field("100Gi", description="capacity requested by the registry PVC")
    registry_bucket: str | None = Field(None, description="s3://bucket[/prefix]: trained artifacts are copied there")
    search_workers: int = Field(4, ge=1, le=256, description="Optuna workers of the search Indexed Job")
    worker_cpu: str = "1"
    worker_memory: str = "2Gi"
    train_pool: str | None = Field(None, description="the gpuPools entry that trains; default: the first")
    gpus: int = Field(1, ge=0, description="nvidia.com/gpu per training pod; 0 trains on the CPU pool")
    train_cpu: str = "2"
    train_memory: str = "8Gi"
    serving_cpu: str = "500m"
    serving_memory: str = "1Gi"
    serving_port: int = Field(8080, ge=1, le=65535)
    gateway: str | None = Field(None, description="`[namespace/]name` of the Gateway that canary and shadow routes attach to")
    monitor_schedule: str = Field("*/15 * * * *", description="cron schedule of `fabric monitor`")
    start_grace_s: int = Field(600, ge=0, description="pod scheduling, image pull and imports, added to Job deadlines")
    context: str | None = Field(None, description="kubeconfig context; default: in-cluster or the current context")

    @field_validator("namespace", "service_account", "study_secret", "features_secret", "registry_claim")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", value):
            raise ValueError("must be a DNS label: lowercase letters, digits and '-', at most 63 characters")
        return value

    @field_validator("registry_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", value):
            raise ValueError("must be s3://<bucket>[/<prefix>], e.g. s3://fabric-onprem-artifacts")
        return value


class PriceSettings(_Camel):
    on_demand: float = Field(ge=0, description="USD per instance-hour")
    spot: float | None = Field(None, ge=0)


SAGEMAKER_CPU_TRAINING = "ml.m5.xlarge"  # what a CPU training job runs on


class StackSettings(_Camel):
    """One environment. Keys are the `fabric:` config keys without the prefix (camelCase in YAML)."""

    env: str
    region: str = "us-east-1"
    backend: Literal["local", "sagemaker", "kubernetes"] = "local"
    platform: Literal["sagemaker", "kubernetes"] = Field(
        "kubernetes", description="what `pulumi up` provisions for serving and training"
    )
    gpu_pools: list[NodePool] = Field(default_factory=list)
    cpu_pools: list[NodePool] = Field(default_factory=list)
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)
    policy: PolicySettings = PolicySettings()
    approvals: ApprovalSettings = ApprovalSettings()
    tags: dict[str, str] = Field(default_factory=dict)
    promote_from: str | None = Field(None, description="the stack whose registry this one promotes from")
    kubernetes_version: str = "1.31"
    network: NetworkSettings | None = None
    feature_tables: dict[str, FeatureTableSettings] = Field(default_factory=dict)
    image_tag: str = Field("0.1.0", description="tag of the serving image in the stack's ECR repository")
    drift_alarm_sigma: float = Field(2.3, gt=0)
    prices: dict[str, PriceSettings] = Field(default_factory=dict, description="overrides of fabric/prices.yaml")
    kubernetes: KubernetesSettings | None = Field(None, description="settings of the kubernetes backend")
    spot_training: bool = Field(
        True, description="SageMaker training jobs use managed spot capacity with S3 checkpoints (off: on-demand)"
    )

    def training_capacity(self, accelerator: str) -> tuple[str, str]:
        """(instance type, capacity type) a training run of the stack uses: on SageMaker a GPU pool's
        instance or SAGEMAKER_CPU_TRAINING, on managed spot while spotTraining is on; elsewhere the
        first pool of the kind the spec asks for, with that pool's capacity type."""
        if self.platform == "sagemaker":
            pool = self.gpu_pools[0] if accelerator == "gpu" and self.gpu_pools else None
            instance = pool.instance_types[0] if pool else SAGEMAKER_CPU_TRAINING
            spot = self.spot_training and (pool is None or pool.capacity_type == "SPOT")
            return (instance if instance.startswith("ml.") else f"ml.{instance}"), ("SPOT" if spot else "ON_DEMAND")
        pools = self.gpu_pools if accelerator == "gpu" else (self.cpu_pools or self.gpu_pools)
        return (pools[0].instance_types[0], pools[0].capacity_type) if pools else ("local", "ON_DEMAND")

    @model_validator(mode="before")
    @classmethod
    def _spot_for_training(cls, values: Any) -> Any:
        """A GPU pool that trains runs on SPOT unless its entry says otherwise: training resumes from
        its checkpoints when a node is reclaimed. A GPU pool that may serve (another GPU pool than the
        training one, or any GPU pool once an endpoint asks for `gpu: true`) stays ON_DEMAND, as do
        CPU pools: a reclaimed serving node drops live traffic."""
        if not isinstance(values, dict) or not isinstance(values.get("gpuPools", values.get("gpu_pools")), list):
            return values
        key = "gpuPools" if "gpuPools" in values else "gpu_pools"
        endpoints = values.get("endpoints") or {}
        gpu_serving = isinstance(endpoints, dict) and any(isinstance(e, dict) and e.get("gpu") is True for e in endpoints.values())
        kube = values.get("kubernetes") if isinstance(values.get("kubernetes"), dict) else {}
        train = kube.get("trainPool", kube.get("train_pool"))
        pools = []
        for i, pool in enumerate(values[key]):
            if isinstance(pool, dict) and "capacityType" not in pool and "capacity_type" not in pool:
                trains = pool.get("name") == train if train is not None else i == 0
                pool = {**pool, "capacityType": "SPOT" if trains and not gpu_serving else "ON_DEMAND"}
            pools.append(pool)
        return {**values, key: pools}

    @model_validator(mode="after")
    def _coherent(self) -> StackSettings:
        if self.backend != "local" and self.backend != self.platform:
            raise ValueError(
                f"backend={self.backend} runs on what the stack provisions (platform={self.platform}); "
                f"set fabric:platform: {self.backend} or fabric:backend: local"
            )
        if self.platform == "kubernetes" and self.network is None:
            raise ValueError("platform=kubernetes needs fabric:network {vpcId, subnetIds} for the cluster; add it")
        if self.backend == "kubernetes" and self.kubernetes is None:
            raise ValueError(
                "backend=kubernetes needs fabric:kubernetes (at least {image: <the fabric image>}); add it"
            )
        if self.backend == "kubernetes" and self.kubernetes and self.kubernetes.gpus > 0 and not self.gpu_pools:
            raise ValueError(
                f"kubernetes.gpus={self.kubernetes.gpus} needs a GPU pool to train on; add fabric:gpuPools "
                "or set kubernetes.gpus: 0 to train on the CPU pools"
            )
        pool = self.kubernetes.train_pool if self.kubernetes else None
        if pool is not None and pool not in [p.name for p in self.gpu_pools]:
            raise ValueError(
                f"kubernetes.trainPool={pool!r} is not a gpuPools name; use one of {[p.name for p in self.gpu_pools]}"
            )
        names = [p.name for p in [*self.gpu_pools, *self.cpu_pools]]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"node pool names must be unique; rename {duplicates}")
        return self

    @classmethod
    def from_config(cls, env: str, config: dict[str, Any], source: str) -> StackSettings:
        """Build from a Pulumi `config:` mapping (`fabric:<key>` and `aws:region`)."""
        values: dict[str, Any] = {"env": env}
        known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        for key, value in (config or {}).items():
            namespace, _, name = str(key).partition(":")
            if namespace == "aws" and name == "region":
                values["region"] = value
            elif namespace == "fabric":
                if name not in known or name in ("env", "region"):
                    allowed = sorted(f.alias or n for n, f in cls.model_fields.items() if n not in ("env", "region"))
                    raise SpecError(f"{source}: fabric:{name} is not a known key; use one of {allowed}")
                values[name] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SpecError(format_validation_error(source, exc, prefix="fabric:")) from None


# ---------------------------------------------------------------------------------------------
# Loading


def format_validation_error(source: str, exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: `<file>: <field>=<value> <rule>`."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        message = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if err["type"] == "missing":
            lines.append(f"{source}: {prefix}{loc} is required; add it")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{source}: {prefix}{loc} is not a known field; check its spelling")
        elif isinstance(value, dict | list) or not loc:
            lines.append(f"{source}: {prefix}{loc or '(top level)'}: {message}")
        else:
            lines.append(f"{source}: {prefix}{loc}={value!r} {message}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SpecError(f"{path}: no such file; check the path")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc}); fix the syntax") from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: must be a mapping with name, data, task, metric, search, latency_budget")
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(str(path), exc)) from None
    return resolve_source(spec, path.parent)


def _is_file_path(source: str) -> bool:
    return ":" not in source.split("/")[0] and source != "data"


def _absolute(path: str, base: Path) -> str:
    return path if Path(path).is_absolute() else str((base / path).resolve())


def resolve_source(spec: PipelineSpec, base: Path) -> PipelineSpec:
    """Make file paths (the data source, a features module, table sources and transformation files)
    absolute, relative to the spec file's folder; the spec remembers how they were written."""
    written: dict[str, str] = {}

    def absolute(path: str) -> str:
        resolved = _absolute(path, base)
        written[resolved] = path
        return resolved

    if _is_file_path(spec.data.source):
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": absolute(spec.data.source)})})
    if spec.features is not None:
        features = spec.features
        tables = []
        for table in features.tables:
            update: dict[str, Any] = {}
            if _is_file_path(table.source):
                update["source"] = absolute(table.source)
            module, _, function = (table.transformation or "").rpartition(":")
            if module.endswith(".py"):
                update["transformation"] = absolute(module) + f":{function}"
                written[update["transformation"]] = table.transformation
            tables.append(table.model_copy(update=update))
        module = absolute(features.module) if features.module else None
        spec = spec.model_copy(update={"features": features.model_copy(update={"tables": tables, "module": module})})
    spec._written_paths = {**spec._written_paths, **written}
    return spec


def project_root(start: Path | None = None) -> Path:
    """The folder holding Pulumi.yaml: $FABRIC_PROJECT_ROOT, else the nearest parent of the cwd."""
    env = os.environ.get("FABRIC_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return here


def stack_file(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "stacks" / f"Pulumi.{env}.yaml"


def available_stacks(root: Path | None = None) -> list[str]:
    folder = (root or project_root()) / "stacks"
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def existing_stack_file(env: str, root: Path | None = None, option: str = "--stack") -> Path:
    """stacks/Pulumi.<env>.yaml, or the one-line error naming the file and the stacks there are
    (`option`: the command-line option that named the stack, for the message)."""
    path = stack_file(env, root)
    if not path.is_file():
        stacks = available_stacks(root)
        raise SpecError(f"{option} {env}: no {path}; use one of {stacks or 'the stacks in stacks/'}")
    return path


def load_stack(env: str, root: Path | None = None) -> StackSettings:
    path = existing_stack_file(env, root)
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: must be a mapping with a `config:` key")
    return StackSettings.from_config(env, raw.get("config") or {}, str(path))

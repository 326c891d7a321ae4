"""An inference endpoint serving the stack's pinned model version, on SageMaker or on the cluster.

Both run the same server image (`python -m fabric.serving serve`, SageMaker's container contract)
and both watch it: a CloudWatch alarm on p99 latency against the endpoint's budget and one on the
drift score the monitor publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from fabric.backends.sagemaker import names
from fabric.spec import EndpointSettings

VARIANT = names.VARIANT
INVOCATIONS_PER_INSTANCE = 1000.0  # per minute: the scaling target


@dataclass(frozen=True)
class EndpointArgs:
    stack: str
    use_case: str
    settings: EndpointSettings
    model: str  # pinned `name:version`
    image: pulumi.Input[str]
    bucket: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    role_arn: pulumi.Input[str]
    drift_alarm_sigma: float
    tags: dict[str, str]


def model_artifact_url(bucket: pulumi.Input[str], model: str) -> pulumi.Output[str]:
    name, version = model.split(":")
    return pulumi.Output.concat("s3://", bucket, f"/{names.model_prefix(name, int(version))}/model.tar.gz")


class SageMakerEndpoint(pulumi.ComponentResource):
    def __init__(self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:SageMakerEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s, version = args.settings, args.model.split(":")[1]
        endpoint_name = names.endpoint(args.stack, args.use_case)
        self.model = aws.sagemaker.Model(
            f"{name}-model",
            name=names.versioned(args.stack, args.use_case, int(version)),
            execution_role_arn=args.role_arn,
            primary_container={"image": args.image, "model_data_url": model_artifact_url(args.bucket, args.model),
                               "environment": {"FABRIC_MODEL": args.model}},
            tags=args.tags,
            opts=child,
        )  # fmt: skip
        # a new model version means a new config; the endpoint switches to it without downtime
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            name=names.versioned(args.stack, args.use_case, int(version)),
            production_variants=[{"variant_name": VARIANT, "model_name": self.model.name,
                                  "initial_instance_count": s.min_instances, "instance_type": s.instance_type}],
            data_capture_config={
                "enable_capture": s.data_capture_rate > 0,
                "initial_sampling_percentage": round(s.data_capture_rate * 100),
                "destination_s3_uri": pulumi.Output.concat("s3://", args.bucket, f"/{names.capture_prefix(args.use_case)}"),
                "kms_key_id": args.key_arn,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
            },
            kms_key_arn=args.key_arn,
            tags=args.tags,
            opts=child,
        )  # fmt: skip
        self.endpoint = aws.sagemaker.Endpoint(f"{name}-endpoint", name=endpoint_name, endpoint_config_name=self.config.name,
                                               tags=args.tags, opts=child)  # fmt: skip
        resource_id = pulumi.Output.concat("endpoint/", self.endpoint.name, f"/variant/{VARIANT}")
        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="sagemaker", resource_id=resource_id,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=s.min_instances, max_capacity=s.max_instances, opts=child,
        )  # fmt: skip
        aws.appautoscaling.Policy(
            f"{name}-scaling-policy", policy_type="TargetTrackingScaling", resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension, service_namespace=target.service_namespace,
            target_tracking_scaling_policy_configuration={
                "target_value": INVOCATIONS_PER_INSTANCE,
                "predefined_metric_specification": {"predefined_metric_type": "SageMakerVariantInvocationsPerInstance"},
                "scale_in_cooldown": 300, "scale_out_cooldown": 60,
            },
            opts=child,
        )  # fmt: skip
        metric_alarm(f"{name}-p99-latency", names.latency_alarm_request(args.stack, args.use_case, s.latency_budget_ms),
                     args.tags, self)  # fmt: skip
        metric_alarm(f"{name}-drift", names.drift_alarm_request(args.stack, args.use_case, args.drift_alarm_sigma), args.tags, self)
        self.register_outputs({"endpoint": self.endpoint.name})


def metric_alarm(resource_name: str, request: dict[str, Any], tags: dict[str, str], parent: pulumi.Resource) -> aws.cloudwatch.MetricAlarm:
    """A CloudWatch alarm from the PutMetricAlarm parameters the backend upserts with the same name
    (fabric.backends.sagemaker.names), so `deploy` can name it in AutoRollbackConfiguration."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=request["AlarmName"],  # deterministic, never Pulumi's random suffix
        alarm_description=request["AlarmDescription"],
        namespace=request["Namespace"], metric_name=request["MetricName"],
        statistic=request.get("Statistic"), extended_statistic=request.get("ExtendedStatistic"),
        dimensions={d["Name"]: d["Value"] for d in request["Dimensions"]},
        threshold=request["Threshold"], comparison_operator=request["ComparisonOperator"], period=request["Period"],
        evaluation_periods=request["EvaluationPeriods"], datapoints_to_alarm=request["DatapointsToAlarm"],
        treat_missing_data=request["TreatMissingData"], tags=tags, opts=pulumi.ResourceOptions(parent=parent),
    )  # fmt: skip


@dataclass(frozen=True)
class KubernetesEndpointArgs:
    stack: str
    use_case: str
    settings: EndpointSettings
    model: str
    image: pulumi.Input[str]
    bucket: pulumi.Input[str]
    provider: pulumi.ProviderResource
    drift_alarm_sigma: float
    tags: dict[str, str]
    namespace: str = "fabric"  # fabric:kubernetes.namespace, where the stack's Secrets and claim live


class KubernetesEndpoint(pulumi.ComponentResource):
    def __init__(self, name: str, args: KubernetesEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        import pulumi_kubernetes as k8s

        super().__init__("fabric:infra:KubernetesEndpoint", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        app = f"{args.use_case}-serving"
        labels = {"app.kubernetes.io/name": app, "fabric.io/model": args.model.replace(":", "-v")}
        metadata = {"name": app, "namespace": args.namespace, "labels": labels}
        probe = {"http_get": {"path": "/ping", "port": 8080}, "period_seconds": 5}
        tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] if s.gpu else []
        resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
        if s.gpu:
            resources["limits"]["nvidia.com/gpu"] = "1"
            resources["requests"]["nvidia.com/gpu"] = "1"
        model_dir = "/opt/ml/model"
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec={
                "replicas": s.min_instances,
                "selector": {"match_labels": {"app.kubernetes.io/name": app}},
                # zero downtime: a new pod must pass /ping before an old one goes
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "tolerations": tolerations,
                        "node_selector": {"fabric.io/accelerator": "nvidia" if s.gpu else "none"},
                        "init_containers": [{
                            "name": "fetch-model", "image": "amazon/aws-cli:2.17.0",
                            "args": ["s3", "cp", "--recursive",
                                     pulumi.Output.concat("s3://", args.bucket, "/", names.model_prefix(args.model.split(":")[0], int(args.model.split(":")[1])), "/"),
                                     model_dir],
                            "volume_mounts": [{"name": "model", "mount_path": model_dir}],
                        }],
                        "containers": [{
                            "name": "server", "image": args.image,
                            "args": ["serve", "--model-dir", model_dir, "--version", args.model, "--host", "0.0.0.0",
                                     "--port", "8080", "--capture-rate", str(s.data_capture_rate)],
                            "ports": [{"container_port": 8080, "name": "http"}],
                            "readiness_probe": probe, "liveness_probe": {**probe, "initial_delay_seconds": 10},
                            "resources": resources,
                            "volume_mounts": [{"name": "model", "mount_path": model_dir}],
                        }],
                        "volumes": [{"name": "model", "empty_dir": {}}],
                    },
                },
            },
            opts=child,
        )  # fmt: skip
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=metadata,
            spec={"selector": {"app.kubernetes.io/name": app}, "ports": [{"port": 80, "target_port": 8080, "name": "http"}]},
            opts=child,
        )  # fmt: skip
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa", metadata=metadata,
            spec={"scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": app},
                  "min_replicas": s.min_instances, "max_replicas": s.max_instances,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                                "target": {"type": "Utilization", "average_utilization": 60}}}]},
            opts=child,
        )  # fmt: skip
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata,
            spec={"min_available": max(1, s.min_instances - 1), "selector": {"match_labels": {"app.kubernetes.io/name": app}}},
            opts=child,
        )  # fmt: skip
        metric_alarm(f"{name}-drift", names.drift_alarm_request(args.stack, args.use_case, args.drift_alarm_sigma), args.tags, self)
        self.register_outputs({"service": self.service.metadata["name"]})

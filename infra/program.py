"""The whole stack, composed from one validated `StackSettings`: the same model `fabric` reads, so
bad config stops here with the key's name before any resource is declared."""

from __future__ import annotations

from typing import Any

import pulumi

from fabric.spec import KubernetesSettings, StackSettings
from infra.cluster import ClusterArgs, EksCluster, EksNodePool, NodePoolArgs
from infra.endpoint import EndpointArgs, KubernetesEndpoint, KubernetesEndpointArgs, SageMakerEndpoint
from infra.feature_table import FeatureTable, FeatureTableArgs
from infra.iam import LifecycleRoles, RolesArgs
from infra.registry import ModelRegistry, ModelRegistryArgs
from infra.stores import KubernetesStores, KubernetesStoresArgs, LifecycleStores, StoresArgs


def build(settings: StackSettings) -> dict[str, Any]:
    stack = settings.env
    tags = {**settings.tags, "fabric:stack": stack}
    sagemaker = settings.platform == "sagemaker"
    outputs: dict[str, Any] = {"stack": stack, "platform": settings.platform, "region": settings.region}

    registry = ModelRegistry("registry", ModelRegistryArgs(stack, tags, sorted(settings.endpoints), sagemaker))
    outputs["artifact_bucket"] = registry.bucket.bucket
    outputs["image_repository"] = registry.repository.repository_url
    outputs["model_package_groups"] = {k: g.model_package_group_name for k, g in registry.model_package_groups.items()}
    roles = LifecycleRoles(
        "roles",
        RolesArgs(stack, tags, registry.bucket.arn, registry.key.arn, registry.repository.arn,
                  "sagemaker.amazonaws.com" if sagemaker else "pods.eks.amazonaws.com"),
    )  # fmt: skip
    outputs["roles"] = {k: r.arn for k, r in roles.roles.items()}
    image = pulumi.Output.concat(registry.repository.repository_url, ":", settings.image_tag)

    provider = None
    if not sagemaker:
        assert settings.network is not None  # StackSettings requires it for the kubernetes platform
        subnets = list(settings.network.subnet_ids)
        cluster = EksCluster("cluster", ClusterArgs(stack, settings.kubernetes_version, subnets, tags))
        for pool in settings.gpu_pools:
            EksNodePool(f"gpu-{pool.name}", NodePoolArgs(cluster, pool, True, subnets, tags))
        for pool in settings.cpu_pools:
            EksNodePool(f"cpu-{pool.name}", NodePoolArgs(cluster, pool, False, subnets, tags))
        stores = LifecycleStores("stores", StoresArgs(stack, subnets, registry.key.arn, tags, production=stack == "prod"))
        outputs["cluster"] = cluster.cluster.name
        outputs["postgres"] = stores.database.address
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("cluster-provider", kubeconfig=_kubeconfig(cluster))
        # the names the backend's manifests use: the stack's fabric:kubernetes, else its defaults
        kube = settings.kubernetes or KubernetesSettings.model_construct()
        namespace = k8s.core.v1.Namespace("fabric-namespace", metadata={"name": kube.namespace},
                                          opts=pulumi.ResourceOptions(provider=provider))  # fmt: skip
        platform = KubernetesStores("platform-stores", KubernetesStoresArgs(
            kube, stores.database, provider, namespace, {"app.kubernetes.io/managed-by": "pulumi", "fabric.io/stack": stack},
            production=stack == "prod"))  # fmt: skip
        outputs["kubernetes"] = {"namespace": kube.namespace, "study_secret": platform.study_secret.metadata["name"],
                                 "registry_claim": platform.registry_claim.metadata["name"]}  # fmt: skip

    for name, table in settings.feature_tables.items():
        if sagemaker:
            FeatureTable(name, FeatureTableArgs(stack, table, registry.bucket.bucket, registry.key.arn,
                                                roles.roles["training"].arn, tags))  # fmt: skip
    outputs["feature_tables"] = sorted(settings.feature_tables)

    endpoints: dict[str, Any] = {}
    for use_case, endpoint in settings.endpoints.items():
        if endpoint.model is None:
            pulumi.log.warn(f"fabric:endpoints.{use_case} pins no model; no endpoint is declared until `fabric promote` pins one")
            continue
        if sagemaker:
            args = EndpointArgs(stack, use_case, endpoint, endpoint.model, image, registry.bucket.bucket, registry.key.arn,
                                roles.roles["serving"].arn, settings.drift_alarm_sigma, tags)  # fmt: skip
            endpoints[use_case] = SageMakerEndpoint(use_case, args).endpoint.name
        else:
            assert provider is not None
            k8s_args = KubernetesEndpointArgs(stack, use_case, endpoint, endpoint.model, image, registry.bucket.bucket,
                                              provider, settings.drift_alarm_sigma, tags,
                                              (settings.kubernetes or KubernetesSettings.model_construct()).namespace)  # fmt: skip
            endpoints[use_case] = KubernetesEndpoint(use_case, k8s_args).service.metadata["name"]
    outputs["endpoints"] = endpoints
    outputs["pinned_models"] = {k: e.model for k, e in settings.endpoints.items()}

    if settings.promote_from:
        # promotion reads the source stack's registry (bucket, repository) from its outputs
        source = pulumi.StackReference(f"{pulumi.get_organization()}/fabric/{settings.promote_from}")
        outputs["promote_from_bucket"] = source.get_output("artifact_bucket")
    return outputs


def _kubeconfig(cluster: EksCluster) -> pulumi.Output[str]:
    c = cluster.cluster
    return pulumi.Output.json_dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fabric",
        "clusters": [{"name": "fabric", "cluster": {"server": c.endpoint,
                                                    "certificate-authority-data": c.certificate_authority.data}}],
        "contexts": [{"name": "fabric", "context": {"cluster": "fabric", "user": "fabric"}}],
        "users": [{"name": "fabric", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                       "command": "aws", "args": ["eks", "get-token", "--cluster-name", c.name]}}}],
    })  # fmt: skip



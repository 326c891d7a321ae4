"""What the kubernetes backend needs besides the cluster: PostgreSQL for Optuna studies (shared by
search workers), online feature tables and the registry's metadata (encrypted, private, password
managed by RDS in Secrets Manager, none in config), and, inside the cluster, the Secrets and the
registry volume that the backend's manifests name (`KubernetesStores`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from fabric.spec import SECRET_URL_KEY, KubernetesSettings


@dataclass(frozen=True)
class StoresArgs:
    stack: str
    subnet_ids: list[str]
    key_arn: pulumi.Input[str]
    tags: dict[str, str]
    production: bool


class LifecycleStores(pulumi.ComponentResource):
    def __init__(self, name: str, args: StoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:LifecycleStores", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=args.tags, opts=child)
        self.database = aws.rds.Instance(
            f"{name}-postgres",
            identifier=f"fabric-{args.stack}",
            engine="postgres",
            engine_version="16",
            instance_class="db.t4g.medium",
            allocated_storage=20,
            db_name="fabric",
            username="fabric",
            manage_master_user_password=True,
            db_subnet_group_name=subnets.name,
            storage_encrypted=True,
            kms_key_id=args.key_arn,
            publicly_accessible=False,
            multi_az=args.production,
            backup_retention_period=7,
            deletion_protection=args.production,
            skip_final_snapshot=not args.production,
            final_snapshot_identifier=f"fabric-{args.stack}-final" if args.production else None,
            tags=args.tags,
            opts=child,
        )
        self.register_outputs({"address": self.database.address})


@dataclass(frozen=True)
class KubernetesStoresArgs:
    """What the kubernetes backend's manifests mount and read, under the names they use
    (fabric:kubernetes settings, whose defaults are the constants in fabric.spec)."""

    kube: KubernetesSettings
    database: aws.rds.Instance
    provider: pulumi.ProviderResource
    namespace: pulumi.Resource
    labels: dict[str, str]
    production: bool


class KubernetesStores(pulumi.ComponentResource):
    """The study Secret, the online-features Secret and the registry PVC in the fabric namespace.

    The Secrets' URLs carry the RDS master password, read from the Secrets Manager secret RDS manages:
    it is kept in Pulumi state only as a Pulumi secret (encrypted). RDS rotates that password (every
    7 days by default); the Secrets follow on the next `pulumi up`, so run it on a schedule shorter
    than the rotation, or sync them with an operator (External Secrets) instead."""

    def __init__(self, name: str, args: KubernetesStoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        import pulumi_kubernetes as k8s

        super().__init__("fabric:infra:KubernetesStores", name, None, opts)
        kube = args.kube
        child = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.namespace])
        master = aws.secretsmanager.get_secret_version_output(
            secret_id=args.database.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn),
            opts=pulumi.InvokeOutputOptions(parent=self),
        )

        def url(suffix: str) -> pulumi.Output[str]:
            return pulumi.Output.secret(pulumi.Output.all(master.secret_string, args.database.address).apply(
                lambda values: _postgres_url(values[0], values[1], suffix)
            ))  # fmt: skip

        def secret(resource: str, secret_name: str, value: pulumi.Output[str]) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                resource,
                metadata={"name": secret_name, "namespace": kube.namespace, "labels": args.labels},
                type="Opaque",
                string_data={SECRET_URL_KEY: value},
                opts=child,
            )

        self.study_secret = secret(f"{name}-study", kube.study_secret, url(""))
        # the online feature tables live in their own schema of the same database (docs/features.md)
        self.features_secret = secret(f"{name}-features", kube.features_secret, url("?options=-csearch_path%3Dfeatures"))
        self.registry_claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-registry",
            metadata={"name": kube.registry_claim, "namespace": kube.namespace, "labels": args.labels},
            spec={
                # every Job and Deployment mounts it at once, on any node: ReadWriteMany
                "access_modes": ["ReadWriteMany"],
                "storage_class_name": kube.registry_storage_class,
                "resources": {"requests": {"storage": kube.registry_size}},
            },
            # a deleted claim takes the registry with it: prod protects it like its database
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.production)),
        )
        self.register_outputs({"study_secret": kube.study_secret, "registry_claim": kube.registry_claim})


def _postgres_url(secret_string: str, host: str, suffix: str) -> str:
    master = json.loads(secret_string)
    user, password = quote(master["username"], safe=""), quote(master["password"], safe="")
    return f"postgresql://{user}:{password}@{host}:5432/fabric{suffix}"

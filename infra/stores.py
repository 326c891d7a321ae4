"""What the kubernetes backend needs besides the cluster: PostgreSQL for Optuna studies (shared by
search workers) and the registry's metadata. Encrypted, private, password managed by RDS in
Secrets Manager (no secret in config or state)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


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

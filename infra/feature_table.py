"""A SageMaker feature group: online store for serving lookups, offline store (S3, Glue table)
for point-in-time training sets, keyed by record id and event time."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from fabric.backends.sagemaker import names
from fabric.spec import FeatureTableSettings


@dataclass(frozen=True)
class FeatureTableArgs:
    stack: str
    table: FeatureTableSettings
    bucket: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    role_arn: pulumi.Input[str]
    tags: dict[str, str]


class FeatureTable(pulumi.ComponentResource):
    def __init__(self, name: str, args: FeatureTableArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:FeatureTable", name, None, opts)
        table = args.table
        self.group = aws.sagemaker.FeatureGroup(
            name,
            feature_group_name=names.feature_group(f"fabric-{args.stack}", name),
            record_identifier_feature_name=table.record_id,
            event_time_feature_name=table.event_time,
            role_arn=args.role_arn,
            # plus the stamp fabric's online store writes with every record (`fabric features materialize`)
            feature_definitions=[{"feature_name": f, "feature_type": t} for f, t in table.features.items()
                                 if f != names.FEATURE_STAMP] + [{"feature_name": names.FEATURE_STAMP, "feature_type": "Integral"}],
            online_store_config={"enable_online_store": table.online, "security_config": {"kms_key_id": args.key_arn}},
            offline_store_config={
                "s3_storage_config": {"s3_uri": pulumi.Output.concat("s3://", args.bucket, f"/{names.feature_prefix(name)}"),
                                      "kms_key_id": args.key_arn},
                "disable_glue_table_creation": False,
            },
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        self.register_outputs({"name": self.group.feature_group_name})

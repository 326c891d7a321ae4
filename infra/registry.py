"""The model registry of one stack: an encrypted, versioned, private artifact bucket, an immutable
ECR repository for the serving image, and (SageMaker platform) a model package group per use case."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ModelRegistryArgs:
    stack: str
    tags: dict[str, str]
    use_cases: list[str] = field(default_factory=list)
    model_package_groups: bool = False


class ModelRegistry(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    repository: aws.ecr.Repository
    key: aws.kms.Key

    def __init__(self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:ModelRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(f"{name}-key", description=f"fabric {args.stack} model artifacts",
                               enable_key_rotation=True, deletion_window_in_days=30, tags=args.tags, opts=child)  # fmt: skip
        # versions are kept forever: a promoted model's bytes must stay what lineage says they are
        self.bucket = aws.s3.Bucket(f"{name}-artifacts", bucket=f"fabric-{args.stack}-artifacts", force_destroy=False,
                                    tags=args.tags, opts=child)  # fmt: skip
        aws.s3.BucketVersioning(f"{name}-artifacts-versioning", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)  # fmt: skip
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-artifacts-encryption",
            bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                 "kms_master_key_id": self.key.arn},
                    "bucket_key_enabled": True}],
            opts=child,
        )  # fmt: skip
        aws.s3.BucketPublicAccessBlock(f"{name}-artifacts-private", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                                       opts=child)  # fmt: skip
        self.repository = aws.ecr.Repository(
            f"{name}-images",
            name=f"fabric-{args.stack}/serving",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": self.key.arn}],
            tags=args.tags,
            opts=child,
        )
        self.model_package_groups = {}
        if args.model_package_groups:
            for use_case in args.use_cases:
                self.model_package_groups[use_case] = aws.sagemaker.ModelPackageGroup(
                    f"{name}-{use_case}", model_package_group_name=f"fabric-{args.stack}-{use_case}",
                    model_package_group_description=f"{use_case} models of stack {args.stack}", tags=args.tags,
                    opts=child,
                )  # fmt: skip
        self.register_outputs({"bucket": self.bucket.bucket, "repository": self.repository.repository_url})

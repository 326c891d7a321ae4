"""Least-privilege roles: training and pipeline jobs read data and write artifacts under their
prefixes; serving reads only models; nothing gets `*` on resources it does not need."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra._common import assume_role_policy, policy_document


@dataclass(frozen=True)
class RolesArgs:
    stack: str
    tags: dict[str, str]
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    principal: str  # sagemaker.amazonaws.com, or pods.eks.amazonaws.com (EKS Pod Identity)


class LifecycleRoles(pulumi.ComponentResource):
    def __init__(self, name: str, args: RolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:LifecycleRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        objects = pulumi.Output.concat(args.bucket_arn, "/")
        pull = {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": args.repository_arn}
        token = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}  # not resource-scopable
        decrypt = {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": args.key_arn}
        logs = {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:aws:logs:*:*:log-group:/fabric/{args.stack}/*"}  # fmt: skip
        statements = {
            "training": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": [pulumi.Output.concat(objects, "data/*"), pulumi.Output.concat(objects, "models/*"),
                              pulumi.Output.concat(objects, "checkpoints/*")]},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": args.bucket_arn},
                pull, token, decrypt, logs,
            ],
            "serving": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": pulumi.Output.concat(objects, "models/*")},
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": pulumi.Output.concat(objects, "capture/*")},
                {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                 "Condition": {"StringEquals": {"cloudwatch:namespace": "Fabric"}}},
                pull, token, decrypt, logs,
            ],
        }  # fmt: skip
        self.roles: dict[str, aws.iam.Role] = {}
        for role, statement in statements.items():
            self.roles[role] = aws.iam.Role(f"{name}-{role}", name=f"fabric-{args.stack}-{role}",
                                            assume_role_policy=assume_role_policy(args.principal), tags=args.tags,
                                            opts=child)  # fmt: skip
            aws.iam.RolePolicy(f"{name}-{role}-policy", role=self.roles[role].id, policy=policy_document(statement), opts=child)
        # the pipeline starts jobs and hands them the training role, nothing more
        self.roles["pipeline"] = aws.iam.Role(f"{name}-pipeline", name=f"fabric-{args.stack}-pipeline",
                                              assume_role_policy=assume_role_policy("sagemaker.amazonaws.com"),
                                              tags=args.tags, opts=child)  # fmt: skip
        aws.iam.RolePolicy(
            f"{name}-pipeline-policy",
            role=self.roles["pipeline"].id,
            policy=policy_document([
                {"Effect": "Allow", "Action": ["sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob",
                                               "sagemaker:DescribeTrainingJob", "sagemaker:DescribeProcessingJob",
                                               "sagemaker:CreateModelPackage", "sagemaker:AddTags"],
                 "Resource": f"arn:aws:sagemaker:*:*:*/fabric-{args.stack}-*"},
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": self.roles["training"].arn},
            ]),
            opts=child,
        )  # fmt: skip
        self.register_outputs({role: r.arn for role, r in self.roles.items()})

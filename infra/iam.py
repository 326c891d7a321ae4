"""Least-privilege roles: each role gets exactly the bucket prefixes, log groups and API actions of
what runs as it, taken from the backend's own key layout (fabric.backends.sagemaker.names), so a
prefix the backend writes cannot drift away from the one its role may write
(tests/test_infra.py checks every key the backend writes against these documents).

- training: the pipeline's training and processing jobs (and a feature group's offline store):
  read data and models, read and write pipeline outputs, spot checkpoints and offline features.
- serving: the endpoint's model: read model artifacts, write data capture, its endpoint's logs.
- pipeline: SageMaker Pipelines itself: start and follow the jobs it names `pipelines-*`, register
  model packages, read the evaluation property file, pass the training role and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from fabric.backends.sagemaker import names
from infra._common import assume_role_policy, policy_document

SAGEMAKER = "sagemaker.amazonaws.com"
LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]


@dataclass(frozen=True)
class RolesArgs:
    stack: str
    tags: dict[str, str]
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    principal: str  # sagemaker.amazonaws.com, or pods.eks.amazonaws.com (EKS Pod Identity)


def _log_groups(groups: list[str]) -> list[str]:
    # `<group>:*` covers the group and its streams (CreateLogStream and PutLogEvents act on streams)
    return [f"arn:aws:logs:*:*:log-group:{g}:*" for g in groups]


class LifecycleRoles(pulumi.ComponentResource):
    def __init__(self, name: str, args: RolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:LifecycleRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def objects(*prefixes: str) -> list[pulumi.Output[str]]:
            return [pulumi.Output.concat(args.bucket_arn, f"/{p}/*") for p in prefixes]

        on_sagemaker = args.principal == SAGEMAKER
        endpoint_prefix = names.endpoint(args.stack, "")  # fabric-<stack>-: every endpoint of the stack
        pull = {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": args.repository_arn}
        token = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}  # not resource-scopable
        decrypt = {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": args.key_arn}
        own_logs = [f"/fabric/{args.stack}"]  # pods on the cluster log there

        def logs(groups: list[str]) -> dict:
            return {"Effect": "Allow", "Action": LOG_ACTIONS, "Resource": _log_groups(groups)}

        statements = {
            "training": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects(names.DATA, names.MODELS)},
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": objects(names.PIPELINES, names.CHECKPOINTS, names.FEATURES)},
                {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketAcl"], "Resource": args.bucket_arn},
                # a feature group's offline store writes as this role: object ACLs and the Glue table it
                # keeps (what AmazonSageMakerFeatureStoreAccess grants, scoped to this bucket's prefix)
                {"Effect": "Allow", "Action": "s3:PutObjectAcl", "Resource": objects(names.FEATURES)},
                {"Effect": "Allow", "Action": ["glue:GetTable", "glue:UpdateTable"],
                 "Resource": ["arn:aws:glue:*:*:catalog", "arn:aws:glue:*:*:database/sagemaker_featurestore",
                              "arn:aws:glue:*:*:table/sagemaker_featurestore/*"]},
                pull, token, decrypt,
                logs(list(names.TRAINING_LOG_GROUPS) if on_sagemaker else own_logs),
                # training jobs publish their metrics under /aws/sagemaker/...
                {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                 "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}},
            ],
            "serving": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects(names.MODELS)},
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": objects(names.CAPTURE)},
                {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                 "Condition": {"StringEquals": {"cloudwatch:namespace": names.METRIC_NAMESPACE}}},
                pull, token, decrypt,
                logs([f"{names.ENDPOINT_LOG_GROUP}/{endpoint_prefix}*"] if on_sagemaker else own_logs),
            ],
        }  # fmt: skip
        self.roles: dict[str, aws.iam.Role] = {}
        for role, statement in statements.items():
            self.roles[role] = aws.iam.Role(f"{name}-{role}", name=f"fabric-{args.stack}-{role}",
                                            assume_role_policy=assume_role_policy(args.principal), tags=args.tags,
                                            opts=child)  # fmt: skip
            aws.iam.RolePolicy(f"{name}-{role}-policy", role=self.roles[role].id, policy=policy_document(statement), opts=child)
        self.roles["pipeline"] = aws.iam.Role(f"{name}-pipeline", name=f"fabric-{args.stack}-pipeline",
                                              assume_role_policy=assume_role_policy(SAGEMAKER),
                                              tags=args.tags, opts=child)  # fmt: skip
        jobs = [f"arn:aws:sagemaker:*:*:{kind}/{names.PIPELINE_JOB_PREFIX}*" for kind in ("training-job", "processing-job")]
        aws.iam.RolePolicy(
            f"{name}-pipeline-policy",
            role=self.roles["pipeline"].id,
            policy=policy_document([
                {"Effect": "Allow", "Action": ["sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob",
                                               "sagemaker:DescribeTrainingJob", "sagemaker:DescribeProcessingJob",
                                               "sagemaker:StopTrainingJob", "sagemaker:StopProcessingJob",
                                               "sagemaker:AddTags"],
                 "Resource": jobs},
                {"Effect": "Allow", "Action": ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage",
                                               "sagemaker:AddTags"],
                 "Resource": [f"arn:aws:sagemaker:*:*:model-package/{endpoint_prefix}*",
                              f"arn:aws:sagemaker:*:*:model-package-group/{endpoint_prefix}*"]},
                # the Condition step reads the Evaluate step's property file
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects(names.PIPELINES)},
                decrypt,
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": self.roles["training"].arn},
            ]),
            opts=child,
        )  # fmt: skip
        self.register_outputs({role: r.arn for role, r in self.roles.items()})

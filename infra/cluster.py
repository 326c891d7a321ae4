"""An EKS cluster with its IAM roles, and node pools as raw `aws.eks.NodeGroup`s (not a remote
component) so that every child is visible to tests and to the policy check."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from fabric.spec import NodePool
from infra._common import assume_role_policy

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")


@dataclass(frozen=True)
class ClusterArgs:
    stack: str
    version: str
    subnet_ids: list[str]
    tags: dict[str, str]


class EksCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(f"{name}-control-plane", assume_role_policy=assume_role_policy("eks.amazonaws.com"),
                                 tags=args.tags, opts=child)  # fmt: skip
        aws.iam.RolePolicyAttachment(f"{name}-control-plane-policy", role=self.role.name,
                                     policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy", opts=child)  # fmt: skip
        self.node_role = aws.iam.Role(f"{name}-nodes", assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                                      tags=args.tags, opts=child)  # fmt: skip
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(f"{name}-nodes-{policy}", role=self.node_role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child)  # fmt: skip
        self.cluster = aws.eks.Cluster(
            name,
            name=f"fabric-{args.stack}",
            version=args.version,
            role_arn=self.role.arn,
            vpc_config={"subnet_ids": args.subnet_ids, "endpoint_private_access": True, "endpoint_public_access": False},
            access_config={"authentication_mode": "API"},
            tags=args.tags,
            opts=child,
        )
        self.register_outputs({"name": self.cluster.name, "endpoint": self.cluster.endpoint})


@dataclass(frozen=True)
class NodePoolArgs:
    cluster: EksCluster
    pool: NodePool
    gpu: bool
    subnet_ids: list[str]
    tags: dict[str, str]


class EksNodePool(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fabric:infra:NodePool", name, None, opts)
        pool = args.pool
        labels = {"fabric.io/pool": pool.name, "fabric.io/accelerator": "nvidia" if args.gpu else "none"}
        self.node_group = aws.eks.NodeGroup(
            name,
            cluster_name=args.cluster.cluster.name,
            node_group_name=f"{pool.name}-{'gpu' if args.gpu else 'cpu'}",
            node_role_arn=args.cluster.node_role.arn,
            subnet_ids=args.subnet_ids,
            instance_types=list(pool.instance_types),
            ami_type="AL2023_x86_64_NVIDIA" if args.gpu else "AL2023_x86_64_STANDARD",
            capacity_type=pool.capacity_type,
            disk_size=pool.disk_gb,
            scaling_config={"min_size": pool.min, "max_size": pool.max, "desired_size": pool.desired_size},
            labels=labels,
            # only pods that tolerate the GPU taint (training jobs) land on GPU nodes
            taints=[GPU_TAINT] if args.gpu else [],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        self.register_outputs({"name": self.node_group.node_group_name})

"""EKS managed node groups built from a ``NodePool``: same labels and taints as everywhere else.

``autoscaler_node_template_tags`` is pure: it states what cluster-autoscaler must know about a
node group that has no node yet (scale from zero), derived from the pool itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .pools import GPU_RESOURCE, NodePool

__all__ = [
    "CPU_AMI_TYPE",
    "GPU_AMI_TYPE",
    "EksNodeGroup",
    "EksNodeGroupArgs",
    "autoscaler_node_template_tags",
]

CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
# Amazon Linux 2023 with the NVIDIA driver and container toolkit; the device plugin still comes
# from the platform's GpuStack (this AMI does not run one).
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
_AUTOSCALER_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def autoscaler_node_template_tags(pool: NodePool) -> dict[str, str]:
    """ASG tags that let cluster-autoscaler build a template node for an empty group.

    With zero nodes it cannot read labels, taints or GPU capacity from a live node, so a pending
    GPU pod would never trigger a scale-up; these tags (its documented node-template format) say
    what a new node would look like.
    """
    tags = {f"{_AUTOSCALER_TEMPLATE}/label/{k}": v for k, v in pool.labels.items()}
    tags.update({f"{_AUTOSCALER_TEMPLATE}/taint/{t.key}": f"{t.value}:{t.effect}" for t in pool.taints})
    if pool.gpus_per_node:
        tags[f"{_AUTOSCALER_TEMPLATE}/resources/{GPU_RESOURCE}"] = str(pool.gpus_per_node)
    return tags


def _asg_name(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    """The Auto Scaling group EKS created for a managed node group (one per group)."""
    groups = resources[0].autoscaling_groups or []
    if not groups or not groups[0].name:
        raise ValueError("EKS returned no Auto Scaling group for the node group")
    return groups[0].name


@dataclass(frozen=True)
class EksNodeGroupArgs:
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # private subnets: nodes never get public addresses
    pool: NodePool
    instance_types: Sequence[str]
    min_size: int
    desired_size: int
    max_size: int
    ami_type: str = CPU_AMI_TYPE
    disk_size_gib: int = 50  # room for ML images; the 20 GiB EKS default fills up fast
    # Must exist before nodes join (pod networking add-ons). Passed explicitly because a
    # component's depends_on does not reach its children.
    after: Sequence[pulumi.Resource] = ()


class EksNodeGroup(pulumi.ComponentResource):
    """One managed node group whose nodes carry exactly the pool's labels and taints.

    Guarantees: nodes register with the pool's taints (EKS applies them at join, before any pod
    can land); nodes live only in the given subnets; when ``min_size`` is 0 the group's
    Auto Scaling group carries cluster-autoscaler node-template tags for the pool's labels, taints
    and GPUs, so a cluster-autoscaler (not installed by this program) could scale it up from zero.
    """

    def __init__(self, name: str, args: EksNodeGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:EksNodeGroup", name, None, opts)
        pool = args.pool
        self.node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=list(args.subnet_ids),
            instance_types=list(args.instance_types),
            ami_type=args.ami_type,
            capacity_type="ON_DEMAND",
            disk_size=args.disk_size_gib,
            labels=dict(pool.labels),
            taints=[aws.eks.NodeGroupTaintArgs(**t.as_eks()) for t in pool.taints],
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, desired_size=args.desired_size, max_size=args.max_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            tags={"Name": name, "mlplatform.io/pool": pool.name},
            # desired_size stays owned by Pulumi (no autoscaler is installed, so the config is the
            # only way to scale, e.g. GPUs to zero). With cluster-autoscaler, ignore scalingConfig.desiredSize.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.asg_tags: list[aws.autoscaling.Tag] = []
        if args.min_size == 0:
            asg_name = self.node_group.resources.apply(_asg_name)
            for i, (key, value) in enumerate(sorted(autoscaler_node_template_tags(pool).items())):
                self.asg_tags.append(
                    aws.autoscaling.Tag(
                        f"{name}-template-{i}",
                        autoscaling_group_name=asg_name,
                        tag={"key": key, "value": value, "propagate_at_launch": False},
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        self.node_group_name: pulumi.Output[str] = self.node_group.node_group_name
        self.register_outputs({"node_group_name": self.node_group_name})

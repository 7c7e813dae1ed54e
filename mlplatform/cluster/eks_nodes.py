"""EKS managed node groups built from a ``NodePool``: same labels and taints as everywhere else.

``autoscaler_node_template_tags`` is pure: it states what cluster-autoscaler must know about a
node group that has no node yet (scale from zero), derived from the pool itself. The group's size
belongs to cluster-autoscaler once the group exists (``eks_autoscaler.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .pools import AWS_GPU_LABEL, GPU_RESOURCE, NodePool

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
# cluster-autoscaler changes the desired size; Pulumi sets it once, at creation, and never resets it
# (a second `pulumi up` would otherwise scale GPU nodes back to the configured size mid-job). A change
# of min or max still sends the *recorded* desired size with them (one AWS call): docs/eks.md says to
# make such changes with `pulumi up --refresh`, which records the autoscaler's current size first.
AUTOSCALER_OWNED = ("scalingConfig.desiredSize",)


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


def _tag_resource_name(group: str, key: str) -> str:
    """A name that stays with the tag's key: numbered names shift when a tag is added, and the
    replaced resources then delete keys their successors had just written."""
    return f"{group}-asg-tag-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _legacy_names(group: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Earlier versions numbered the node-template tags in key order, before the autoscaler's own
    tags and the AWS GPU label existed: alias those so an upgrade renames instead of replacing."""
    kinds = tuple(f"{_AUTOSCALER_TEMPLATE}/{kind}/" for kind in ("label", "taint", "resources"))
    earlier = sorted(k for k in tags if k.startswith(kinds) and AWS_GPU_LABEL not in k)
    return {key: f"{group}-template-{i}" for i, key in enumerate(earlier)}


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
    # The nodes' Kubernetes minor and AMI release (``EksRelease.node_ami_release``); None lets EKS
    # pick at creation (the cluster's minor, the newest AMI) and never changes them afterwards.
    kubernetes_version: str | None = None
    ami_release_version: str | None = None
    disk_size_gib: int = 50  # room for ML images; the 20 GiB EKS default fills up fast
    # Auto Scaling group tags for cluster-autoscaler (auto-discovery, per-group options), besides
    # the node-template tags a group that may scale from zero gets anyway.
    autoscaler_tags: Mapping[str, str] = field(default_factory=dict)
    # Must exist before nodes join (pod networking add-ons). Passed explicitly because a
    # component's depends_on does not reach its children.
    after: Sequence[pulumi.Resource] = ()


class EksNodeGroup(pulumi.ComponentResource):
    """One managed node group whose nodes carry exactly the pool's labels and taints.

    Guarantees: nodes register with the pool's taints (EKS applies them at join, before any pod
    can land); nodes live only in the given subnets; when ``min_size`` is 0 the group's
    Auto Scaling group carries cluster-autoscaler node-template tags for the pool's labels, taints
    and GPUs, so cluster-autoscaler can scale it up from zero; after creation the desired size is
    cluster-autoscaler's (Pulumi ignores it); a change of ``kubernetes_version`` or
    ``ami_release_version`` rolls the nodes one at a time, respecting PodDisruptionBudgets.
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
            version=args.kubernetes_version,
            release_version=args.ami_release_version,
            # A new minor or AMI release replaces the nodes one at a time: EKS drains each node through
            # the eviction API, so PodDisruptionBudgets hold (serving keeps a replica). Not forced: a
            # pod whose budget never allows an eviction fails the update instead of being killed.
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            force_update_version=False,
            tags={"Name": name, "mlplatform.io/pool": pool.name},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.after), ignore_changes=list(AUTOSCALER_OWNED)
            ),
        )
        self.asg_tags: list[aws.autoscaling.Tag] = []
        asg_tags = dict(args.autoscaler_tags)
        if args.min_size == 0:
            asg_tags.update(autoscaler_node_template_tags(pool))
        legacy = _legacy_names(name, asg_tags)
        if asg_tags:
            asg_name = self.node_group.resources.apply(_asg_name)
            for key, value in sorted(asg_tags.items()):
                self.asg_tags.append(
                    aws.autoscaling.Tag(
                        _tag_resource_name(name, key),
                        autoscaling_group_name=asg_name,
                        tag={"key": key, "value": value, "propagate_at_launch": False},
                        opts=pulumi.ResourceOptions(
                            parent=self, aliases=[pulumi.Alias(name=legacy[key])] if key in legacy else None
                        ),
                    )
                )
        self.node_group_name: pulumi.Output[str] = self.node_group.node_group_name
        self.register_outputs({"node_group_name": self.node_group_name})

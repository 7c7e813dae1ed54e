"""cluster-autoscaler on EKS: GPU nodes appear when Kueue asks for them, and go away when idle.

Kueue's AdmissionCheck (``team_queues.py``) creates a ProvisioningRequest for a GPU workload;
cluster-autoscaler (``--enable-provisioning-requests``) scales the GPU node group up for all of its
pods at once and marks the request Provisioned; only then is the workload admitted. Idle GPU nodes
go after ``eksGpuIdleMinutes``. The builders are pure; ``ClusterAutoscaler`` registers them.

Least privilege: the autoscaler's IAM role (EKS Pod Identity, bound to its one service account)
may change the size of, or terminate instances in, only Auto Scaling groups tagged as this
cluster's (the tag auto-discovery looks for), and may describe only this cluster's node groups;
the rest is read-only describe calls, which AWS does not scope to resources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from .. import versions
from ..helm import release
from .eks_iam import POD_IDENTITY_ACTIONS, POD_IDENTITY_PRINCIPAL, role_with_policies
from .pools import NodePool
from .provisioning import NodeProvisioning

__all__ = [
    "AUTOSCALER_NAMESPACE",
    "AUTOSCALER_SERVICE_ACCOUNT",
    "PROVISIONING_REQUEST_CRD",
    "ClusterAutoscaler",
    "ClusterAutoscalerArgs",
    "autoscaler_policy",
    "autoscaler_values",
    "discovery_tags",
    "idle_tags",
    "provisioning_request_crd",
]

AUTOSCALER_NAMESPACE = "kube-system"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
# Not installed by the chart; Kueue starts its ProvisioningRequest controller only if this API is
# served when Kueue starts (cmd/kueue/main.go: ServerSupportsProvisioningRequest), so it is applied
# here, before both. Copied from upstream (crds/README.md).
PROVISIONING_REQUEST_CRD = Path(__file__).parent / "crds" / "autoscaling.x-k8s.io_provisioningrequests.yaml"
_TAG_PREFIX = "k8s.io/cluster-autoscaler"
# Per-group override of --scale-down-unneeded-time (cloudprovider/aws README, autoscaling options).
_UNNEEDED_TIME_TAG = f"{_TAG_PREFIX}/node-template/autoscaling-options/scaledownunneededtime"
# Read-only calls the autoscaler makes (cloudprovider/aws README, "Full Cluster Autoscaler Features
# Policy"); AWS does not scope Describe* to resources.
_DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
_SCALE_ACTIONS = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
# The autoscaler reads ProvisioningRequests and their pod templates and writes their status; the
# chart's ClusterRole has neither (cluster-autoscaler FAQ, "Enabling ProvisioningRequest Support").
PROVISIONING_RBAC = (
    {
        "apiGroups": ["autoscaling.x-k8s.io"],
        "resources": ["provisioningrequests", "provisioningrequests/status"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["podtemplates"], "verbs": ["get", "list", "watch"]},
)


def discovery_tags(cluster_name: str) -> dict[str, str]:
    """The Auto Scaling group tags auto-discovery finds this cluster's node groups by (EKS puts them on
    managed node groups too; the program sets them itself so the IAM condition never depends on that)."""
    return {f"{_TAG_PREFIX}/enabled": "true", f"{_TAG_PREFIX}/{cluster_name}": "owned"}


def idle_tags(minutes: int) -> dict[str, str]:
    """Remove a node of this group once it has run no pod that needs it for ``minutes``."""
    return {_UNNEEDED_TIME_TAG: f"{minutes}m0s"}


def autoscaler_policy(cluster_name: str, *, partition: str, region: str, account_id: str) -> dict[str, Any]:
    """The IAM policy: scale only this cluster's Auto Scaling groups, describe only its node groups."""
    owned_tag = f"aws:ResourceTag/{_TAG_PREFIX}/{cluster_name}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ScaleThisClustersNodeGroups",
                "Effect": "Allow",
                "Action": list(_SCALE_ACTIONS),
                "Resource": "*",
                "Condition": {"StringEquals": {owned_tag: "owned"}},
            },
            {
                "Sid": "DescribeThisClustersManagedNodeGroups",
                "Effect": "Allow",
                "Action": ["eks:DescribeNodegroup"],
                "Resource": f"arn:{partition}:eks:{region}:{account_id}:nodegroup/{cluster_name}/*/*",
            },
            {"Sid": "ReadOnlyDescribe", "Effect": "Allow", "Action": list(_DESCRIBE_ACTIONS), "Resource": "*"},
        ],
    }


def autoscaler_values(
    cluster_name: str,
    region: str,
    *,
    cpu_pool: NodePool,
    gpu_idle_minutes: int,
    provisioning: NodeProvisioning,
    pins: versions.ComponentVersions = versions.CURRENT,
    image_tag: str | None = None,
) -> dict[str, Any]:
    """Chart values: auto-discovery by tags, ProvisioningRequests on, on the CPU pool, restricted.

    ``image_tag``: the autoscaler of the cluster's Kubernetes minor (``EksRelease``), which must match
    it; None = the tag pinned in ``pins``.
    """
    repository, tag = pins.cluster_autoscaler_image
    tag = image_tag or tag
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name, "tags": list(discovery_tags(cluster_name))},
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "rbac": {
            "serviceAccount": {"name": AUTOSCALER_SERVICE_ACCOUNT},
            "additionalRules": [dict(rule) for rule in PROVISIONING_RBAC],
        },
        "extraArgs": {
            "enable-provisioning-requests": "true",
            # Required with ProvisioningRequests (the CRD client speaks JSON, not protobuf).
            "kube-api-content-type": "application/json",
            "max-node-provision-time": f"{provisioning.max_node_provision_minutes}m0s",
            # Scale-down resumes this soon after a scale-up (default 10m): an idle GPU node goes after
            # eksGpuIdleMinutes, not after whichever of the two is longer.
            "scale-down-delay-after-add": f"{gpu_idle_minutes}m0s",
        },
        # Never on a GPU node: it would keep one alive just to run the autoscaler.
        "nodeSelector": dict(cpu_pool.selector),
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def provisioning_request_crd() -> dict[str, Any]:
    """The ProvisioningRequest CustomResourceDefinition (``autoscaling.x-k8s.io/v1``)."""
    crd: dict[str, Any] = yaml.safe_load(PROVISIONING_REQUEST_CRD.read_text())
    return crd


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    cluster_name: str  # the EKS cluster's name (tags, IAM, discovery)
    eks_cluster: aws.eks.Cluster
    region: str
    partition: str
    account_id: str
    cpu_pool: NodePool
    provider: k8s.Provider
    gpu_idle_minutes: int = 5
    provisioning: NodeProvisioning = field(default_factory=NodeProvisioning)
    pins: versions.ComponentVersions = versions.CURRENT  # the chart and image versions
    image_tag: str | None = None  # of the cluster's Kubernetes minor; None = the one in ``pins``
    # Must exist first: the node groups (the autoscaler runs on a CPU node) and the Pod Identity agent.
    after: Sequence[pulumi.Resource] = ()
    values_overrides: Mapping[str, Any] = field(default_factory=dict)


class ClusterAutoscaler(pulumi.ComponentResource):
    """cluster-autoscaler 1.34 (chart 9.53.0) serving ProvisioningRequests, with its CRD and IAM.

    Guarantees: the ProvisioningRequest CRD exists before the autoscaler (and, through ``crd``,
    before anything that waits for the cluster, Kueue included); the autoscaler's IAM role is
    assumable only through EKS Pod Identity by its own service account and can scale only Auto
    Scaling groups tagged as this cluster's; it runs on the CPU pool.
    """

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:ClusterAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role, _ = role_with_policies(
            name,
            service=POD_IDENTITY_PRINCIPAL,
            actions=POD_IDENTITY_ACTIONS,
            policies=(),
            partition=args.partition,
            parent=self,
        )
        policy = aws.iam.Policy(
            f"{name}-scale",
            description=f"cluster-autoscaler of EKS cluster {args.cluster_name}: its own node groups only",
            policy=json.dumps(
                autoscaler_policy(
                    args.cluster_name, partition=args.partition, region=args.region, account_id=args.account_id
                )
            ),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(f"{name}-scale", role=role.name, policy_arn=policy.arn, opts=child)
        association = aws.eks.PodIdentityAssociation(
            name,
            cluster_name=args.eks_cluster.name,
            namespace=AUTOSCALER_NAMESPACE,
            service_account=AUTOSCALER_SERVICE_ACCOUNT,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, *args.after]),
        )
        manifest = provisioning_request_crd()
        self.crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-provisioning-request-crd",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.release = release(
            "cluster-autoscaler",
            args.pins.cluster_autoscaler,
            namespace=AUTOSCALER_NAMESPACE,
            values=autoscaler_values(
                args.cluster_name,
                args.region,
                cpu_pool=args.cpu_pool,
                gpu_idle_minutes=args.gpu_idle_minutes,
                provisioning=args.provisioning,
                pins=args.pins,
                image_tag=args.image_tag,
            ),
            values_overrides=args.values_overrides,
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[self.crd, association, attachment, *args.after]
            ),
        )
        self.provisioning = args.provisioning
        self.register_outputs({"release_name": self.release.name})

"""Platform resources judged on their own: Helm releases and EKS clusters and node groups."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .model import Resource, as_list, as_map

__all__ = [
    "EKS_CLUSTER",
    "EKS_NODE_GROUP",
    "HELM_TYPES",
    "eks_endpoint_findings",
    "eks_gpu_taint_findings",
    "helm_version_findings",
    "is_nvidia_ami",
]

HELM_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart"})
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GPU_TAINT_KEY = "nvidia.com/gpu"
WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
# An exact SemVer version: no range operators, wildcards or partial versions.
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


def helm_version_findings(resource: Resource) -> list[str]:
    """A Helm release must name one exact chart version (a local chart directory is pinned by git)."""
    chart = resource.props.get("chart")
    if isinstance(chart, str) and chart.startswith(("./", "../", "/")):
        return []
    version = resource.props.get("version")
    if not isinstance(version, str) or not version:
        return [f"set version to the exact chart version to install (chart {chart!r} has none)"]
    if not _EXACT_VERSION.match(version):
        return [f"version {version!r} is a range or partial version; set an exact one such as 1.2.3"]
    return []


def is_nvidia_ami(ami_type: Any) -> bool:
    """EKS AMI types that ship the NVIDIA driver (AL2_x86_64_GPU, AL2023_*_NVIDIA, BOTTLEROCKET_*_NVIDIA)."""
    return isinstance(ami_type, str) and ("NVIDIA" in ami_type or ami_type.endswith("_GPU"))


def _gpu_taints(taints: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [as_map(t) for t in taints if as_map(t).get("key") == GPU_TAINT_KEY]


def eks_gpu_taint_findings(resource: Resource) -> list[str]:
    """NVIDIA node groups carry ``nvidia.com/gpu`` NO_SCHEDULE (only GPU pods land there); others don't."""
    ami_type = resource.props.get("amiType")
    gpu_taints = _gpu_taints(as_list(resource.props.get("taints")))
    if is_nvidia_ami(ami_type):
        if not any(t.get("effect") == "NO_SCHEDULE" for t in gpu_taints):
            return [
                f"amiType {ami_type} is an NVIDIA AMI: add taint "
                f"{{key: {GPU_TAINT_KEY}, value: present, effect: NO_SCHEDULE}} so only GPU pods land there"
            ]
        return []
    if gpu_taints:
        return [
            f"amiType {ami_type!r} has no NVIDIA driver: remove the {GPU_TAINT_KEY} taint "
            "(or use an NVIDIA AMI such as AL2023_x86_64_NVIDIA)"
        ]
    return []


def eks_endpoint_findings(resource: Resource, config: Mapping[str, Any]) -> list[str]:
    """The public API endpoint is either off or limited to named CIDRs (AWS's default is 0.0.0.0/0)."""
    vpc = as_map(resource.props.get("vpcConfig"))
    if vpc.get("endpointPublicAccess") is False:
        return []
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))]
    open_to = sorted(set(cidrs) & WORLD_CIDRS) or ([] if cidrs else ["0.0.0.0/0 (the AWS default)"])
    if not open_to or config.get("allowPublicEndpoint") is True:
        return []
    return [
        f"vpcConfig: the public API endpoint is open to {', '.join(open_to)}; set endpointPublicAccess false "
        "or publicAccessCidrs to your networks (or set allowPublicEndpoint: true in this policy's config)"
    ]

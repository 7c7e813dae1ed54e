"""What runs with each Kubernetes minor on EKS, in one table, and the rule for moving between minors.

Pure data and pure functions (no Pulumi): ``config.py`` validates ``kubernetesVersion`` against
the table, ``cluster/eks.py`` installs from it, and ``cluster/eks_upgrade.py`` enforces
``upgrade_refusal`` in the engine before the cluster is touched.

Upgrading one minor (docs/eks.md, "Upgrading EKS"): add the next minor's row here, then set
``ml-platform:kubernetesVersion`` to it. The control plane moves first; the add-ons, node groups
(AMI release, rolled respecting PodDisruptionBudgets) and cluster-autoscaler follow it, because
they all depend on the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .versions import CURRENT

__all__ = ["EKS_RELEASES", "EksRelease", "eks_release", "minor", "upgrade_path", "upgrade_refusal"]

VERSION_KEY = "ml-platform:kubernetesVersion"
_MINOR = re.compile(r"^(\d+)\.(\d+)$")


@dataclass(frozen=True)
class EksRelease:
    """Every version pinned for one Kubernetes minor on EKS.

    An unpinned add-on or AMI resolves to whatever is newest at apply time, so two `pulumi up`s
    of one commit could differ; pinned, a version change is a reviewed diff.
    """

    # EKS add-on -> version (`aws eks describe-addon-versions --kubernetes-version <minor>`).
    addons: Mapping[str, str]
    # Managed node group AMI release (`release_version`), shared by the AL2023 standard and NVIDIA
    # AMIs of one amazon-eks-ami release (its CHANGELOG lists it per minor).
    node_ami_release: str
    # cluster-autoscaler's minor must match the cluster's (its documented version policy).
    autoscaler_image_tag: str


# Sources. Add-ons: coredns and kube-proxy from the Amazon EKS user guide's "latest version per
# Kubernetes version" tables (managing-coredns, managing-kube-proxy; the snapshot listing kube-proxy
# v1.34.1-eksbuild.2 / v1.33.5-eksbuild.2); vpc-cni, eks-pod-identity-agent and the CSI drivers
# from a public Terraform configuration of an EKS 1.34 cluster (spack infrastructure,
# terraform-aws-modules/eks 21.8.0), kept for 1.33 (add-ons of this age support both minors).
# Refresh with: aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <name>.
# AMIs: awslabs/amazon-eks-ami release v20260714 (commit b4fffb70), CHANGELOG, release
# versions 1.34.9-20260714 and 1.33.13-20260714 for AL2023_x86_64_STANDARD and _NVIDIA.
# cluster-autoscaler: tags cluster-autoscaler-1.34.2 and cluster-autoscaler-1.33.6 of kubernetes/autoscaler.
_SHARED_ADDONS = {
    "vpc-cni": "v1.20.4-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
    "aws-ebs-csi-driver": "v1.51.1-eksbuild.1",
    "aws-efs-csi-driver": "v2.1.13-eksbuild.1",
}
EKS_RELEASES: dict[str, EksRelease] = {
    # The previous minor: where an upgrade to 1.34 starts from (and what the upgrade tests step over).
    "1.33": EksRelease(
        addons={**_SHARED_ADDONS, "kube-proxy": "v1.33.5-eksbuild.2", "coredns": "v1.12.4-eksbuild.1"},
        node_ami_release="1.33.13-20260714",
        autoscaler_image_tag="v1.33.6",
    ),
    "1.34": EksRelease(
        addons={**_SHARED_ADDONS, "kube-proxy": "v1.34.1-eksbuild.2", "coredns": "v1.12.4-eksbuild.1"},
        node_ami_release="1.34.9-20260714",
        autoscaler_image_tag=CURRENT.cluster_autoscaler_image[1],
    ),
}


def minor(version: str) -> tuple[int, int]:
    """``'1.34'`` -> ``(1, 34)``; a ValueError for anything that is not major.minor."""
    match = _MINOR.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a Kubernetes minor version such as '1.34'")
    return int(match[1]), int(match[2])


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def eks_release(version: str) -> EksRelease | None:
    """The pins for ``version``, or None when the table has no row for it."""
    return EKS_RELEASES.get(version)


def upgrade_path(current: str, target: str) -> list[str]:
    """The minors an upgrade from ``current`` to ``target`` passes through, ``target`` last."""
    (major, low), (_, high) = minor(current), minor(target)
    return [_text((major, m)) for m in range(low + 1, high + 1)]


def upgrade_refusal(recorded: str | None, requested: str) -> str | None:
    """Why EKS would refuse moving a control plane from ``recorded`` to ``requested``, or None.

    ``recorded`` is the version the stack last applied (None: the cluster is created now, any
    version goes). EKS upgrades one minor at a time and never downgrades; saying so here, before
    any call, beats a failed UpdateClusterVersion halfway through an `up`.
    """
    if not recorded or recorded == requested:
        return None
    old, new = minor(recorded), minor(requested)
    if new[0] != old[0]:
        return f"{VERSION_KEY}: the cluster is at {recorded}, a change to {requested} is not a minor upgrade"
    if new < old:
        return (
            f"{VERSION_KEY}: EKS cannot downgrade a control plane: the cluster is at {recorded}, the config asks "
            f"for {requested}. Set it back: pulumi config set {VERSION_KEY} {recorded} (an older version needs a "
            "new cluster)"
        )
    if new[1] - old[1] > 1:
        steps = upgrade_path(recorded, requested)
        return (
            f"{VERSION_KEY}: EKS upgrades the control plane one minor version at a time: the cluster is at "
            f"{recorded}, the config asks for {requested}. Go {' -> '.join([recorded, *steps])}: set "
            f"{steps[0]}, run pulumi up, and repeat for each next minor"
        )
    return None

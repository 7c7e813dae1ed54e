"""IAM for the EKS cluster: who may assume each role, and the AWS managed policies it gets.

The policy sets are data (``CLUSTER_POLICIES`` ...), so a test can assert each role holds exactly
its minimal set; ``role_with_policies`` is the one place that turns them into resources.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

__all__ = [
    "CLUSTER_POLICIES",
    "EBS_CSI_POLICIES",
    "EFS_CSI_POLICIES",
    "NODE_POLICIES",
    "POD_IDENTITY_ACTIONS",
    "POD_IDENTITY_PRINCIPAL",
    "assume_role_policy",
    "iam_role_arn",
    "managed_policy_arn",
    "role_with_policies",
]

# Only what EKS documents as required for each role; nothing broader.
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
EBS_CSI_POLICIES = ("service-role/AmazonEBSCSIDriverPolicy",)
EFS_CSI_POLICIES = ("service-role/AmazonEFSCSIDriverPolicy",)

# EKS Pod Identity: the agent on each node assumes the role for the pod's service account and
# tags the session; both actions are required in the trust policy.
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
POD_IDENTITY_ACTIONS = ("sts:AssumeRole", "sts:TagSession")


def managed_policy_arn(partition: str, name: str) -> str:
    """ARN of the AWS managed policy ``name`` (e.g. ``service-role/AmazonEBSCSIDriverPolicy``)."""
    return f"arn:{partition}:iam::aws:policy/{name}"


def assume_role_policy(service: str, actions: Sequence[str] = ("sts:AssumeRole",)) -> str:
    """A trust policy letting one AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}],
        }
    )


def iam_role_arn(caller_arn: str, issuer_arn: str | None) -> str:
    """The IAM principal an access entry must name for ``caller_arn``.

    EKS access entries take IAM users and roles, not STS sessions: for
    ``arn:aws:sts::111122223333:assumed-role/Admin/alice`` the entry must name the role. The
    session context invoke returns it as ``issuer_arn`` (with the role's path, which the
    assumed-role ARN omits); for IAM users it is the caller ARN itself.
    """
    if ":assumed-role/" in caller_arn:
        if not issuer_arn:
            raise ValueError(f"cannot find the IAM role behind the session {caller_arn}")
        return issuer_arn
    return caller_arn


def role_with_policies(
    name: str,
    *,
    service: str,
    policies: Sequence[str],
    partition: str,
    actions: Sequence[str] = ("sts:AssumeRole",),
    parent: pulumi.Resource,
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    """An IAM role ``service`` may assume, with exactly ``policies`` (AWS managed) attached.

    Returns the attachments too: whatever uses the role must depend on them, or it can start
    (and, on destroy, still be running) while the role has no permissions.
    """
    role = aws.iam.Role(
        name,
        assume_role_policy=assume_role_policy(service, actions),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    attachments = []
    for policy in policies:
        short = policy.rsplit("/", 1)[-1]
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-{short}",
            role=role.name,
            policy_arn=managed_policy_arn(partition, policy),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        attachments.append(attachment)
    return role, attachments

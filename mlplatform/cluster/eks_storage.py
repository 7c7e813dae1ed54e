"""The EKS model store: an encrypted EFS file system shared (ReadWriteMany) by training and serving.

``model_store_class_manifest`` is the pure StorageClass builder (validated in tests against the
Kubernetes schemas); ``EfsModelStore`` creates the file system, its mount targets and the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from ..objects import apply

__all__ = [
    "EFS_PROVISIONER",
    "MODEL_STORE_CLASS",
    "NFS_PORT",
    "EfsModelStore",
    "EfsModelStoreArgs",
    "model_store_class_manifest",
]

EFS_PROVISIONER = "efs.csi.aws.com"
MODEL_STORE_CLASS = "efs-model-store"
NFS_PORT = 2049
# The platform's pods run as this non-root UID/GID: each volume's access point directory is owned
# by it, so training can write the registry without root or fsGroup (EFS ignores fsGroup).
MODEL_STORE_UID = 10001


def model_store_class_manifest(file_system_id: Any) -> dict[str, Any]:
    """StorageClass whose volumes are EFS access points (one directory each) on ``file_system_id``."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": MODEL_STORE_CLASS},
        "provisioner": EFS_PROVISIONER,
        "parameters": {
            "provisioningMode": "efs-ap",
            "fileSystemId": file_system_id,
            "directoryPerms": "700",
            "uid": str(MODEL_STORE_UID),
            "gid": str(MODEL_STORE_UID),
        },
        # Delete: `pulumi destroy` removes the PVCs first and the driver then deletes their access
        # points, so nothing is left holding the file system.
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


@dataclass(frozen=True)
class EfsModelStoreArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # one mount target per subnet (the private ones)
    # Only this security group may reach NFS: EKS attaches it to the control plane and to every
    # managed node (node groups without a custom launch template).
    client_security_group_id: pulumi.Input[str]
    # The EFS CSI driver add-on and the cluster access entry: the StorageClass needs both.
    class_depends_on: Sequence[pulumi.Resource] = ()


class EfsModelStore(pulumi.ComponentResource):
    """An encrypted EFS file system mounted in every private subnet, and its StorageClass.

    Guarantees: encrypted at rest; NFS (TCP 2049) reachable only from the cluster security group;
    a mount target in every given subnet, so pods in any zone can mount it; ``class_name`` is a
    StorageClass provisioning ReadWriteMany volumes writable by UID/GID 10001. Kubernetes objects
    use the provider passed in ``opts`` (``providers=[k8s_provider]``).
    """

    def __init__(self, name: str, args: EfsModelStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:EfsModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-nfs",
            vpc_id=args.vpc_id,
            description="NFS to the model store from the EKS cluster security group only",
            tags={"Name": f"{name}-nfs"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nfs-from-cluster",
            security_group_id=sg.id,
            referenced_security_group_id=args.client_security_group_id,
            ip_protocol="tcp",
            from_port=NFS_PORT,
            to_port=NFS_PORT,
            description="NFS from EKS nodes and control plane",
            opts=child,
        )
        self.file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode="elastic",  # pay per use; model loads are bursty
            tags={"Name": name},
            opts=child,
        )
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{i}",
                file_system_id=self.file_system.id,
                subnet_id=subnet_id,
                security_groups=[sg.id],
                opts=child,
            )
            for i, subnet_id in enumerate(args.subnet_ids)
        ]
        self.storage_class = apply(
            f"{name}-class",
            model_store_class_manifest(self.file_system.id),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.mount_targets, *args.class_depends_on]),
        )
        self.class_name: str = MODEL_STORE_CLASS
        self.file_system_id: pulumi.Output[str] = self.file_system.id
        self.register_outputs({"file_system_id": self.file_system_id, "class_name": self.class_name})

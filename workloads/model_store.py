"""The model store: storage every training and serving pod of a namespace shares (ReadWriteMany).

Two backings behind one interface: a directory that every node already mounts (kind), bound as a
static PersistentVolume so pods use a claim and keep PSA ``restricted`` (no hostPath in pods); or a
StorageClass that provisions shared volumes (EFS on EKS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from mlplatform.objects import MANAGED_BY, apply, child_options

from .pod import Mount

__all__ = ["CLAIM_NAME", "ModelStore", "ModelStoreArgs", "model_store_manifests"]

CLAIM_NAME = "model-store"


@dataclass(frozen=True)
class ModelStoreArgs:
    namespace: str
    size: str = "5Gi"
    storage_class: str | None = None  # dynamic provisioning of ReadWriteMany volumes
    node_path: str | None = None  # a directory present on every node (kind extraMounts)

    def __post_init__(self) -> None:
        if (self.storage_class is None) == (self.node_path is None):
            raise ValueError("ModelStoreArgs: give exactly one of storage_class (cloud) or node_path (kind)")


def model_store_manifests(args: ModelStoreArgs) -> list[dict[str, Any]]:
    """The claim, and for a node directory the static volume it binds to (and only it)."""
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": args.size}},
    }
    objects: list[dict[str, Any]] = []
    if args.node_path is not None:
        volume_name = f"model-store-{args.namespace}"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume_name, "labels": dict(MANAGED_BY)},
                "spec": {
                    "capacity": {"storage": args.size},
                    "accessModes": ["ReadWriteMany"],
                    # Models outlive the claim: deleting the stack never deletes trained models.
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "claimRef": {"namespace": args.namespace, "name": CLAIM_NAME},
                    "hostPath": {"path": f"{args.node_path}/{args.namespace}", "type": "Directory"},
                },
            }
        )
        claim_spec.update({"storageClassName": "", "volumeName": volume_name})
    else:
        claim_spec["storageClassName"] = args.storage_class
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM_NAME, "namespace": args.namespace, "labels": dict(MANAGED_BY)},
            "spec": claim_spec,
        }
    )
    return objects


class ModelStore(pulumi.ComponentResource):
    """A ReadWriteMany claim ``model-store`` in one namespace, shared across nodes.

    Guarantees: every pod of the namespace that mounts it sees the same files (the recommender's
    registry relies on atomic renames within it); trained models survive ``pulumi destroy`` of
    the claim (reclaim policy Retain on kind).
    """

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ModelStore", name, None, opts)
        created: list[pulumi.Resource] = []
        for manifest in model_store_manifests(args):
            suffix = "volume" if manifest["kind"] == "PersistentVolume" else "claim"
            created.append(apply(f"{name}-{suffix}", manifest, child_options(opts, self, depends_on=list(created))))
        self.claim = created[-1]
        self.claim_name = pulumi.Output.from_input(CLAIM_NAME)
        self.register_outputs({"claim_name": self.claim_name})

    @staticmethod
    def mount(path: str, *, read_only: bool = False) -> Mount:
        return Mount(name="model-store", path=path, claim=CLAIM_NAME, read_only=read_only)

"""What a cluster that adds nodes on demand tells the rest of the platform (pure, no Pulumi).

On EKS cluster-autoscaler grows the GPU node group when asked through a ProvisioningRequest; Kueue
asks before it admits a GPU workload (an AdmissionCheck), so GPUs exist when a workload is admitted.
kind has a fixed set of nodes and offers nothing (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BEST_EFFORT_ATOMIC_SCALE_UP", "NodeProvisioning"]

# cluster-autoscaler's class that scales node groups up for all pods of a request at once and
# marks it Provisioned when the scale-up succeeded (cluster-autoscaler FAQ, "Supported ProvisioningClasses").
BEST_EFFORT_ATOMIC_SCALE_UP = "best-effort-atomic-scale-up.autoscaling.x-k8s.io"


@dataclass(frozen=True)
class NodeProvisioning:
    """A cluster that provisions nodes for a ProvisioningRequest of ``provisioning_class``.

    ``max_node_provision_minutes``: how long a requested node may take to register before the
    autoscaler gives up on it; anything waiting for such a node must wait at least this long.
    """

    provisioning_class: str = BEST_EFFORT_ATOMIC_SCALE_UP
    max_node_provision_minutes: int = 15

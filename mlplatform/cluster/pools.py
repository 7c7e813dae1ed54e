"""Node pools: the labels and taints that every scheduling decision on the platform keys on.

The cluster components (kind, EKS) create nodes from these; the GPU stack, the Kueue flavors
and the workloads select and tolerate the same values. Keeping them in one pure module is
what makes "taint on GPU nodes <-> toleration and selection everywhere else" true by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import ClusterProvider, PlatformConfig

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "POOL_LABEL",
    "NodePool",
    "Taint",
    "node_pools",
]

GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "mlplatform.io/pool"
# Set on nodes that carry real NVIDIA GPUs (a driver, a device to hand out); the device plugin
# and DCGM exporter select it. Same key the device plugin's own default affinity accepts.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# Set instead on kind nodes whose nvidia.com/gpu capacity is SIMULATED (an extended resource
# patched onto the node status): schedulable, but nothing real to monitor or plug in.
GPU_SIMULATED_LABEL = "mlplatform.io/gpu-simulated"
# cluster-autoscaler's GPU label on AWS (cloudprovider/aws: GPULabel): a new node carrying it counts
# as not ready until it advertises its GPUs, so the autoscaler does not add a second node for pods
# that are only waiting for the device plugin.
AWS_GPU_LABEL = "k8s.amazonaws.com/accelerator"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # Kubernetes spelling: NoSchedule, PreferNoSchedule, NoExecute

    def as_kubelet_flag(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"

    def as_eks(self) -> dict[str, str]:
        eks_effect = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
        return {"key": self.key, "value": self.value, "effect": eks_effect[self.effect]}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


GPU_TAINT = Taint(GPU_RESOURCE, "present", "NoSchedule")


@dataclass(frozen=True)
class NodePool:
    """A group of identical nodes as the scheduler sees them."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...] = ()
    gpus_per_node: int = 0  # nvidia.com/gpu each node advertises (time-slicing multiplies it)
    real_gpus: bool = False  # a driver and devices exist: run the device plugin and DCGM here

    @property
    def selector(self) -> dict[str, str]:
        """The node selector that lands a pod in this pool and nowhere else."""
        return {POOL_LABEL: self.labels[POOL_LABEL]}

    @property
    def tolerations(self) -> list[dict[str, str]]:
        return [t.toleration() for t in self.taints]


def node_pools(config: PlatformConfig) -> tuple[NodePool, NodePool]:
    """The CPU pool and the GPU pool for this stack."""
    cpu = NodePool(name="cpu", labels={POOL_LABEL: "cpu"})
    if config.provider is ClusterProvider.KIND and config.kind.simulate_gpus:
        gpu_labels = {POOL_LABEL: "gpu", GPU_SIMULATED_LABEL: "true"}
        real = False
    else:
        gpu_labels = {POOL_LABEL: "gpu", GPU_PRESENT_LABEL: "true"}
        real = True
    if config.provider is ClusterProvider.EKS:
        gpu_labels[AWS_GPU_LABEL] = "nvidia"
    gpu = NodePool(
        name="gpu",
        labels=gpu_labels,
        taints=(GPU_TAINT,),
        gpus_per_node=config.schedulable_gpus_per_node,
        real_gpus=real,
    )
    return cpu, gpu

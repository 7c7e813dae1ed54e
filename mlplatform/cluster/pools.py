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
    "SIMULATED_POOL_LABEL",
    "NodePool",
    "SimulatedGpus",
    "Taint",
    "node_pools",
    "simulated_gpus",
]

GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "mlplatform.io/pool"
# Set on nodes that carry real NVIDIA GPUs (a driver, a device to hand out); the device plugin
# and DCGM exporter select it. Same key the device plugin's own default affinity accepts.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# Set instead on kind nodes whose GPUs are SIMULATED (fake-gpu-operator): no driver, so the real
# device plugin and DCGM must never land there.
GPU_SIMULATED_LABEL = "mlplatform.io/gpu-simulated"
# fake-gpu-operator puts a node in a simulated pool by this label (its chart's topology.nodePoolLabelKey
# default); the label's value names the pool in the chart's topology.nodePools.
SIMULATED_POOL_LABEL = "run.ai/simulated-gpu-node-pool"
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

    @property
    def selector(self) -> dict[str, str]:
        """The node selector that lands a pod in this pool and nowhere else."""
        return {POOL_LABEL: self.labels[POOL_LABEL]}

    @property
    def tolerations(self) -> list[dict[str, str]]:
        return [t.toleration() for t in self.taints]


@dataclass(frozen=True)
class SimulatedGpus:
    """GPUs that exist only in software: what every node of the GPU pool reports having."""

    model: str  # e.g. NVIDIA-A10G: DCGM's modelName, the node label nvidia.com/gpu.product
    memory_mib: int  # of each GPU
    per_node: int  # devices per node = the nvidia.com/gpu it advertises (GPUs x time-slicing replicas)
    pool: str = "gpu"  # the nodes' SIMULATED_POOL_LABEL value


def simulated_gpus(config: PlatformConfig) -> SimulatedGpus | None:
    """The stack's simulated GPUs, or None where the GPU nodes have real ones."""
    if config.provider is not ClusterProvider.KIND or not config.kind.simulate_gpus:
        return None
    # No time-slicing in the simulator: each replica is simulated as a device of its own, so the node
    # advertises exactly what the NVIDIA device plugin would (GPUs x replicas), which Kueue's quota counts.
    return SimulatedGpus(config.kind.gpu_model, config.kind.gpu_memory_mib, config.schedulable_gpus_per_node)


def node_pools(config: PlatformConfig) -> tuple[NodePool, NodePool]:
    """The CPU pool and the GPU pool for this stack."""
    cpu = NodePool(name="cpu", labels={POOL_LABEL: "cpu"})
    simulated = simulated_gpus(config)
    if simulated is not None:
        gpu_labels = {POOL_LABEL: "gpu", GPU_SIMULATED_LABEL: "true", SIMULATED_POOL_LABEL: simulated.pool}
    else:
        gpu_labels = {POOL_LABEL: "gpu", GPU_PRESENT_LABEL: "true"}
    if config.provider is ClusterProvider.EKS:
        gpu_labels[AWS_GPU_LABEL] = "nvidia"
    gpu = NodePool(
        name="gpu",
        labels=gpu_labels,
        taints=(GPU_TAINT,),
        gpus_per_node=config.schedulable_gpus_per_node,
    )
    return cpu, gpu

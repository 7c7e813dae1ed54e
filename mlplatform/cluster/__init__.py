"""Clusters: kind for local development, EKS for AWS, behind one interface.

``mlplatform`` services and ``workloads`` only see a ``Cluster``: a Kubernetes provider and
the node pools. They never branch on where the cluster runs.
"""

from __future__ import annotations

from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s

from .pools import GPU_RESOURCE, GPU_TAINT, POOL_LABEL, NodePool, SimulatedGpus, Taint, node_pools
from .provisioning import NodeProvisioning

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "POOL_LABEL",
    "Cluster",
    "NodePool",
    "NodeProvisioning",
    "SimulatedGpus",
    "Taint",
    "node_pools",
]


class Cluster(Protocol):
    """What every cluster component offers the platform on top of it."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # secret
    # Changes when the cluster is replaced: anything kept inside the nodes (images loaded into kind)
    # must be put there again.
    identity: pulumi.Output[str]
    provider: k8s.Provider
    # The same cluster, adopting objects that already exist: only for the CRDs the program applies
    # (mlplatform.crds), some of which Helm installed on stacks deployed before.
    crd_provider: k8s.Provider
    cpu_pool: NodePool
    gpu_pool: NodePool
    # The GPUs the GPU pool's nodes simulate (kind): the GPU stack installs a simulated device plugin,
    # DCGM-compatible exporter and nvidia-smi for exactly these. None = real GPUs: the NVIDIA device
    # plugin and DCGM exporter.
    simulated_gpus: SimulatedGpus | None
    # Resources that must exist before workloads are scheduled (e.g. a CRD the cluster serves).
    ready: list[pulumi.Resource]
    # StorageClass that provisions the ReadWriteMany model store; None = the cluster offers a
    # host directory shared by every node instead (kind), exposed as a static PersistentVolume.
    model_store_class: str | None
    # Registry repository the recommender image is pushed to; None = images are loaded straight
    # into the nodes (kind load), no registry involved.
    image_repository: pulumi.Output[str] | None
    # Extra environment for pushing there (e.g. the AWS profile the provider uses).
    image_push_environment: dict[str, str]
    # How the cluster adds GPU nodes when asked (EKS: cluster-autoscaler and ProvisioningRequests,
    # whose CRD is then among ``ready``); None = a fixed set of nodes (kind).
    node_provisioning: NodeProvisioning | None

    def wait_for_gpus(
        self, name: str, *, timeout_seconds: int = 600, opts: pulumi.ResourceOptions | None = None
    ) -> pulumi.Resource | None:
        """A step that succeeds once every GPU node advertises its ``nvidia.com/gpu`` (give it the GPU
        stack in ``opts.depends_on``), where a fixed set of GPU nodes exists; None otherwise."""
        ...

"""Every pinned version the platform installs, in one place.

Bumping a chart or image is a one-line change here; tests check the Helm values we set
against the upstream chart of exactly these versions (../shared/upstream).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLUSTER_AUTOSCALER",
    "CLUSTER_AUTOSCALER_IMAGE",
    "DCGM_EXPORTER",
    "FAKE_GPU_OPERATOR",
    "FAKE_GPU_OPERATOR_IMAGES",
    "JOBSET",
    "JOBSET_IMAGE",
    "KIND_NODE_IMAGE",
    "KUBERNETES_VERSION",
    "KUEUE",
    "KUEUE_IMAGE",
    "METRICS_SERVER",
    "NVIDIA_DEVICE_PLUGIN",
    "PSA_VERSION",
    "Chart",
]


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to one version, from a classic repository or an OCI registry."""

    name: str
    version: str
    repo: str | None = None  # None when ``name`` is a full ``oci://`` reference


# Kubernetes minor version of the dev cluster, the EKS default, and the schemas tests validate against.
KUBERNETES_VERSION = "1.34"
# Pod Security Admission policy version pinned on ML namespaces (never "latest": a cluster upgrade
# must not tighten admission under running workloads without a reviewed change).
PSA_VERSION = "v1.34"
# kind v0.30.0 release notes: the node image for Kubernetes v1.34.0, pinned by digest.
KIND_NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
KIND_VERSION = "v0.30.0"

NVIDIA_DEVICE_PLUGIN = Chart(
    name="nvidia-device-plugin", version="0.20.0", repo="https://nvidia.github.io/k8s-device-plugin"
)
NVIDIA_DEVICE_PLUGIN_IMAGE = ("nvcr.io/nvidia/k8s-device-plugin", "v0.20.0")

DCGM_EXPORTER = Chart(name="dcgm-exporter", version="4.8.2", repo="https://nvidia.github.io/dcgm-exporter/helm-charts")
DCGM_EXPORTER_IMAGE = ("nvcr.io/nvidia/k8s/dcgm-exporter", "4.5.3-4.8.2-distroless")

# Simulated GPUs (kind with kindSimulateGpus): run-ai/fake-gpu-operator, MIT. Its CI publishes the chart
# and every component image for tag v0.2.0 as version/tag 0.2.0; the chart in git says 0.0.1 and
# leaves image tags empty ("replaced during CD"), so pin the chart AND each image's tag here.
FAKE_GPU_OPERATOR = Chart(name="oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator", version="0.2.0")
FAKE_GPU_OPERATOR_IMAGES: dict[str, tuple[str, str]] = {
    component: (f"ghcr.io/run-ai/fake-gpu-operator/{component}", "0.2.0")
    for component in ("device-plugin", "status-updater", "status-exporter", "topology-server")
}
# The status exporter's init container (chmod of its host directory): the chart's own default tag.
FAKE_GPU_OPERATOR_INIT_IMAGE = ("ubuntu", "24.04")

KUEUE = Chart(name="oci://registry.k8s.io/kueue/charts/kueue", version="0.19.2")
# The chart in git carries staging image values; the published chart rewrites them. Pin ours explicitly.
KUEUE_IMAGE = ("registry.k8s.io/kueue/kueue", "v0.19.2")

METRICS_SERVER = Chart(
    name="metrics-server", version="3.13.0", repo="https://kubernetes-sigs.github.io/metrics-server/"
)

# EKS only. Its minor must match the cluster's (1.34): chart 9.53.0 is the newest with appVersion
# 1.34.x, and the image is that appVersion. The ProvisioningRequest CRD it serves is installed by the
# program (mlplatform/cluster/crds), identical from 1.34.2 to 1.34.5.
CLUSTER_AUTOSCALER = Chart(name="cluster-autoscaler", version="9.53.0", repo="https://kubernetes.github.io/autoscaler")
CLUSTER_AUTOSCALER_IMAGE = ("registry.k8s.io/autoscaling/cluster-autoscaler", "v1.34.2")

# The JobSet version Kueue 0.19.2 is built against (its go.mod). The chart in git carries staging
# image values; the published OCI chart rewrites them. Pin ours explicitly.
JOBSET = Chart(name="oci://registry.k8s.io/jobset/charts/jobset", version="0.12.0")
JOBSET_IMAGE = ("registry.k8s.io/jobset/jobset", "v0.12.0")

"""Every pinned version the platform installs, in one place, and where each chart keeps its CRDs.

Bumping a chart or image is a one-line change in ``CURRENT``; tests check the Helm values we set
against the upstream chart of exactly these versions (tests/fixtures/upstream), and
``python -m mlplatform.upgrade_plan --from <ref>`` shows what a bump changes (docs/upgrades.md).

``PREVIOUS`` pins the release before: ``ml-platform:componentVersions previous`` deploys it, so an
``up`` at ``previous`` and then at ``current`` exercises a real upgrade, CRDs included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "COMPONENT_VERSIONS",
    "CURRENT",
    "FAKE_GPU_OPERATOR_INIT_IMAGE",
    "KIND_NODE_IMAGE",
    "KUBERNETES_VERSION",
    "PREVIOUS",
    "PSA_VERSION",
    "Chart",
    "ComponentVersions",
    "CrdLocation",
    "CrdUpkeep",
    "Crds",
]


class CrdLocation(StrEnum):
    """Where a chart keeps its CustomResourceDefinitions."""

    TEMPLATES = "templated"  # chart templates: ordinary release objects, Helm upgrades them
    CRDS_DIR = "crds/"  # a crds/ directory (the chart's or a subchart's): Helm installs once, never upgrades
    NONE = "none"


class CrdUpkeep(StrEnum):
    """Who keeps a chart's CRDs at the pinned version."""

    HELM = "the Helm release"
    # mlplatform/crds/<bundle>: the chart's pinned CRD files, applied server-side before the release
    PROGRAM = "the program"
    # The release installs none (Helm's skip_crds): the platform uses none of them, and Helm would
    # install them once and leave them behind on uninstall.
    SKIPPED = "nobody: the release installs none"
    NONE = "nothing to keep"


@dataclass(frozen=True)
class Crds:
    """A chart's CRDs: where they are, who keeps them current, and how the release is told to leave them.

    ``bundle``: the directory under ``mlplatform/crds`` holding this version's CRD files (only when
    the program applies them). ``release_values``: values that stop the chart installing them itself
    (the release also gets Helm's ``skip_crds``).
    """

    location: CrdLocation
    upkeep: CrdUpkeep
    path: str = ""  # where in the chart, for a reader
    bundle: str | None = None
    release_values: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if (self.upkeep is CrdUpkeep.PROGRAM) != (self.bundle is not None):
            raise ValueError(f"CRDs at {self.path or self.location}: a bundle exactly when the program applies them")


NO_CRDS = Crds(CrdLocation.NONE, CrdUpkeep.NONE)


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to one version, from a classic repository or an OCI registry, and its CRDs."""

    name: str
    version: str
    repo: str | None = None  # None when ``name`` is a full ``oci://`` reference
    crds: Crds = NO_CRDS

    @property
    def short_name(self) -> str:
        """The chart's own name (``kueue`` for ``oci://registry.k8s.io/kueue/charts/kueue``)."""
        return self.name.rstrip("/").rsplit("/", 1)[-1]


Image = tuple[str, str]  # (repository, tag)


@dataclass(frozen=True)
class ComponentVersions:
    """One consistent set of pins: every chart and image the platform installs."""

    name: str
    nvidia_device_plugin: Chart
    nvidia_device_plugin_image: Image
    dcgm_exporter: Chart
    dcgm_exporter_image: Image
    kueue: Chart
    kueue_image: Image
    metrics_server: Chart
    cluster_autoscaler: Chart  # EKS only
    cluster_autoscaler_image: Image
    jobset: Chart
    jobset_image: Image
    # dev with kindSimulateGpus (instead of the two NVIDIA charts). Its CI publishes every component
    # image with the chart's version as tag: fake_gpu_operator_image() derives them.
    fake_gpu_operator: Chart
    kube_prometheus_stack: Chart  # with ml-platform:monitoring
    prometheus_adapter: Chart

    def fake_gpu_operator_image(self, component: str) -> Image:
        """The simulator's ``component`` image (device-plugin, status-exporter, ...) of the pinned chart."""
        return (f"ghcr.io/run-ai/fake-gpu-operator/{component}", self.fake_gpu_operator.version)

    def charts(self) -> dict[str, Chart]:
        """Field name -> chart, for every chart of this set."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Chart)
        }


# Kubernetes minor version of the dev cluster, the EKS default, and the schemas tests validate against.
KUBERNETES_VERSION = "1.34"
# Pod Security Admission policy version pinned on ML namespaces (never "latest": a cluster upgrade
# must not tighten admission under running workloads without a reviewed change).
PSA_VERSION = "v1.34"
# kind v0.30.0 release notes: the node image for Kubernetes v1.34.0, pinned by digest.
KIND_NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
KIND_VERSION = "v0.30.0"

PROMETHEUS_COMMUNITY_REPO = "https://prometheus-community.github.io/helm-charts"
# Kueue's CRDs are templates (charts/kueue/templates/crd/, conversion webhook pointing at the
# release's Service): Helm upgrades them with the release. A templated CRD that a newer chart drops
# is deleted by Helm with every object of it: upgrade_plan flags a dropped CRD.
KUEUE_CRDS = Crds(CrdLocation.TEMPLATES, CrdUpkeep.HELM, path="templates/crd/")


def _jobset_crds(bundle: str) -> Crds:
    # charts/jobset/crds/: Helm would never upgrade them. The chart has no value to leave them out:
    # the release gets skip_crds.
    return Crds(CrdLocation.CRDS_DIR, CrdUpkeep.PROGRAM, path="crds/", bundle=bundle)


def _kube_prometheus_stack_crds(bundle: str) -> Crds:
    # The `crds` subchart (condition crds.enabled) holds the prometheus-operator CRDs in its crds/
    # directory and, off by default, a pre-upgrade hook Job applying files/crds.bz2. The program
    # applies that same crds.bz2 itself; crds.enabled false drops the subchart (its crds/ and its hook).
    return Crds(
        CrdLocation.CRDS_DIR,
        CrdUpkeep.PROGRAM,
        path="charts/crds/crds/ (also charts/crds/files/crds.bz2)",
        bundle=bundle,
        release_values={"crds": {"enabled": False}},
    )


CURRENT = ComponentVersions(
    name="current",
    nvidia_device_plugin=Chart(
        name="nvidia-device-plugin", version="0.20.0", repo="https://nvidia.github.io/k8s-device-plugin"
    ),
    nvidia_device_plugin_image=("nvcr.io/nvidia/k8s-device-plugin", "v0.20.0"),
    dcgm_exporter=Chart(
        name="dcgm-exporter", version="4.8.2", repo="https://nvidia.github.io/dcgm-exporter/helm-charts"
    ),
    dcgm_exporter_image=("nvcr.io/nvidia/k8s/dcgm-exporter", "4.5.3-4.8.2-distroless"),
    kueue=Chart(name="oci://registry.k8s.io/kueue/charts/kueue", version="0.19.2", crds=KUEUE_CRDS),
    # The chart in git carries staging image values; the published chart rewrites them. Pin ours explicitly.
    kueue_image=("registry.k8s.io/kueue/kueue", "v0.19.2"),
    metrics_server=Chart(
        name="metrics-server", version="3.13.0", repo="https://kubernetes-sigs.github.io/metrics-server/"
    ),
    # EKS only. Its minor must match the cluster's (1.34): chart 9.53.0 is the newest with appVersion
    # 1.34.x, and the image is that appVersion. The chart has no CRDs; the ProvisioningRequest CRD it
    # serves is applied by the program (mlplatform/cluster/crds), identical from 1.34.2 to 1.34.5.
    cluster_autoscaler=Chart(
        name="cluster-autoscaler", version="9.53.0", repo="https://kubernetes.github.io/autoscaler"
    ),
    cluster_autoscaler_image=("registry.k8s.io/autoscaling/cluster-autoscaler", "v1.34.2"),
    # The JobSet version Kueue 0.19.2 is built against (its go.mod). The chart in git carries staging
    # image values; the published OCI chart rewrites them. Pin ours explicitly.
    jobset=Chart(
        name="oci://registry.k8s.io/jobset/charts/jobset", version="0.12.0", crds=_jobset_crds("jobset-v0.12.0")
    ),
    jobset_image=("registry.k8s.io/jobset/jobset", "v0.12.0"),
    # Simulated GPUs: run-ai/fake-gpu-operator, MIT. Its CI publishes the chart and every component
    # image for tag v0.2.0 as version/tag 0.2.0; the chart in git says 0.0.1 and leaves image tags
    # empty ("replaced during CD"), so the chart AND each image's tag are pinned. Its crds/ hold the
    # GPU Operator's ClusterPolicy and DRA ComputeDomain: only its mock and DRA modes use them.
    fake_gpu_operator=Chart(
        name="oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator",
        version="0.2.0",
        crds=Crds(CrdLocation.CRDS_DIR, CrdUpkeep.SKIPPED, path="crds/"),
    ),
    # Release tags of prometheus-community/helm-charts: kube-prometheus-stack-87.15.1 (July 2026,
    # prometheus-operator v0.92.1), prometheus-adapter-5.3.0 (February 2026).
    kube_prometheus_stack=Chart(
        name="kube-prometheus-stack",
        version="87.15.1",
        repo=PROMETHEUS_COMMUNITY_REPO,
        crds=_kube_prometheus_stack_crds("kube-prometheus-stack-87.15.1"),
    ),
    prometheus_adapter=Chart(name="prometheus-adapter", version="5.3.0", repo=PROMETHEUS_COMMUNITY_REPO),
)

# The release before, for the upgrade path (docs/upgrades.md): the previous release of every chart
# whose CRDs change between releases. Kueue 0.18.6 (the last 0.18, built against the same JobSet
# v0.12.0; its Workload and MultiKueueConfig CRDs differ from 0.19.2's) and kube-prometheus-stack
# 86.3.2 (the last 86.x, prometheus-operator v0.91.0: all ten CRDs differ). The other charts keep
# their pins: none of them has CRDs, and JobSet 0.12.0 is what both Kueue releases are built against.
PREVIOUS = dataclasses.replace(
    CURRENT,
    name="previous",
    kueue=dataclasses.replace(CURRENT.kueue, version="0.18.6"),
    kueue_image=("registry.k8s.io/kueue/kueue", "v0.18.6"),
    kube_prometheus_stack=dataclasses.replace(
        CURRENT.kube_prometheus_stack,
        version="86.3.2",
        crds=_kube_prometheus_stack_crds("kube-prometheus-stack-86.3.2"),
    ),
)

# ml-platform:componentVersions -> the pins it deploys.
COMPONENT_VERSIONS: dict[str, ComponentVersions] = {table.name: table for table in (CURRENT, PREVIOUS)}

# The simulator's status-exporter init container (chmod of its host directory): the chart's own default tag.
FAKE_GPU_OPERATOR_INIT_IMAGE = ("ubuntu", "24.04")

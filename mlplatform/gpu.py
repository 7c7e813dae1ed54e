"""The GPU stack on the GPU nodes: the NVIDIA device plugin and DCGM exporter where GPUs are real,
a simulated device plugin, DCGM-compatible exporter and ``nvidia-smi`` where they are not (kind).

The cluster says which (``Cluster.simulated_gpus``); either way a GPU pod gets ``nvidia.com/gpu``
from a device plugin, and Prometheus reads the same ``DCGM_FI_DEV_*`` series from port 9400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from . import versions
from .cluster.pools import GPU_PRESENT_LABEL, GPU_RESOURCE, SIMULATED_POOL_LABEL, NodePool, SimulatedGpus
from .helm import release
from .monitoring.scrape import service_monitor
from .objects import apply, child_options, namespace_manifest

__all__ = [
    "GPU_NAMESPACE",
    "SIMULATED_GPU_NAMESPACE",
    "GpuMetrics",
    "GpuStack",
    "GpuStackArgs",
    "dcgm_exporter_values",
    "device_plugin_values",
    "simulated_gpu_values",
]

GPU_NAMESPACE = "gpu-system"
# The simulated stack's own namespace: its nvidia-smi asks http://topology-server.gpu-operator for the
# node's GPUs (cmd/nvidia-smi at v0.2.0), so any other namespace leaves nvidia-smi without devices.
SIMULATED_GPU_NAMESPACE = "gpu-operator"
DCGM_METRICS_PORT = 9400
# What the fake-gpu-operator chart (v0.2.0, templates/status-exporter) names its exporter: the
# DaemonSet's pod labels and the Service's port, which the ServiceMonitor and NetworkPolicy select.
SIMULATED_EXPORTER_POD_LABELS = {"app": "nvidia-dcgm-exporter", "component": "status-exporter"}
SIMULATED_EXPORTER_SERVICE = "nvidia-dcgm-exporter"
SIMULATED_EXPORTER_PORT_NAME = "gpu-metrics"


def real_gpu_selector(pool: NodePool) -> dict[str, str]:
    """Nodes of the GPU pool that carry real GPUs (registered with ``nvidia.com/gpu.present``).
    Where GPUs are simulated the real stack is not installed at all, and kind's simulated GPU
    workers do not register with that label (the simulator adds it later, for its own use)."""
    return {**pool.selector, GPU_PRESENT_LABEL: "true"}


def time_slicing_config(replicas: int) -> str:
    """The device plugin's config file sharing each GPU between ``replicas`` pods."""
    doc = {
        "version": "v1",
        "sharing": {"timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": replicas}]}},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def device_plugin_values(
    pool: NodePool, *, time_slicing_replicas: int = 1, pins: versions.ComponentVersions = versions.CURRENT
) -> dict[str, Any]:
    repository, tag = pins.nvidia_device_plugin_image
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        "nodeSelector": real_gpu_selector(pool),
        "tolerations": [*pool.tolerations, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
    }
    if time_slicing_replicas > 1:
        values["config"] = {"map": {"default": time_slicing_config(time_slicing_replicas)}, "default": "default"}
    return values


def dcgm_exporter_values(
    pool: NodePool,
    *,
    service_monitor: bool,
    service_monitor_labels: Mapping[str, str] | None = None,
    pins: versions.ComponentVersions = versions.CURRENT,
) -> dict[str, Any]:
    repository, tag = pins.dcgm_exporter_image
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        "nodeSelector": real_gpu_selector(pool),
        # The chart tolerates only the control plane by default: it would never reach a GPU node.
        "tolerations": pool.tolerations,
        # Rendered without checking for the CRD: only with the Prometheus operator installed.
        "serviceMonitor": {"enabled": service_monitor},
    }
    if service_monitor and service_monitor_labels:
        values["serviceMonitor"]["additionalLabels"] = dict(service_monitor_labels)
    return values


def _pinned(component: str, pins: versions.ComponentVersions) -> dict[str, str]:
    repository, tag = pins.fake_gpu_operator_image(component)
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def simulated_gpu_values(gpus: SimulatedGpus, pins: versions.ComponentVersions = versions.CURRENT) -> dict[str, Any]:
    """fake-gpu-operator's values: its device plugin advertises ``gpus.per_node`` GPUs on every node
    labelled ``run.ai/simulated-gpu-node-pool=<gpus.pool>``, its status exporter serves them as DCGM
    series, and nothing else of the chart runs that dev does not use (no KWOK, MIG or DRA parts, no GPU
    profiles; no RuntimeClass: nothing here selects one)."""
    repository, tag = versions.FAKE_GPU_OPERATOR_INIT_IMAGE
    return {
        "devicePlugin": {"image": _pinned("device-plugin", pins)},
        "statusUpdater": {
            "image": _pinned("status-updater", pins),
            # Only Run:ai's reservation pods are patched (handlers/pod/gpu_reservation_pod_handler.go):
            # no cluster-wide right to patch pods.
            "podPatchRbac": {"enabled": False},
        },
        "topologyServer": {"image": _pinned("topology-server", pins)},
        "statusExporter": {
            "image": _pinned("status-exporter", pins),
            # The chart always runs a second exporter for KWOK nodes (there are none): reserve little for it.
            "kwok": {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}},
        },
        "ubuntu": {"image": {"repository": repository, "tag": tag}},
        "kwokGpuDevicePlugin": {"enabled": False},
        "migFaker": {"enabled": False},
        "runtimeClass": {"enabled": False},
        # GPU profiles (ConfigMaps) serve pools that name one; ours states its GPUs itself.
        "builtinProfiles": {"enabled": False},
        "topology": {
            "nodePoolLabelKey": SIMULATED_POOL_LABEL,
            # One pool: the GPU pool's nodes, all alike. gpuCount is what each node advertises. Helm
            # merges maps into the chart's defaults: null drops its example pool "default".
            "nodePools": {
                "default": None,
                gpus.pool: {"gpuProduct": gpus.model, "gpuCount": gpus.per_node, "gpuMemory": gpus.memory_mib},
            },
        },
    }


@dataclass(frozen=True)
class GpuMetrics:
    """Where the GPU series are served: the exporter pods of ``namespace`` matching ``pod_labels``."""

    namespace: str
    pod_labels: Mapping[str, str]
    port: int = DCGM_METRICS_PORT


@dataclass(frozen=True)
class GpuStackArgs:
    gpu_pool: NodePool
    # The GPUs the pool's nodes simulate (the cluster's ``simulated_gpus``); None = real GPUs.
    simulated: SimulatedGpus | None = None
    time_slicing_replicas: int = 1  # pods per physical GPU; 1 = no sharing
    service_monitor: bool = False  # only with the Prometheus operator's CRDs installed
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    pins: versions.ComponentVersions = versions.CURRENT  # the chart and image versions
    device_plugin_overrides: Mapping[str, Any] = field(default_factory=dict)
    dcgm_overrides: Mapping[str, Any] = field(default_factory=dict)
    simulator_overrides: Mapping[str, Any] = field(default_factory=dict)


class GpuStack(pulumi.ComponentResource):
    """The GPU nodes' device plugin and metrics exporter in their own PSA-``privileged`` namespace.

    Real GPUs: the NVIDIA device plugin and DCGM exporter in ``gpu-system``, selecting only GPU-pool
    nodes with real GPUs. Simulated GPUs: fake-gpu-operator in ``gpu-operator``, advertising exactly
    the GPUs Kueue's quota counts and serving DCGM's series names. Guarantees: the namespace holds
    nothing else (host-path mounts stay out of ML namespaces); every DaemonSet tolerates the GPU taint;
    the exporter's ServiceMonitor exists only when asked for (the CRD must be installed); ``metrics``
    says where the GPU series are served, for the NetworkPolicy that admits Prometheus.
    """

    def __init__(self, name: str, args: GpuStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:gpu:GpuStack", name, None, opts)
        namespace = GPU_NAMESPACE if args.simulated is None else SIMULATED_GPU_NAMESPACE
        self.namespace = apply(
            f"{name}-namespace",
            namespace_manifest(namespace, "privileged", versions.PSA_VERSION),
            child_options(opts, self),
        )
        in_ns = child_options(opts, self, depends_on=[self.namespace])
        if args.simulated is None:
            self.releases: list[pulumi.Resource] = self._real(args, in_ns)
            self.metrics = GpuMetrics(namespace, {"app.kubernetes.io/name": "dcgm-exporter"})
        else:
            self.releases = self._simulated(name, args, args.simulated, in_ns)
            self.metrics = GpuMetrics(namespace, SIMULATED_EXPORTER_POD_LABELS)
        self.namespace_name = pulumi.Output.from_input(namespace)
        self.register_outputs({"namespace_name": self.namespace_name})

    @staticmethod
    def _real(args: GpuStackArgs, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        device_plugin = release(
            "nvidia-device-plugin",
            args.pins.nvidia_device_plugin,
            namespace=GPU_NAMESPACE,
            values=device_plugin_values(
                args.gpu_pool, time_slicing_replicas=args.time_slicing_replicas, pins=args.pins
            ),
            values_overrides=args.device_plugin_overrides,
            opts=opts,
        )
        dcgm_exporter = release(
            "dcgm-exporter",
            args.pins.dcgm_exporter,
            namespace=GPU_NAMESPACE,
            values=dcgm_exporter_values(
                args.gpu_pool,
                service_monitor=args.service_monitor,
                service_monitor_labels=args.service_monitor_labels,
                pins=args.pins,
            ),
            values_overrides=args.dcgm_overrides,
            opts=opts,
        )
        return [device_plugin, dcgm_exporter]

    @staticmethod
    def _simulated(
        name: str, args: GpuStackArgs, gpus: SimulatedGpus, opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        simulator = release(
            "fake-gpu-operator",
            args.pins.fake_gpu_operator,
            namespace=SIMULATED_GPU_NAMESPACE,
            values=simulated_gpu_values(gpus, args.pins),
            values_overrides=args.simulator_overrides,
            opts=opts,
        )
        if args.service_monitor:
            # The chart ships a Service but no ServiceMonitor: the same scrape the DCGM chart renders on
            # real GPUs (honorLabels false: the GPU's pod arrives as exported_pod, as there).
            monitor = service_monitor(
                SIMULATED_GPU_NAMESPACE,
                SIMULATED_EXPORTER_SERVICE,
                selector={"app": SIMULATED_EXPORTER_POD_LABELS["app"]},
                port_name=SIMULATED_EXPORTER_PORT_NAME,
            )
            monitor["metadata"]["labels"].update(args.service_monitor_labels)
            apply(
                f"{name}-exporter-monitor",
                monitor,
                pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[simulator])),
            )
        return [simulator]

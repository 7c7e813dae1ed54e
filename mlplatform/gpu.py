"""The NVIDIA device plugin and the DCGM exporter, on GPU nodes only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from . import versions
from .cluster.pools import GPU_PRESENT_LABEL, GPU_RESOURCE, NodePool
from .helm import release
from .objects import apply, child_options, namespace_manifest

__all__ = ["GPU_NAMESPACE", "GpuStack", "GpuStackArgs", "dcgm_exporter_values", "device_plugin_values"]

GPU_NAMESPACE = "gpu-system"
DCGM_METRICS_PORT = 9400


def real_gpu_selector(pool: NodePool) -> dict[str, str]:
    """Nodes of the GPU pool that carry real GPUs. Simulated-GPU nodes lack the
    ``nvidia.com/gpu.present`` label, so the device plugin (which would crash there
    without a driver) and DCGM never land on them."""
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


@dataclass(frozen=True)
class GpuStackArgs:
    gpu_pool: NodePool
    time_slicing_replicas: int = 1  # pods per physical GPU; 1 = no sharing
    service_monitor: bool = False  # only with the Prometheus operator's CRDs installed
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    pins: versions.ComponentVersions = versions.CURRENT  # the chart and image versions
    device_plugin_overrides: Mapping[str, Any] = field(default_factory=dict)
    dcgm_overrides: Mapping[str, Any] = field(default_factory=dict)


class GpuStack(pulumi.ComponentResource):
    """NVIDIA device plugin + DCGM exporter in their own PSA-``privileged`` namespace.

    Guarantees: the namespace holds nothing else (host-path mounts stay out of ML namespaces);
    both DaemonSets tolerate the GPU taint and select only GPU-pool nodes with real GPUs;
    DCGM's ServiceMonitor exists only when asked for (the CRD must be installed).
    """

    def __init__(self, name: str, args: GpuStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:gpu:GpuStack", name, None, opts)
        child = child_options(opts, self)
        self.namespace = apply(
            f"{name}-namespace",
            namespace_manifest(GPU_NAMESPACE, "privileged", versions.PSA_VERSION),
            child,
        )
        in_ns = child_options(opts, self, depends_on=[self.namespace])
        self.device_plugin = release(
            "nvidia-device-plugin",
            args.pins.nvidia_device_plugin,
            namespace=GPU_NAMESPACE,
            values=device_plugin_values(
                args.gpu_pool, time_slicing_replicas=args.time_slicing_replicas, pins=args.pins
            ),
            values_overrides=args.device_plugin_overrides,
            opts=in_ns,
        )
        self.dcgm_exporter = release(
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
            opts=in_ns,
        )
        self.namespace_name = pulumi.Output.from_input(GPU_NAMESPACE)
        self.register_outputs({"namespace_name": self.namespace_name})

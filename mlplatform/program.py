"""The platform: a cluster, the shared platform services and the teams' namespaces.

It knows nothing of the apps that run on it (``workloads/``, ``recommender/``): the composition
root (``stack.py``, run by ``__main__.py``) deploys the platform, then hands it to the apps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from .cluster import Cluster
from .config import ClusterProvider, PlatformConfig
from .gpu import GpuStack, GpuStackArgs
from .jobset import JobSetController
from .kueue import Kueue, KueueArgs
from .metrics_server import MetricsServer
from .tenancy import MlNamespace, MlNamespaceArgs

__all__ = ["Platform", "deploy", "on_cluster"]


@dataclass
class Platform:
    """Handles to what the program created, for workloads and tests."""

    config: PlatformConfig
    cluster: Cluster
    gpu: GpuStack
    kueue: Kueue
    jobset: JobSetController
    metrics_server: MetricsServer
    namespaces: dict[str, MlNamespace]
    monitoring: Any = None  # mlplatform.monitoring.Monitoring when config.monitoring
    # On kind: the step that waits until the GPU nodes advertise the nvidia.com/gpu the quota counts.
    gpus_advertised: pulumi.Resource | None = None

    def k8s_opts(self) -> pulumi.ResourceOptions:
        """Options for an app's objects: the cluster's provider, once the cluster (and the GPU
        capacity of a fixed set of GPU nodes) is usable."""
        opts = on_cluster(self.cluster)
        if self.gpus_advertised is not None:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[self.gpus_advertised]))
        return opts


def on_cluster(cluster: Cluster) -> pulumi.ResourceOptions:
    """Options for anything that talks to the cluster: its provider, after it is usable."""
    return pulumi.ResourceOptions(providers=[cluster.provider], depends_on=list(cluster.ready))


def create_cluster(config: PlatformConfig) -> Cluster:
    if config.provider is ClusterProvider.EKS:
        from .cluster.eks import EksCluster

        return EksCluster(config.cluster_name, config)
    from .cluster.kind import KindCluster

    return KindCluster(config.cluster_name, config)


def deploy(config: PlatformConfig, *, adapter_rules: Sequence[Mapping[str, Any]] = ()) -> Platform:
    """Register the platform described by ``config``; ``adapter_rules`` are the custom metrics the
    apps scale on (served by prometheus-adapter when monitoring is on)."""
    cluster = create_cluster(config)
    cluster_opts = on_cluster(cluster)
    monitoring = None
    after_monitoring = cluster_opts
    if config.monitoring:
        from .monitoring import Monitoring, MonitoringArgs

        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs.for_platform(config, cluster, adapter_rules=adapter_rules),
            crd_provider=cluster.crd_provider,
            opts=cluster_opts,
        )
        # ServiceMonitors are rendered without checking for their CRD: install the operator first. Its
        # release, not all of `monitoring`: the apps' scrape objects are its children too, and they wait
        # for the GPU capacity, which waits for the GPU stack (a cycle).
        after_monitoring = pulumi.ResourceOptions.merge(
            cluster_opts, pulumi.ResourceOptions(depends_on=[monitoring.stack])
        )
    gpu = GpuStack(
        "gpu",
        GpuStackArgs(
            gpu_pool=cluster.gpu_pool,
            simulated=cluster.simulated_gpus,
            time_slicing_replicas=config.gpu_time_slicing_replicas,
            service_monitor=monitoring is not None,
            service_monitor_labels=monitoring.service_monitor_labels if monitoring else {},
            pins=config.versions,
        ),
        opts=after_monitoring,
    )
    if monitoring is not None:
        # The GPU exporter's port accepts Prometheus and nothing else. Parented to the GPU stack: as a
        # child of `monitoring` it would wait on the GPU stack, which waits on all of `monitoring` (a deadlock).
        monitoring.admit_prometheus(
            "dcgm",
            namespace=gpu.metrics.namespace,
            pod_labels=gpu.metrics.pod_labels,
            port=gpu.metrics.port,
            opts=pulumi.ResourceOptions(parent=gpu, depends_on=[gpu.namespace]),
        )
        pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    # Kueue manages JobSets only if their API exists when it starts: install JobSet first.
    jobset = JobSetController("jobset", crd_provider=cluster.crd_provider, pins=config.versions, opts=cluster_opts)
    kueue = Kueue(
        "kueue",
        KueueArgs(
            gpu_pool=cluster.gpu_pool,
            teams=config.teams,
            pools=config.pools,
            node_provisioning=cluster.node_provisioning,
            prometheus=monitoring is not None,
            pins=config.versions,
        ),
        opts=pulumi.ResourceOptions.merge(after_monitoring, pulumi.ResourceOptions(depends_on=[jobset])),
    )
    metrics = MetricsServer(
        "metrics-server",
        insecure_kubelet_tls=config.provider is ClusterProvider.KIND,
        pins=config.versions,
        opts=cluster_opts,
    )
    namespaces = {
        team.name: MlNamespace(
            team.name,
            MlNamespaceArgs(team=team),
            # Queued Jobs name a priority class: it must exist before anything can queue.
            queue_depends_on=[kueue.release, kueue.cluster_queues[team.name], *kueue.priority_classes],
            opts=cluster_opts,
        )
        for team in config.teams
    }
    # Helm's --wait passes a crash-looping device plugin on a one-node GPU pool: wait for capacity
    # (real or simulated, a device plugin advertises it).
    gpus_advertised = cluster.wait_for_gpus(
        f"{config.cluster_name}-gpus-advertised", opts=pulumi.ResourceOptions(depends_on=[gpu])
    )
    platform = Platform(
        config, cluster, gpu, kueue, jobset, metrics, namespaces, monitoring=monitoring, gpus_advertised=gpus_advertised
    )
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("mlNamespaces", [t.name for t in config.teams])
    pulumi.export("clusterQueues", kueue.cluster_queue_names)
    return platform

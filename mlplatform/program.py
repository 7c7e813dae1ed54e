"""The whole stack: a cluster, the shared platform services, the teams, and their workloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from .cluster import Cluster
from .config import ClusterProvider, PlatformConfig, load_config
from .gpu import DCGM_METRICS_PORT, GPU_NAMESPACE, GpuStack, GpuStackArgs
from .kueue import Kueue, KueueArgs
from .metrics_server import MetricsServer
from .tenancy import MlNamespace, MlNamespaceArgs

__all__ = ["Platform", "build_platform", "deploy"]


@dataclass
class Platform:
    """Handles to what the program created, for workloads and tests."""

    config: PlatformConfig
    cluster: Cluster
    gpu: GpuStack
    kueue: Kueue
    metrics_server: MetricsServer
    namespaces: dict[str, MlNamespace]
    monitoring: Any = None  # mlplatform.monitoring.Monitoring when config.monitoring
    apps: dict[str, Any] = field(default_factory=dict)

    def k8s_opts(self) -> pulumi.ResourceOptions:
        return on_cluster(self.cluster)


def on_cluster(cluster: Cluster) -> pulumi.ResourceOptions:
    """Options for anything that talks to the cluster: its provider, after it is usable."""
    return pulumi.ResourceOptions(providers=[cluster.provider], depends_on=list(cluster.ready))


def create_cluster(config: PlatformConfig) -> Cluster:
    if config.provider is ClusterProvider.EKS:
        from .cluster.eks import EksCluster

        return EksCluster(config.cluster_name, config)
    from .cluster.kind import KindCluster

    return KindCluster(config.cluster_name, config)


def deploy(config: PlatformConfig) -> Platform:
    """Register every resource of the stack described by ``config``."""
    cluster = create_cluster(config)
    cluster_opts = on_cluster(cluster)
    monitoring = None
    after_monitoring = cluster_opts
    if config.monitoring:
        from .monitoring import Monitoring, MonitoringArgs

        monitoring = Monitoring("monitoring", MonitoringArgs.for_platform(config, cluster), opts=cluster_opts)
        # ServiceMonitors are rendered without checking for their CRD: install the operator first.
        after_monitoring = pulumi.ResourceOptions.merge(cluster_opts, pulumi.ResourceOptions(depends_on=[monitoring]))
    gpu = GpuStack(
        "gpu",
        GpuStackArgs(
            gpu_pool=cluster.gpu_pool,
            time_slicing_replicas=config.gpu_time_slicing_replicas,
            service_monitor=monitoring is not None,
            service_monitor_labels=monitoring.service_monitor_labels if monitoring else {},
        ),
        opts=after_monitoring,
    )
    if monitoring is not None:
        # DCGM's port accepts Prometheus and nothing else. Parented to the GPU stack: as a child of
        # `monitoring` it would wait on the GPU stack, which waits on all of `monitoring` (a deadlock).
        monitoring.admit_prometheus(
            "dcgm",
            namespace=GPU_NAMESPACE,
            pod_labels={"app.kubernetes.io/name": "dcgm-exporter"},
            port=DCGM_METRICS_PORT,
            opts=pulumi.ResourceOptions(parent=gpu, depends_on=[gpu.namespace]),
        )
        pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    kueue = Kueue(
        "kueue",
        KueueArgs(
            cpu_pool=cluster.cpu_pool,
            gpu_pool=cluster.gpu_pool,
            cpu_quota=config.queue_cpu,
            memory_quota=config.queue_memory,
            gpu_quota=config.schedulable_gpus,
            prometheus=monitoring is not None,
        ),
        opts=after_monitoring,
    )
    metrics = MetricsServer(
        "metrics-server", insecure_kubelet_tls=config.provider is ClusterProvider.KIND, opts=cluster_opts
    )
    namespaces = {
        team.name: MlNamespace(
            team.name,
            MlNamespaceArgs(team=team),
            # Queued Jobs name a priority class: it must exist before anything can queue.
            queue_depends_on=[kueue.cluster_queue, *kueue.priority_classes],
            opts=cluster_opts,
        )
        for team in config.teams
    }
    platform = Platform(config, cluster, gpu, kueue, metrics, namespaces, monitoring=monitoring)
    if config.recommender.enabled:
        from workloads.bookstore import deploy_bookstore

        platform.apps["bookstore"] = deploy_bookstore(platform)
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("mlNamespaces", [t.name for t in config.teams])
    pulumi.export("clusterQueue", kueue.cluster_queue_name)
    return platform


def build_platform(stack: str) -> Platform:
    """Read this stack's configuration and deploy it (the program's entry point)."""
    return deploy(load_config(stack))

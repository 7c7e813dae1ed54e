"""The Monitoring component: kube-prometheus-stack, prometheus-adapter, dashboards and alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .. import versions as platform_versions
from ..config import ClusterProvider, PlatformConfig
from ..crds import ChartCrds
from ..helm import release
from ..objects import MANAGED_BY, apply, child_options, namespace_manifest
from ..tenancy import ingress_policy
from .dashboards import dashboard_config_map, load_dashboards
from .rules import GPU_IDLE_MINUTES, GPU_IDLE_PERCENT, platform_rules
from .scrape import service_monitor
from .values import (
    ADAPTER_RELEASE,
    GRAFANA_ADMIN_SECRET,
    GRAFANA_PASSWORD_KEY,
    GRAFANA_USER_KEY,
    MONITORING_NAMESPACE,
    PROMETHEUS_PEER_NAMESPACE,
    PROMETHEUS_PEER_PODS,
    PROMETHEUS_URL,
    SERVICE_MONITOR_LABELS,
    STACK_RELEASE,
    kube_prometheus_stack_values,
    prometheus_adapter_values,
)

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..tenancy import MlNamespace

__all__ = ["Monitoring", "MonitoringArgs", "grafana_admin_secret"]


def grafana_admin_secret(namespace: str, password: pulumi.Input[str]) -> dict[str, Any]:
    """The Secret Grafana reads its admin login from (the chart's ``admin.existingSecret``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": GRAFANA_ADMIN_SECRET, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "stringData": {GRAFANA_USER_KEY: "admin", GRAFANA_PASSWORD_KEY: password},
    }


@dataclass(frozen=True)
class MonitoringArgs:
    ml_namespaces: tuple[str, ...]  # where training Jobs run: the TrainingJobFailed alert watches these
    retention: str = "2d"  # Prometheus keeps this much history (emptyDir: lost when the pod moves)
    retention_size: str = "2GB"  # ...or this much disk, whichever is hit first
    pending_alert_after: str = "30m"  # KueueWorkloadsPendingTooLong fires after workloads wait this long
    # GpuAllocatedButIdle / TeamGpusIdle: GPUs under this utilisation (percent) for this long (minutes)
    gpu_idle_percent: int = GPU_IDLE_PERCENT
    gpu_idle_minutes: int = GPU_IDLE_MINUTES
    # prometheus-adapter rules the apps scale on (e.g. a requests/s per pod); none by default
    adapter_rules: tuple[Mapping[str, Any], ...] = ()
    stack_overrides: Mapping[str, Any] = field(default_factory=dict)  # merged last into the stack's values
    adapter_overrides: Mapping[str, Any] = field(default_factory=dict)
    pins: platform_versions.ComponentVersions = platform_versions.CURRENT  # the chart versions

    @classmethod
    def for_platform(
        cls, config: PlatformConfig, cluster: Cluster, *, adapter_rules: Sequence[Mapping[str, Any]] = ()
    ) -> MonitoringArgs:
        """Defaults for this stack: a short history on a laptop, a week on EKS."""
        del cluster  # same shape on every cluster; the parameter keeps the call site uniform
        teams, rules = tuple(t.name for t in config.teams), tuple(adapter_rules)
        args = cls(
            ml_namespaces=teams,
            adapter_rules=rules,
            gpu_idle_percent=config.gpu_idle_alert_percent,
            gpu_idle_minutes=config.gpu_idle_alert_minutes,
            pins=config.versions,
        )
        if config.provider is ClusterProvider.EKS:
            return replace(args, retention="7d", retention_size="8GB")
        return args


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack) plus prometheus-adapter.

    Guarantees: everything lives in its own PSA ``privileged`` namespace (node-exporter needs
    host access; the ML namespaces stay ``restricted``); no Service of the stack is exposed
    outside the cluster (Grafana by port-forward only); Grafana's admin password is generated
    (a Pulumi secret), never a literal; Prometheus selects every ServiceMonitor, PodMonitor and
    PrometheusRule in the cluster; the GPU and Kueue dashboards and the platform alerts are
    installed; the apps' ``adapter_rules`` are served on the custom metrics API; the
    prometheus-operator CRDs (the chart's crds/, which Helm never upgrades) are applied by the
    program at the chart's pinned version before the stack (``crd_provider``). ``scrape`` wires
    one more app: its ServiceMonitor, its alerts, and the one NetworkPolicy letting Prometheus
    (and nothing else) reach its metrics port; ``add_dashboard`` ships an app's dashboard.
    """

    def __init__(
        self,
        name: str,
        args: MonitoringArgs,
        *,
        crd_provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:monitoring:Monitoring", name, None, opts)
        self._name = name
        ns = MONITORING_NAMESPACE
        self.namespace = apply(
            f"{name}-namespace",
            namespace_manifest(ns, "privileged", platform_versions.PSA_VERSION),
            child_options(opts, self),
        )
        in_ns = child_options(opts, self, depends_on=[self.namespace])
        password = random.RandomPassword(
            f"{name}-grafana-admin", length=32, special=False, opts=child_options(opts, self)
        )
        admin_secret = apply(f"{name}-grafana-admin", grafana_admin_secret(ns, password.result), in_ns)
        dashboards = [
            apply(f"{name}-dashboard-{stem}", dashboard_config_map(ns, stem, board), in_ns)
            for stem, board in load_dashboards().items()
        ]
        crds = ChartCrds(
            f"{name}-crds", args.pins.kube_prometheus_stack, provider=crd_provider, opts=child_options(opts, self)
        )
        self.stack = release(
            STACK_RELEASE,
            args.pins.kube_prometheus_stack,
            namespace=ns,
            values=kube_prometheus_stack_values(retention=args.retention, retention_size=args.retention_size),
            values_overrides=args.stack_overrides,
            opts=child_options(opts, self, depends_on=[self.namespace, admin_secret, *dashboards, *crds.resources]),
        )
        # PrometheusRule, ServiceMonitor: their CRDs come before the stack, which runs the operator.
        self._after_stack = child_options(opts, self, depends_on=[self.stack])
        self._in_namespace = in_ns
        self.adapter = release(
            ADAPTER_RELEASE,
            args.pins.prometheus_adapter,
            namespace=ns,
            values=prometheus_adapter_values([dict(rule) for rule in args.adapter_rules]),
            values_overrides=args.adapter_overrides,
            opts=self._after_stack,
        )
        apply(
            f"{name}-platform-rules",
            platform_rules(
                ns,
                ml_namespaces=args.ml_namespaces,
                pending_for=args.pending_alert_after,
                gpu_idle_percent=args.gpu_idle_percent,
                gpu_idle_minutes=args.gpu_idle_minutes,
            ),
            self._after_stack,
        )
        self.service_monitor_labels: dict[str, str] = dict(SERVICE_MONITOR_LABELS)
        self.namespace_name: pulumi.Output[str] = pulumi.Output.from_input(ns)
        self.prometheus_url: pulumi.Output[str] = pulumi.Output.from_input(PROMETHEUS_URL)
        self.grafana_admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.register_outputs(
            {
                "namespace_name": self.namespace_name,
                "prometheus_url": self.prometheus_url,
                "grafana_admin_password": self.grafana_admin_password,
            }
        )

    def scrape(
        self,
        namespace: MlNamespace,
        name: str,
        selector: Mapping[str, str],
        *,
        port_name: str = "http",
        container_port: int = 8080,
        path: str = "/metrics",
        rules: Mapping[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> list[pulumi.Resource]:
        """Scrape serving app ``name`` (Service and Deployment of that name) in an ML namespace.

        Creates the ServiceMonitor (Services matching ``selector``, port ``port_name``), the app's
        alerts (``rules``, a PrometheusRule), and a NetworkPolicy admitting Prometheus' pods on
        ``container_port`` of the pods matching ``selector`` (the namespace denies everything else).
        """
        team = namespace.team.name
        in_team = pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(parent=self, depends_on=[self.stack, namespace.namespace]), opts
        )
        monitor = apply(
            f"{self._name}-{team}-{name}-monitor",
            service_monitor(team, name, selector=selector, port_name=port_name, path=path),
            in_team,
        )
        alerts = [apply(f"{self._name}-{team}-{name}-rules", dict(rules), in_team)] if rules else []
        policy = namespace.allow_ingress_from(
            f"allow-prometheus-{name}",
            pod_labels=selector,
            port=container_port,
            from_namespaces=PROMETHEUS_PEER_NAMESPACE,
            from_pods=PROMETHEUS_PEER_PODS,
            opts=opts,
        )
        return [monitor, *alerts, policy]

    def add_dashboard(self, stem: str, dashboard: Mapping[str, Any]) -> pulumi.Resource:
        """Ship an app's Grafana dashboard (the sidecar loads it into the platform's folder)."""
        return apply(
            f"{self._name}-dashboard-{stem}",
            dashboard_config_map(MONITORING_NAMESPACE, stem, dict(dashboard)),
            self._in_namespace,
        )

    def admit_prometheus(
        self,
        name: str,
        *,
        namespace: str,
        pod_labels: Mapping[str, str],
        port: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> pulumi.Resource:
        """A NetworkPolicy in a platform namespace (not an MlNamespace): ``port`` on the selected
        pods accepts Prometheus and nothing else. E.g. DCGM's 9400 in gpu-system."""
        manifest = ingress_policy(
            namespace,
            f"allow-prometheus-{name}",
            pod_labels=pod_labels,
            port=port,
            from_namespaces=PROMETHEUS_PEER_NAMESPACE,
            from_pods=PROMETHEUS_PEER_PODS,
        )
        return apply(
            f"{self._name}-{namespace}-{name}-policy",
            manifest,
            pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )

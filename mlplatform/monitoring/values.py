"""Helm values for kube-prometheus-stack and prometheus-adapter (pure functions).

Sizing is for a laptop kind cluster first: every component has requests and limits, so the
stack's cost is bounded and stated (docs/observability.md), and EKS gets the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DASHBOARD_LABEL",
    "GRAFANA_ADMIN_SECRET",
    "GRAFANA_PASSWORD_KEY",
    "GRAFANA_USER_KEY",
    "MONITORING_NAMESPACE",
    "PROMETHEUS_PEER_NAMESPACE",
    "PROMETHEUS_PEER_PODS",
    "PROMETHEUS_PORT",
    "PROMETHEUS_URL",
    "SERVICE_MONITOR_LABELS",
    "STACK_RELEASE",
    "kube_prometheus_stack_values",
    "prometheus_adapter_values",
]

# Kueue's chart binds its metrics Role to ServiceAccounts in a namespace called "monitoring"
# by default (metrics.prometheusNamespace): same name, so nothing there needs overriding.
MONITORING_NAMESPACE = "monitoring"
STACK_RELEASE = "kube-prometheus-stack"
ADAPTER_RELEASE = "prometheus-adapter"
# The chart's fullname is the release name when it contains the chart name.
PROMETHEUS_SERVICE = f"{STACK_RELEASE}-prometheus"
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc"
# NetworkPolicy peer for "Prometheus and nothing else": its namespace, and the label the
# Prometheus operator puts on every Prometheus server pod.
PROMETHEUS_PEER_NAMESPACE = {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
PROMETHEUS_PEER_PODS = {"app.kubernetes.io/name": "prometheus"}
# The label the chart's own monitors carry. Prometheus here selects every ServiceMonitor,
# PodMonitor and PrometheusRule (Kueue's chart cannot add labels to its monitor), but ours carry
# this too so they are still picked up if someone restores the chart's label-based default.
SERVICE_MONITOR_LABELS = {"release": STACK_RELEASE}
# The Grafana dashboard sidecar loads every ConfigMap with this label from the monitoring namespace.
DASHBOARD_LABEL = ("grafana_dashboard", "1")
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def kube_prometheus_stack_values(*, retention: str = "2d", retention_size: str = "2GB") -> dict[str, Any]:
    """kube-prometheus-stack: Prometheus, Alertmanager, Grafana, the operator, kube-state-metrics
    and node-exporter, with nothing exposed outside the cluster and no password in the values."""
    # Empty selectors (and no fallback to the chart's release label): every ServiceMonitor,
    # PodMonitor and PrometheusRule in every namespace.
    select_everything: dict[str, Any] = {}
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        select_everything |= {
            f"{kind}SelectorNilUsesHelmValues": False,
            f"{kind}Selector": {},
            f"{kind}NamespaceSelector": {},
        }
    return {
        # Managed control planes (EKS) and kind's localhost-bound ones cannot be scraped: their
        # targets would be down forever and their alerts would fire for nothing.
        "kubeEtcd": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "prometheus": {
            "service": {"type": "ClusterIP"},
            "ingress": {"enabled": False},
            "prometheusSpec": {
                "retention": retention,
                "retentionSize": retention_size,
                "resources": _resources("100m", "400Mi", "1536Mi"),
                **select_everything,
            },
        },
        "alertmanager": {
            "service": {"type": "ClusterIP"},
            "ingress": {"enabled": False},
            "alertmanagerSpec": {"resources": _resources("10m", "32Mi", "128Mi")},
        },
        "grafana": {
            # Reached with `kubectl port-forward` only: no LoadBalancer, NodePort or Ingress.
            "service": {"type": "ClusterIP"},
            "ingress": {"enabled": False},
            # The chart's default adminPassword is a literal; a Secret we generate replaces it.
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "resources": _resources("50m", "128Mi", "384Mi"),
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL[0],
                    "labelValue": DASHBOARD_LABEL[1],
                    "folderAnnotation": "grafana_folder",
                    "provider": {"foldersFromFilesStructure": True},
                },
            },
        },
        "prometheusOperator": {"resources": _resources("50m", "64Mi", "256Mi")},
        "kube-state-metrics": {"resources": _resources("20m", "64Mi", "256Mi")},
        # node-exporter needs the host's network, PID namespace and /proc, /sys: the reason the
        # monitoring namespace is PSA privileged. Its default tolerations already cover the GPU taint.
        "prometheus-node-exporter": {"resources": _resources("20m", "32Mi", "128Mi")},
    }


def prometheus_adapter_values(rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """prometheus-adapter serving only our custom metrics (custom.metrics.k8s.io).

    Resource metrics (metrics.k8s.io) stay with metrics-server: registering both APIServices
    would make them fight over the same API group.
    """
    return {
        "prometheus": {"url": PROMETHEUS_URL, "port": PROMETHEUS_PORT},
        "rules": {"default": False, "custom": [dict(r) for r in rules], "external": []},
        "resources": _resources("20m", "64Mi", "256Mi"),
    }

"""Observability: kube-prometheus-stack, prometheus-adapter, dashboards as code and alerts.

``Monitoring`` is created by the program when ``ml-platform:monitoring`` is true; apps call
``Monitoring.scrape(...)`` for their metrics, bring their adapter rules through
``MonitoringArgs.adapter_rules`` and put a ``pods_metric(...)`` in their HPA.
"""

from __future__ import annotations

from .component import Monitoring, MonitoringArgs, grafana_admin_secret
from .dashboards import dashboard_config_map, load_dashboards
from .rules import alert, platform_rules, prometheus_rule
from .scrape import per_pod_rate_rule, pods_metric, service_monitor
from .values import (
    MONITORING_NAMESPACE,
    PROMETHEUS_PEER_NAMESPACE,
    PROMETHEUS_PEER_PODS,
    SERVICE_MONITOR_LABELS,
    kube_prometheus_stack_values,
    prometheus_adapter_values,
)

__all__ = [
    "MONITORING_NAMESPACE",
    "PROMETHEUS_PEER_NAMESPACE",
    "PROMETHEUS_PEER_PODS",
    "SERVICE_MONITOR_LABELS",
    "Monitoring",
    "MonitoringArgs",
    "alert",
    "dashboard_config_map",
    "grafana_admin_secret",
    "kube_prometheus_stack_values",
    "load_dashboards",
    "per_pod_rate_rule",
    "platform_rules",
    "pods_metric",
    "prometheus_adapter_values",
    "prometheus_rule",
    "service_monitor",
]

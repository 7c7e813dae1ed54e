"""Observability: kube-prometheus-stack, prometheus-adapter, dashboards as code and alerts.

``Monitoring`` is created by the program when ``ml-platform:monitoring`` is true; workloads call
``Monitoring.scrape(...)`` for their metrics and put ``requests_per_second_metric()`` in their HPA.
"""

from __future__ import annotations

from .component import Monitoring, MonitoringArgs, grafana_admin_secret
from .dashboards import dashboard_config_map, load_dashboards
from .rules import platform_rules, serving_rules
from .scrape import (
    REQUESTS_PER_SECOND_METRIC,
    adapter_rules,
    requests_per_second_metric,
    service_monitor,
)
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
    "REQUESTS_PER_SECOND_METRIC",
    "SERVICE_MONITOR_LABELS",
    "Monitoring",
    "MonitoringArgs",
    "adapter_rules",
    "dashboard_config_map",
    "grafana_admin_secret",
    "kube_prometheus_stack_values",
    "load_dashboards",
    "platform_rules",
    "prometheus_adapter_values",
    "requests_per_second_metric",
    "service_monitor",
    "serving_rules",
]

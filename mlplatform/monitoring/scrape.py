"""Scraping and scaling builders (pure): ServiceMonitors, the adapter's custom metric, the HPA entry.

The recommender counts every request in ``recommender_requests_total{route, method, status}``;
prometheus-adapter turns its per-pod rate into ``recommender_requests_per_second`` on the
custom metrics API, which an HPA reads with a ``type: Pods`` metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recommender.contract import LIVE_PATH, METRICS_PATH, READY_PATH

from ..objects import MANAGED_BY
from .values import SERVICE_MONITOR_LABELS

__all__ = [
    "MONITORING_API_VERSION",
    "NOT_USER_TRAFFIC",
    "REQUESTS_PER_SECOND_METRIC",
    "REQUESTS_SERIES",
    "adapter_rules",
    "requests_per_second_metric",
    "service_monitor",
]

MONITORING_API_VERSION = "monitoring.coreos.com/v1"
REQUESTS_SERIES = "recommender_requests_total"
REQUESTS_PER_SECOND_METRIC = "recommender_requests_per_second"
# Probes and scrapes are not load: a regex (PromQL anchors it) over the server's route label.
NOT_USER_TRAFFIC = "|".join([LIVE_PATH, READY_PATH, METRICS_PATH, "/v2/health/live", "/v2/health/ready"])
SCRAPE_INTERVAL = "15s"


def service_monitor(
    namespace: str,
    name: str,
    *,
    selector: Mapping[str, str],
    port_name: str = "http",
    path: str = METRICS_PATH,
    interval: str = SCRAPE_INTERVAL,
) -> dict[str, Any]:
    """Scrape ``path`` on the named Service port of the Services matching ``selector`` in ``namespace``.

    Prometheus adds ``namespace``, ``service`` and ``pod`` labels to every series, which the
    adapter rule and the serving alerts key on.
    """
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": {**MANAGED_BY, **SERVICE_MONITOR_LABELS}},
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": port_name, "path": path, "interval": interval, "scheme": "http"}],
        },
    }


def adapter_rules(window: str = "1m") -> list[dict[str, Any]]:
    """prometheus-adapter rules: requests/s per pod over ``window``, probes and scrapes excluded.

    A short window follows a burst quickly; Prometheus scrapes every 15s, so 1m holds four samples.
    """
    return [
        {
            "seriesQuery": f'{REQUESTS_SERIES}{{namespace!="",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": f"^{REQUESTS_SERIES}$", "as": REQUESTS_PER_SECOND_METRIC},
            "metricsQuery": (
                f'sum(rate(<<.Series>>{{<<.LabelMatchers>>,route!~"{NOT_USER_TRAFFIC}"}}[{window}])) by (<<.GroupBy>>)'
            ),
        }
    ]


def requests_per_second_metric(target_per_pod: float = 20.0) -> dict[str, Any]:
    """The HPA ``metrics:`` entry: keep the average requests/s per pod at ``target_per_pod``.

    Needs monitoring on (prometheus-adapter serves the metric); with monitoring off, scale on CPU.
    """
    if target_per_pod <= 0:
        raise ValueError(f"target_per_pod must be > 0, got {target_per_pod}")
    milli = round(target_per_pod * 1000)
    quantity = str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": REQUESTS_PER_SECOND_METRIC},
            "target": {"type": "AverageValue", "averageValue": quantity},
        },
    }

"""Scraping and scaling builders (pure): ServiceMonitors, custom-metric rules, the HPA entry.

An app that counts its requests in a counter can be scaled on their rate: ``per_pod_rate_rule``
has prometheus-adapter serve the counter's per-pod rate on the custom metrics API, and
``pods_metric`` is the HPA's ``type: Pods`` entry reading it. Apps bring their own series names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..objects import MANAGED_BY
from .values import SERVICE_MONITOR_LABELS

__all__ = ["MONITORING_API_VERSION", "per_pod_rate_rule", "pods_metric", "service_monitor"]

MONITORING_API_VERSION = "monitoring.coreos.com/v1"
METRICS_PATH = "/metrics"
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


def per_pod_rate_rule(
    series: str, as_metric: str, *, exclude: Mapping[str, str] | None = None, window: str = "1m"
) -> dict[str, Any]:
    """A prometheus-adapter rule serving counter ``series``' per-pod rate over ``window`` as ``as_metric``.

    ``exclude`` maps a label to a regex of values that are not load (probes, scrapes). A short
    window follows a burst quickly; Prometheus scrapes every 15s, so 1m holds four samples.
    """
    matchers = "".join(f',{label}!~"{regex}"' for label, regex in sorted((exclude or {}).items()))
    return {
        "seriesQuery": f'{series}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{series}$", "as": as_metric},
        "metricsQuery": f"sum(rate(<<.Series>>{{<<.LabelMatchers>>{matchers}}}[{window}])) by (<<.GroupBy>>)",
    }


def pods_metric(metric: str, target_per_pod: float) -> dict[str, Any]:
    """The HPA ``metrics:`` entry keeping the average of custom metric ``metric`` per pod at ``target_per_pod``.

    Needs monitoring on (prometheus-adapter serves the metric).
    """
    if target_per_pod <= 0:
        raise ValueError(f"target_per_pod must be > 0, got {target_per_pod}")
    milli = round(target_per_pod * 1000)
    quantity = str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    return {
        "type": "Pods",
        "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": quantity}},
    }

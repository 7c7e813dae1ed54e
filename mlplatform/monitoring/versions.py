"""Pinned charts of the monitoring stack: the current pins of ``mlplatform/versions.py`` (the one
table of pins), under the names the monitoring code and its tests use.

Both come from the official repository https://prometheus-community.github.io/helm-charts.
"""

from __future__ import annotations

from ..versions import CURRENT, PROMETHEUS_COMMUNITY_REPO

__all__ = ["KUBE_PROMETHEUS_STACK", "PROMETHEUS_ADAPTER", "PROMETHEUS_COMMUNITY_REPO"]

KUBE_PROMETHEUS_STACK = CURRENT.kube_prometheus_stack
PROMETHEUS_ADAPTER = CURRENT.prometheus_adapter

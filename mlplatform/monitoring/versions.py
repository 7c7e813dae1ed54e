"""Pinned charts of the monitoring stack (kept here, beside the component, not in mlplatform/versions.py).

Evidence for each pin (release tags of prometheus-community/helm-charts, seen in merged
dependency-update pull requests that link the release notes):
- kube-prometheus-stack 87.15.1: release tag ``kube-prometheus-stack-87.15.1`` (July 2026).
- prometheus-adapter 5.3.0: release of the chart ``prometheus-adapter-5.3.0`` (February 2026).
Both come from the official repository https://prometheus-community.github.io/helm-charts.
"""

from __future__ import annotations

from ..versions import Chart

__all__ = ["KUBE_PROMETHEUS_STACK", "PROMETHEUS_ADAPTER", "PROMETHEUS_COMMUNITY_REPO"]

PROMETHEUS_COMMUNITY_REPO = "https://prometheus-community.github.io/helm-charts"

KUBE_PROMETHEUS_STACK = Chart(name="kube-prometheus-stack", version="87.15.1", repo=PROMETHEUS_COMMUNITY_REPO)
PROMETHEUS_ADAPTER = Chart(name="prometheus-adapter", version="5.3.0", repo=PROMETHEUS_COMMUNITY_REPO)

"""What the platform's monitoring needs to know about the recommender, and nothing more:
the series its server exports, how to scale on them, its alerts and its dashboard.

The names are the recommender's (``recommender/server.py`` exports them; tests/test_monitoring.py
checks every one against a real server's /metrics). The platform's ``Monitoring`` stays generic:
it takes these rules, alerts and dashboards from the composition root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlplatform.monitoring.rules import alert, prometheus_rule
from mlplatform.monitoring.scrape import per_pod_rate_rule, pods_metric

__all__ = [
    "DASHBOARD",
    "NOT_USER_TRAFFIC",
    "REQUESTS_PER_SECOND_METRIC",
    "REQUESTS_SERIES",
    "adapter_rules",
    "dashboard",
    "requests_per_second_metric",
    "serving_rules",
]

REQUESTS_SERIES = "recommender_requests_total"
REQUESTS_PER_SECOND_METRIC = "recommender_requests_per_second"
# Probes and scrapes are not load: a regex (PromQL anchors it) over the server's route label.
NOT_USER_TRAFFIC = "|".join(["/live", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"])
DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "recommender.json"


def adapter_rules(window: str = "1m") -> list[dict[str, Any]]:
    """prometheus-adapter rules: the recommender's requests/s per pod, probes and scrapes excluded."""
    return [
        per_pod_rate_rule(
            REQUESTS_SERIES, REQUESTS_PER_SECOND_METRIC, exclude={"route": NOT_USER_TRAFFIC}, window=window
        )
    ]


def requests_per_second_metric(target_per_pod: float = 20.0) -> dict[str, Any]:
    """The HPA entry: keep the average requests/s per pod at ``target_per_pod`` (monitoring on)."""
    return pods_metric(REQUESTS_PER_SECOND_METRIC, target_per_pod)


def dashboard() -> dict[str, Any]:
    """The 'Recommender serving' Grafana dashboard."""
    try:
        board: dict[str, Any] = json.loads(DASHBOARD.read_text())
        return board
    except json.JSONDecodeError as err:
        raise ValueError(f"dashboard {DASHBOARD.name} is not valid JSON: {err}") from err


def serving_rules(namespace: str, name: str, *, error_budget: float = 0.01) -> dict[str, Any]:
    """Alerts for one serving app: Deployment ``name`` behind Service ``name`` in ``namespace``."""
    if not 0 < error_budget < 1:
        raise ValueError(f"error_budget is a ratio between 0 and 1, got {error_budget}")
    deployment = f'namespace="{namespace}", deployment="{name}"'
    series = f'namespace="{namespace}", service="{name}"'
    no_endpoints = alert(
        "ServingNoReadyEndpoints",
        f"(kube_deployment_status_replicas_ready{{{deployment}}} == 0)"
        f" and on (namespace, deployment) (kube_deployment_spec_replicas{{{deployment}}} > 0)",
        for_="2m",
        severity="critical",
        summary=f"{namespace}/{name} has no ready replica: every request fails.",
        runbook=f"`kubectl -n {namespace} get pods -l app.kubernetes.io/name={name}` then describe one: readiness "
        "stays false until a verified model is loaded (GET /ready says why), so check the registry alias and "
        "the model store volume first.",
    )
    # Users' requests only: a pod that is not ready answers its readiness probe 503, which no user sees.
    user = f'{series}, route!~"{NOT_USER_TRAFFIC}"'
    errors = alert(
        "ServingErrorRatioOverBudget",
        f'sum(rate({REQUESTS_SERIES}{{{user}, status=~"5.."}}[5m]))'
        f" / sum(rate({REQUESTS_SERIES}{{{user}}}[5m])) > {error_budget}",
        for_="5m",
        severity="critical",
        summary=f"{namespace}/{name}: {{{{ $value | humanizePercentage }}}} of requests fail "
        f"(budget {error_budget:.0%}).",
        runbook=f"Grafana 'Recommender serving' dashboard, 'Error ratio by route'; then "
        f"`kubectl -n {namespace} logs -l app.kubernetes.io/name={name}` (JSON lines, level=error). "
        "A new model version is the usual suspect: roll the alias back.",
    )
    reload_failing = alert(
        "ModelReloadFailing",
        f"(recommender_model_last_reload_success{{{series}}} == 0)"
        f' and on (namespace, pod) (increase(recommender_model_reloads_total{{{series}, result="failed"}}[15m]) > 0)',
        for_="10m",
        severity="warning",
        summary=f"{namespace}/{{{{ $labels.pod }}}} refuses the new model version; it keeps serving the previous one.",
        runbook=f"`kubectl -n {namespace} logs {{{{ $labels.pod }}}}` for 'model version refused' and its reason "
        "(checksum mismatch, missing file); re-publish the version or move the alias back.",
    )
    group = {"name": f"mlplatform.serving.{name}", "rules": [no_endpoints, errors, reload_failing]}
    return prometheus_rule(namespace, f"{name}-serving", [group])

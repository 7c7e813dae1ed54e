"""Alerts as PrometheusRule objects (pure builders); each says where to look first.

Only conditions that need a person: a serving app that answers nothing, errors over budget, a
model that cannot be reloaded, a GPU held but unused, work stuck in the queue, a failed
training Job. Every expression reads metrics some component really exposes (tests check the
names against the recommender's /metrics, DCGM's default counters, Kueue's and
kube-state-metrics' documentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..objects import MANAGED_BY
from .scrape import MONITORING_API_VERSION, REQUESTS_SERIES
from .values import SERVICE_MONITOR_LABELS

__all__ = ["GPU_IDLE_PERCENT", "alert", "platform_rules", "prometheus_rule", "serving_rules"]

GPU_IDLE_PERCENT = 10


def alert(name: str, expr: str, *, for_: str, severity: str, summary: str, runbook: str) -> dict[str, Any]:
    """One alerting rule; ``runbook`` is the first place to look, in a sentence or two."""
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "runbook": runbook},
    }


def prometheus_rule(namespace: str, name: str, groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": {**MANAGED_BY, **SERVICE_MONITOR_LABELS}},
        "spec": {"groups": list(groups)},
    }


def _regex(values: Sequence[str]) -> str:
    return "|".join(sorted(values))


def platform_rules(namespace: str, *, ml_namespaces: Sequence[str], pending_for: str = "30m") -> dict[str, Any]:
    """GPU, queue and training alerts for the whole platform."""
    teams = _regex(ml_namespaces)
    gpu = alert(
        "GpuAllocatedButIdle",
        # DCGM labels a GPU with the pod holding it; the chart's ServiceMonitor keeps target labels
        # (honorLabels false), so the workload's pod arrives as exported_pod.
        f'avg by (Hostname, gpu, exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL{{exported_pod!=""}})'
        f" < {GPU_IDLE_PERCENT}",
        for_="30m",
        severity="warning",
        summary=f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.Hostname }}}} is held by "
        f"{{{{ $labels.exported_namespace }}}}/{{{{ $labels.exported_pod }}}} but busy < {GPU_IDLE_PERCENT}% for 30m.",
        runbook="Grafana 'GPU' dashboard, panel 'Allocated but idle': then `kubectl -n <namespace> logs <pod>` "
        "(stalled data loader, finished script still sleeping, forgotten notebook). Ask the owner to free it.",
    )
    pending = alert(
        "KueueWorkloadsPendingTooLong",
        "sum by (cluster_queue, status) (kueue_pending_workloads) > 0",
        for_=pending_for,
        severity="warning",
        summary=f"{{{{ $value }}}} workload(s) pending ({{{{ $labels.status }}}}) in ClusterQueue "
        f"{{{{ $labels.cluster_queue }}}} for more than {pending_for}.",
        runbook="`kubectl get workloads -A` and `kubectl describe clusterqueue {{ $labels.cluster_queue }}`: "
        "status inadmissible means a request larger than any flavor's quota; active means the queue is full "
        "(Grafana 'Kueue' dashboard, quota used vs nominal).",
    )
    failed = alert(
        "TrainingJobFailed",
        f'kube_job_failed{{condition="true", namespace=~"{teams}"}} > 0',
        for_="0m",
        severity="warning",
        summary="Job {{ $labels.namespace }}/{{ $labels.job_name }} failed.",
        runbook="`kubectl -n {{ $labels.namespace }} describe job {{ $labels.job_name }}` for the reason "
        "(BackoffLimitExceeded, DeadlineExceeded), then "
        "`kubectl -n {{ $labels.namespace }} logs job/{{ $labels.job_name }}`. "
        "The serving model is unchanged: a failed run never moves the registry alias.",
    )
    groups = [
        {"name": "mlplatform.gpu", "rules": [gpu]},
        {"name": "mlplatform.kueue", "rules": [pending]},
        {"name": "mlplatform.training", "rules": [failed]},
    ]
    return prometheus_rule(namespace, "mlplatform-platform", groups)


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
    errors = alert(
        "ServingErrorRatioOverBudget",
        f'sum(rate({REQUESTS_SERIES}{{{series}, status=~"5.."}}[5m]))'
        f" / sum(rate({REQUESTS_SERIES}{{{series}}}[5m])) > {error_budget}",
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

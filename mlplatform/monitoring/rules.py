"""Alerts as PrometheusRule objects (pure builders); each says where to look first.

Only conditions that need a person: a GPU held but unused, a team's admitted GPUs idle, work
stuck in the queue, a team waiting while others hold its guarantee, a failed training Job. The
platform rule also records each team's allocated, busy and idle GPUs (``gpu_usage``). Every expression reads metrics
some component really exposes (tests check the names against DCGM's default counters, Kueue's
and kube-state-metrics' documentation). Apps bring their own alerts (``prometheus_rule`` +
``alert``) to ``Monitoring.scrape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import KEYS
from ..objects import MANAGED_BY
from . import gpu_usage, team_queries
from .scrape import MONITORING_API_VERSION
from .values import SERVICE_MONITOR_LABELS

__all__ = ["GPU_IDLE_MINUTES", "GPU_IDLE_PERCENT", "alert", "platform_rules", "prometheus_rule", "team_idle_alert"]

# Defaults of ml-platform:gpuIdleAlertPercent and gpuIdleAlertMinutes, from the one config schema.
GPU_IDLE_PERCENT: int = KEYS["gpuIdleAlertPercent"].default
GPU_IDLE_MINUTES: int = KEYS["gpuIdleAlertMinutes"].default


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


def team_idle_alert(*, idle_percent: int = GPU_IDLE_PERCENT, idle_minutes: int = GPU_IDLE_MINUTES) -> dict[str, Any]:
    """A team holds admitted GPUs and, all together, uses them under ``idle_percent`` for ``idle_minutes``."""
    return alert(
        "TeamGpusIdle",
        f"{gpu_usage.UTILIZATION} < {idle_percent}",
        for_=f"{idle_minutes}m",
        severity="warning",
        summary=f"Team {{{{ $labels.team }}}} holds admitted GPUs that are only {{{{ $value | humanize }}}}% busy "
        f"(under {idle_percent}%) for {idle_minutes}m.",
        runbook="Grafana 'GPU' dashboard, panels 'Team: GPUs allocated, busy and idle' and 'Allocated but idle' "
        "(which pods); then `kubectl -n {{ $labels.team }} get workloads` and the pods' logs (stalled data "
        "loader, finished script still sleeping, forgotten notebook). Idle admitted GPUs keep other teams' work "
        "waiting: ask the owner to finish or suspend the workload; `python -m mlplatform.report gpu-usage` "
        "prices the waste.",
    )


def platform_rules(
    namespace: str,
    *,
    ml_namespaces: Sequence[str],
    pending_for: str = "30m",
    reclaim_within: str = "15m",
    gpu_idle_percent: int = GPU_IDLE_PERCENT,
    gpu_idle_minutes: int = GPU_IDLE_MINUTES,
) -> dict[str, Any]:
    """GPU, queue and training alerts for the whole platform, and the per-team GPU usage records.

    ``reclaim_within``: how long a team may wait while others use its guarantee before someone is
    told (reclaim by preemption normally takes seconds). ``gpu_idle_percent`` / ``gpu_idle_minutes``:
    a GPU held by a pod, or a team's admitted GPUs together, below that utilisation for that long
    raise GpuAllocatedButIdle / TeamGpusIdle."""
    teams = _regex(ml_namespaces)
    gpu = alert(
        "GpuAllocatedButIdle",
        # DCGM labels a GPU with the pod holding it; the chart's ServiceMonitor keeps target labels
        # (honorLabels false), so the workload's pod arrives as exported_pod.
        f'avg by (Hostname, gpu, exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL{{exported_pod!=""}})'
        f" < {gpu_idle_percent}",
        for_=f"{gpu_idle_minutes}m",
        severity="warning",
        summary=f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.Hostname }}}} is held by "
        f"{{{{ $labels.exported_namespace }}}}/{{{{ $labels.exported_pod }}}} but busy < {gpu_idle_percent}% "
        f"for {gpu_idle_minutes}m.",
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
    waiting_while_lent = alert(
        "TeamWaitsWhileItsQuotaIsLent",
        # Per team: workloads pending, and some of its guarantee (any resource) in other teams' hands.
        f'(sum by (cluster_queue) (kueue_pending_workloads{{status=~"active|inadmissible"}}) > 0) '
        f"and on (cluster_queue) (max by (cluster_queue) ({team_queries.lent(resource='')}) > 0)",
        for_=reclaim_within,
        severity="warning",
        summary=f"Team {{{{ $labels.cluster_queue }}}} has had workloads waiting for {reclaim_within} while other "
        "teams use part of its guaranteed quota.",
        runbook="Reclaim (reclaimWithinCohort) should have preempted the borrowers within seconds. "
        "`kubectl describe clusterqueue {{ $labels.cluster_queue }}` and "
        "`kubectl -n {{ $labels.cluster_queue }} describe workloads`: a workload larger than the team's "
        "guarantee must borrow, and fair sharing decides (README, Teams); one waiting for GPU nodes shows the "
        "gpu-capacity check pending (`kubectl -n {{ $labels.cluster_queue }} get provisioningrequests`). "
        "Grafana 'Kueue' dashboard, panels 'GPUs lent' and 'GPUs borrowed'.",
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
        gpu_usage.recording_group(),
        {
            "name": "mlplatform.gpu",
            "rules": [gpu, team_idle_alert(idle_percent=gpu_idle_percent, idle_minutes=gpu_idle_minutes)],
        },
        {"name": "mlplatform.kueue", "rules": [pending, waiting_while_lent]},
        {"name": "mlplatform.training", "rules": [failed]},
    ]
    return prometheus_rule(namespace, "mlplatform-platform", groups)

"""Per-team GPU usage: GPUs each team holds through Kueue, how busy they are, and the idle alerts.

One PromQL for ``dev`` and EKS. Its two sources:

- **allocated**: ``kueue_cluster_queue_resource_usage{resource="nvidia.com/gpu"}``. Kueue 0.19
  reports the ClusterQueue's *admitted* usage there (its cache's ``AdmittedUsage``; quota merely
  reserved is ``..._resource_reservation``), labelled cohort, cluster_queue, flavor, resource and
  replica_role. A team's ClusterQueue is named after the team and admits only its namespace, so
  ``cluster_queue`` is the team. With Kueue in HA, followers report the same numbers under
  ``replica_role="follower"``: they are left out so nothing is counted twice.
- **busy**: ``DCGM_FI_DEV_GPU_UTIL`` (percent) of every GPU a pod holds. NVIDIA's dcgm-exporter
  (EKS) and fake-gpu-operator's status-exporter (dev) both label a GPU with gpu, UUID, device,
  modelName, Hostname and, while a pod holds it, that pod's namespace, pod and container. Their
  ServiceMonitors keep the target's own labels (``honorLabels: false``), so those arrive as
  ``exported_namespace`` / ``exported_pod``. A GPU at 30% counts as 0.3 busy GPUs, 0.7 idle.

Recording rules turn both into one series per team (label ``team``), evaluated every minute, so a
GPU-hour is a sum of samples: ``sum_over_time(record[range]) * 60 / 3600``. Minutes without data
(Prometheus down, history past retention) count as nothing rather than as the average.
"""

from __future__ import annotations

from typing import Any

from .team_queries import GPU, selector

__all__ = [
    "ALLOCATED",
    "BUSY",
    "IDLE",
    "RECORDS",
    "RECORD_INTERVAL_SECONDS",
    "UTILIZATION",
    "gpu_hours",
    "recording_group",
]

RECORD_INTERVAL_SECONDS = 60
ALLOCATED = "team:gpus_allocated:sum"  # GPUs Kueue has admitted for the team's workloads
BUSY = "team:gpus_busy:sum"  # the team's pods' GPUs, weighted by utilisation
IDLE = "team:gpus_idle:sum"  # admitted but not busy
UTILIZATION = "team:gpu_utilization:percent"  # busy / admitted, only while the team holds GPUs
RECORDS = (ALLOCATED, BUSY, IDLE)

_NOT_FOLLOWER = 'replica_role!="follower"'
_KUEUE_GPUS = f"kueue_cluster_queue_resource_usage{selector(GPU, _NOT_FOLLOWER)}"
_POD_GPUS = 'DCGM_FI_DEV_GPU_UTIL{exported_pod!=""}'


def _as_team(expr: str, label: str) -> str:
    return f'label_replace({expr}, "team", "$1", "{label}", "(.+)")'


def recording_group() -> dict[str, Any]:
    """The rule group recording allocated, busy and idle GPUs per team, once a minute.

    Rules in a group run in order at the same instant, so later ones read earlier ones' fresh values.
    Busy is recorded as 0 for a team holding GPUs none of its pods uses, so the series never has gaps
    while the team holds GPUs. Pods outside Kueue (serving) that hold GPUs count as busy for their
    namespace, whose allocation may then be 0.
    """
    rules = [
        {"record": ALLOCATED, "expr": f"sum by (team) ({_as_team(_KUEUE_GPUS, 'cluster_queue')})"},
        {
            "record": BUSY,
            "expr": f"(sum by (team) ({_as_team(_POD_GPUS, 'exported_namespace')}) / 100) or ({ALLOCATED} * 0)",
        },
        {"record": IDLE, "expr": f"clamp_min({ALLOCATED} - {BUSY}, 0)"},
        {"record": UTILIZATION, "expr": f"100 * {BUSY} / ({ALLOCATED} > 0)"},
    ]
    return {"name": "mlplatform.gpu-usage", "interval": f"{RECORD_INTERVAL_SECONDS}s", "rules": rules}


def gpu_hours(record: str, window: str, *matchers: str) -> str:
    """GPU-hours one of ``RECORDS`` adds up to over ``window`` (a PromQL duration), per team."""
    return f"sum_over_time({record}{selector(*matchers)}[{window}]) * {RECORD_INTERVAL_SECONDS} / 3600"

"""Every GPU, Kueue and serving expression (dashboards, rules, alerts, the HPA's) on Prometheus' engine.

One hour of sample series (scraped every 15s, rules evaluated every minute) for a small platform: two teams sharing two
guaranteed GPUs, the simulated GPU exporter's series for three GPUs, Kueue's metrics, the
recommender's and kube-state-metrics'. Each expression is run by ``promtool test rules`` at the
end of that hour and must give the numbers worked out by hand in ``EXPECTED``. A panel, rule or
alert added without an expectation fails ``test_every_expression_has_an_expectation``.

Grafana's variables become: ``$team`` all teams, ``$namespace``/``$service`` the recommender's,
``$__rate_interval`` 5m, ``$__range`` 1h. Values are compared rounded to 1e-6 (``round``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlplatform.monitoring import gpu_usage as u
from tests.promtool import EKS_DCGM, SIMULATED_DCGM, assert_passes, gpu_series, run_promtool, series
from tests.test_monitoring import all_rules, load_dashboards
from workloads.bookstore_monitoring import REQUESTS_SERIES, adapter_rules

INF = float("inf")
SCRAPE_SECONDS = 15
SAMPLES = 60 * 60 // SCRAPE_SECONDS  # one hour
# At the last sample. No series has a sample at 0, so the rules record nothing there and a [1h]
# window holds the same 60 recorded minutes whether its left edge counts (Prometheus 2) or not (3).
AT = "60m"
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$team": ".*",
    "$namespace": "bookstore-ml",
    "$service": "recommender",
}
TEAM, OTHER = "bookstore-ml", "vision"
GPU_LABELS = {"cohort": "ml-teams", "flavor": "gpu", "resource": "nvidia.com/gpu", "replica_role": "standalone"}
CPU_LABELS = {"cohort": "ml-teams", "flavor": "default-flavor", "resource": "cpu", "replica_role": "standalone"}
APP = {"namespace": TEAM, "service": "recommender", "job": "recommender", "endpoint": "http"}
P1, P2, P3 = "recommender-7d9f-abcde", "recommender-7d9f-fghij", "recommender-7d9f-klmno"
KSM = {"job": "kube-state-metrics", "namespace": TEAM, "deployment": "recommender"}


def steady(value: float) -> str:
    return f"_ {value}+0x{SAMPLES - 1}"


def counter(per_minute: float) -> str:
    """A counter rising ``per_minute`` a minute."""
    return f"_ 0+{per_minute * SCRAPE_SECONDS / 60}x{SAMPLES - 1}"


def input_series() -> list[dict[str, str]]:
    node = SIMULATED_DCGM
    held = (TEAM, "train-0")
    other = (OTHER, "notebook-0")
    gpus = [
        gpu_series("DCGM_FI_DEV_GPU_UTIL", node, 0, steady(75), held),
        gpu_series("DCGM_FI_DEV_GPU_UTIL", node, 1, steady(5), other),
        gpu_series("DCGM_FI_DEV_GPU_UTIL", node, 2, steady(0)),
        gpu_series("DCGM_FI_DEV_FB_USED", node, 0, steady(1000), held),
        gpu_series("DCGM_FI_DEV_FB_USED", node, 1, steady(500), other),
        gpu_series("DCGM_FI_DEV_FB_USED", node, 2, steady(0)),
        gpu_series("DCGM_FI_DEV_FB_FREE", node, 0, steady(39000), held),
        gpu_series("DCGM_FI_DEV_FB_FREE", node, 1, steady(39500), other),
        gpu_series("DCGM_FI_DEV_FB_FREE", node, 2, steady(40000)),
        # The simulated exporter has no power counter (status-exporter v0.2.0 emits GPU_UTIL, FB_USED
        # and FB_FREE only): power is dcgm-exporter's, on an EKS node.
        gpu_series("DCGM_FI_DEV_POWER_USAGE", EKS_DCGM, 0, steady(150), held),
        gpu_series("DCGM_FI_DEV_POWER_USAGE", EKS_DCGM, 1, steady(50)),
    ]
    kueue = []
    # bookstore-ml is guaranteed 1 GPU and uses 2 (one borrowed from vision, which uses none and
    # waits with an inadmissible workload); 4 CPUs each, no shared quota in the cohort.
    for team, gpus_used, cpus_used in ((TEAM, 2, 2), (OTHER, 0, 1)):
        cq = {"cluster_queue": team}
        kueue += [
            series("kueue_cluster_queue_resource_usage", {**GPU_LABELS, **cq}, steady(gpus_used)),
            series("kueue_cluster_queue_nominal_quota", {**GPU_LABELS, **cq}, steady(1)),
            series("kueue_cluster_queue_lending_limit", {**GPU_LABELS, **cq}, steady(INF)),
            series("kueue_cluster_queue_resource_usage", {**CPU_LABELS, **cq}, steady(cpus_used)),
            series("kueue_cluster_queue_nominal_quota", {**CPU_LABELS, **cq}, steady(4)),
            series("kueue_cluster_queue_lending_limit", {**CPU_LABELS, **cq}, steady(INF)),
            series(
                "kueue_admitted_active_workloads",
                {**cq, "replica_role": "standalone"},
                steady(2 if team == TEAM else 0),
            ),
            series(
                "kueue_cluster_queue_weighted_share",
                {**cq, "replica_role": "standalone"},
                steady(500 if team == TEAM else 0),
            ),
        ]
    kueue += [
        series("kueue_cohort_subtree_quota", GPU_LABELS, steady(2)),
        series("kueue_cohort_subtree_quota", CPU_LABELS, steady(8)),
        series("kueue_pending_workloads", {"cluster_queue": TEAM, "status": "active"}, steady(1)),
        series("kueue_pending_workloads", {"cluster_queue": TEAM, "status": "inadmissible"}, steady(0)),
        series("kueue_pending_workloads", {"cluster_queue": OTHER, "status": "active"}, steady(0)),
        series("kueue_pending_workloads", {"cluster_queue": OTHER, "status": "inadmissible"}, steady(1)),
        series("kueue_admitted_workloads_total", {"cluster_queue": TEAM}, counter(1)),
        series("kueue_evicted_workloads_total", {"cluster_queue": OTHER, "reason": "Preempted"}, counter(0)),
        # Admission waits: one a minute under 1s, one a minute between 1s and 10s.
        series("kueue_admission_wait_time_seconds_bucket", {"cluster_queue": TEAM, "le": "1"}, counter(1)),
        series("kueue_admission_wait_time_seconds_bucket", {"cluster_queue": TEAM, "le": "10"}, counter(2)),
        series("kueue_admission_wait_time_seconds_bucket", {"cluster_queue": TEAM, "le": "+Inf"}, counter(2)),
    ]
    recommender = [
        series("recommender_requests_total", {**APP, "pod": P1, "route": "/recommend", "status": "200"}, counter(60)),
        series("recommender_requests_total", {**APP, "pod": P1, "route": "/recommend", "status": "500"}, counter(6)),
        series("recommender_requests_total", {**APP, "pod": P2, "route": "/recommend", "status": "200"}, counter(120)),
        series("recommender_requests_total", {**APP, "pod": P1, "route": "/live", "status": "200"}, counter(30)),
        # A third pod cannot load its model: its readiness probe gets 503s no user ever sees.
        series("recommender_requests_total", {**APP, "pod": P3, "route": "/ready", "status": "503"}, counter(6)),
        # Latency: 50% under 50ms, 90% under 100ms.
        *[
            series(
                "recommender_request_duration_seconds_bucket",
                {**APP, "pod": P1, "route": "/recommend", "le": le},
                counter(n),
            )
            for le, n in (("0.05", 30), ("0.1", 54), ("+Inf", 60))
        ],
        series(
            "recommender_model_info",
            {**APP, "pod": P1, "model": "bookstore", "alias": "production", "version": "3"},
            steady(1),
        ),
        series("recommender_model_reloads_total", {**APP, "pod": P1, "result": "success"}, counter(1)),
        series("recommender_model_reloads_total", {**APP, "pod": P2, "result": "failed"}, counter(1)),
        series("recommender_model_last_reload_success", {**APP, "pod": P1}, steady(1)),
        series("recommender_model_last_reload_success", {**APP, "pod": P2}, steady(0)),
        series("recommender_model_ready", {**APP, "pod": P1}, steady(1)),
        series("recommender_model_ready", {**APP, "pod": P2}, steady(1)),
        series("recommender_model_load_seconds", {**APP, "pod": P1}, steady(1.5)),
        series("recommender_model_load_seconds", {**APP, "pod": P2}, steady(2.5)),
        series("kube_deployment_status_replicas_ready", KSM, steady(2)),
        series("kube_deployment_spec_replicas", KSM, steady(2)),
        series(
            "kube_job_failed",
            {"job": "kube-state-metrics", "namespace": OTHER, "job_name": "train-v-1", "condition": "true"},
            steady(1),
        ),
        series(
            "kube_job_failed",
            {"job": "kube-state-metrics", "namespace": OTHER, "job_name": "train-v-1", "condition": "false"},
            steady(0),
        ),
    ]
    return [*gpus, *kueue, *recommender]


def gpu_labels(exporter: Mapping[str, str], gpu: int, holder: tuple[str, str] | None = None) -> dict[str, str]:
    """The labels ``gpu_series`` gives a GPU (to state expected outputs that keep every label)."""
    spec = gpu_series("X", exporter, gpu, "0", holder)["series"]
    return dict(pair.split("=", 1) for pair in spec[2:-1].replace('"', "").split(", "))


HA = SIMULATED_DCGM["Hostname"]
Sample = tuple[Mapping[str, str], float]
PENDING: list[Sample] = [
    ({"cluster_queue": TEAM, "status": "active"}, 1),
    ({"cluster_queue": TEAM, "status": "inadmissible"}, 0),
    ({"cluster_queue": OTHER, "status": "active"}, 0),
    ({"cluster_queue": OTHER, "status": "inadmissible"}, 1),
]
# What each expression gives at the end of the hour, by "<dashboard>/<panel title>/<refId>" or
# "rule/<alert or record>". An empty list: no series (e.g. an alert that must not fire).
EXPECTED: dict[str, list[Sample]] = {
    # -- GPU dashboard ---------------------------------------------------------------------
    "gpu/GPU utilisation per node/A": [({"Hostname": HA}, (75 + 5 + 0) / 3)],
    "gpu/GPU utilisation per pod/A": [
        ({"exported_namespace": TEAM, "exported_pod": "train-0"}, 75),
        ({"exported_namespace": OTHER, "exported_pod": "notebook-0"}, 5),
    ],
    "gpu/GPU memory used per node/A": [({"Hostname": HA}, 1500)],
    "gpu/GPU memory used per node/B": [({"Hostname": HA}, 120000)],
    "gpu/GPU memory used per pod/A": [
        ({"exported_namespace": TEAM, "exported_pod": "train-0"}, 1000),
        ({"exported_namespace": OTHER, "exported_pod": "notebook-0"}, 500),
    ],
    "gpu/Power per node/A": [({"Hostname": EKS_DCGM["Hostname"]}, 200)],
    "gpu/Power per pod/A": [({"exported_namespace": TEAM, "exported_pod": "train-0"}, 150)],
    "gpu/Idle GPUs (< 10% busy)/A": [({}, 2)],  # the notebook's 5% and the free one
    "gpu/Allocated but idle/A": [
        ({"Hostname": HA, "gpu": "1", "exported_namespace": OTHER, "exported_pod": "notebook-0"}, 5)
    ],
    # vision's notebook holds a GPU outside Kueue: busy, but nothing allocated (and never negative idle).
    "gpu/Team: GPUs allocated, busy and idle/A": [({"team": TEAM}, 2), ({"team": OTHER}, 0)],
    "gpu/Team: GPUs allocated, busy and idle/B": [({"team": TEAM}, 0.75), ({"team": OTHER}, 0.05)],
    "gpu/Team: GPUs allocated, busy and idle/C": [({"team": TEAM}, 1.25), ({"team": OTHER}, 0)],
    # Over the hour: 60 one-minute samples.
    "gpu/Team: GPU-hours over the time range/A": [({"team": TEAM}, 2), ({"team": OTHER}, 0)],
    "gpu/Team: GPU-hours over the time range/B": [({"team": TEAM}, 0.75), ({"team": OTHER}, 0.05)],
    "gpu/Team: GPU-hours over the time range/C": [({"team": TEAM}, 1.25), ({"team": OTHER}, 0)],
    # -- Kueue dashboard -------------------------------------------------------------------
    "kueue/Pending workloads/A": PENDING,
    "kueue/Admitted active workloads/A": [({"cluster_queue": TEAM}, 2), ({"cluster_queue": OTHER}, 0)],
    "kueue/Quota used vs nominal/A": [
        ({"cluster_queue": TEAM, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 2),
        ({"cluster_queue": OTHER, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 0),
        ({"cluster_queue": TEAM, "flavor": "default-flavor", "resource": "cpu"}, 0.5),
        ({"cluster_queue": OTHER, "flavor": "default-flavor", "resource": "cpu"}, 0.25),
    ],
    "kueue/Quota used and nominal/A": [
        ({"cluster_queue": TEAM, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 2),
        ({"cluster_queue": OTHER, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 0),
        ({"cluster_queue": TEAM, "flavor": "default-flavor", "resource": "cpu"}, 2),
        ({"cluster_queue": OTHER, "flavor": "default-flavor", "resource": "cpu"}, 1),
    ],
    "kueue/Quota used and nominal/B": [
        ({"cluster_queue": TEAM, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 1),
        ({"cluster_queue": OTHER, "flavor": "gpu", "resource": "nvidia.com/gpu"}, 1),
        ({"cluster_queue": TEAM, "flavor": "default-flavor", "resource": "cpu"}, 4),
        ({"cluster_queue": OTHER, "flavor": "default-flavor", "resource": "cpu"}, 4),
    ],
    # Half the waits are under 1s: p50 is the first bucket's top. p95: 0.9 of the way through 1s..10s.
    "kueue/Time to admission/A": [({"cluster_queue": TEAM}, 1)],
    "kueue/Time to admission/B": [({"cluster_queue": TEAM}, 1 + 9 * 0.9)],
    "kueue/Admissions and evictions/A": [({"cluster_queue": TEAM}, 1 / 60)],
    "kueue/Admissions and evictions/B": [({"cluster_queue": OTHER, "reason": "Preempted"}, 0)],
    "kueue/Team: pending and admitted workloads/A": PENDING,
    "kueue/Team: pending and admitted workloads/B": [({"cluster_queue": TEAM}, 2), ({"cluster_queue": OTHER}, 0)],
    "kueue/Team: GPUs in use and guaranteed/A": [({"cluster_queue": TEAM}, 2), ({"cluster_queue": OTHER}, 0)],
    "kueue/Team: GPUs in use and guaranteed/B": [({"cluster_queue": TEAM}, 1), ({"cluster_queue": OTHER}, 1)],
    "kueue/Team: GPUs borrowed/A": [({"cluster_queue": TEAM}, 1), ({"cluster_queue": OTHER}, 0)],
    "kueue/Team: GPUs lent/A": [({"cluster_queue": TEAM}, 0), ({"cluster_queue": OTHER}, 1)],
    # The hour of data the day holds: 2 GPU-hours (an average of the hour times 24 said 48).
    "kueue/Team: GPU-hours over the last day/A": [({"team": TEAM}, 2), ({"team": OTHER}, 0)],
    "kueue/Team: fair share/A": [({"cluster_queue": TEAM}, 500), ({"cluster_queue": OTHER}, 0)],
    # -- Recommender serving dashboard (probes excluded from the load panels) ------------------
    "recommender/Requests/s by route/A": [({"route": "/recommend"}, 1 + 0.1 + 2)],
    "recommender/Requests/s per pod (the autoscaling signal)/A": [({"pod": P1}, 1.1), ({"pod": P2}, 2)],
    "recommender/Latency p50 / p95 / p99/A": [({}, 0.05)],
    "recommender/Latency p50 / p95 / p99/B": [({}, 0.1)],  # in the +Inf bucket: the last finite bound
    "recommender/Latency p50 / p95 / p99/C": [({}, 0.1)],
    # Users' requests only: neither the /live probe's 0.5 requests/s nor the unready pod's /ready 503s count.
    "recommender/Error ratio (5xx)/A": [({}, 0.1 / 3.1)],
    # Per route: only routes that had a 5xx have a ratio.
    "recommender/Error ratio (5xx)/B": [({"route": "/recommend"}, 0.1 / 3.1)],
    "recommender/Model version per pod/A": [
        ({"pod": P1, "model": "bookstore", "alias": "production", "version": "3"}, 1)
    ],
    "recommender/Model reloads/A": [({"result": "success"}, 5), ({"result": "failed"}, 5)],
    "recommender/Model reloads/B": [({}, 0)],
    "recommender/Ready replicas/A": [(KSM, 2)],
    "recommender/Ready replicas/B": [(KSM, 2)],
    "recommender/Ready replicas/C": [({}, 2)],
    "recommender/Model load time/A": [({"pod": P1}, 1.5), ({"pod": P2}, 2.5)],
    # -- Recording rules and alerts (the expression's value; firing is checked below) ----------
    f"rule/{u.ALLOCATED}": [({"team": TEAM}, 2), ({"team": OTHER}, 0)],
    f"rule/{u.BUSY}": [({"team": TEAM}, 0.75), ({"team": OTHER}, 0.05)],
    f"rule/{u.IDLE}": [({"team": TEAM}, 1.25), ({"team": OTHER}, 0)],
    f"rule/{u.UTILIZATION}": [({"team": TEAM}, 37.5)],  # vision holds no admitted GPU
    "rule/GpuAllocatedButIdle": [
        ({"Hostname": HA, "gpu": "1", "exported_namespace": OTHER, "exported_pod": "notebook-0"}, 5)
    ],
    "rule/TeamGpusIdle": [],  # 37.5% busy is not idle
    "rule/KueueWorkloadsPendingTooLong": [
        ({"cluster_queue": TEAM, "status": "active"}, 1),
        ({"cluster_queue": OTHER, "status": "inadmissible"}, 1),
    ],
    # vision waits while bookstore-ml uses its GPU; bookstore-ml waits too but lends nothing.
    "rule/TeamWaitsWhileItsQuotaIsLent": [({"cluster_queue": OTHER}, 1)],
    "rule/TrainingJobFailed": [
        ({"job": "kube-state-metrics", "namespace": OTHER, "job_name": "train-v-1", "condition": "true"}, 1)
    ],
    "rule/ServingNoReadyEndpoints": [],
    "rule/ServingErrorRatioOverBudget": [({}, 0.1 / 3.1)],  # as the panel: probes are not users
    "rule/ModelReloadFailing": [({**APP, "pod": P2}, 0)],
    # The HPA's signal: user requests/s per pod (the unready pod's probes are not load).
    "adapter/recommender_requests_per_second": [({"pod": P1}, 1.1), ({"pod": P2}, 2)],
}
# Alerts firing at the end of the hour (each has held longer than its `for`).
FIRING = {
    "GpuAllocatedButIdle": 1,
    "KueueWorkloadsPendingTooLong": 2,
    "TeamWaitsWhileItsQuotaIsLent": 1,
    "TrainingJobFailed": 1,
    "ServingErrorRatioOverBudget": 1,
    "ModelReloadFailing": 1,
}


def concrete(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


def expressions() -> Iterator[tuple[str, str]]:
    """(key, expression) for every panel target and every rule the platform ships."""
    for stem, board in load_dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield f"{stem}/{panel['title']}/{target['refId']}", target["expr"]
    for rule in all_rules():
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                yield f"rule/{r.get('alert') or r['record']}", r["expr"]
    for adapter in adapter_rules():  # as prometheus-adapter fills its template for the HPA's query
        query = adapter["metricsQuery"].replace("<<.Series>>", REQUESTS_SERIES).replace("<<.GroupBy>>", "pod")
        yield f"adapter/{adapter['name']['as']}", query.replace("<<.LabelMatchers>>", f'namespace="{TEAM}"')


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def expr_test(expr: str, samples: list[Sample]) -> dict[str, Any]:
    return {
        "expr": f"round(({concrete(expr)}), 0.000001)",
        "eval_time": AT,
        "exp_samples": [{"labels": _labels(labels), "value": round(value, 6)} for labels, value in samples],
    }


def rule_groups() -> list[dict[str, Any]]:
    return [g for rule in all_rules() for g in rule["spec"]["groups"]]


def test_every_expression_has_an_expectation() -> None:
    keys = [key for key, _ in expressions()]
    assert len(keys) == len(set(keys)), "two targets share a key: give panels distinct titles"
    assert set(keys) == set(EXPECTED)


def test_every_expression_gives_the_expected_numbers_on_the_real_engine(tmp_path: Path) -> None:
    checks = [expr_test(expr, EXPECTED[key]) for key, expr in expressions()]
    firing = 'ALERTS{alertstate="firing"}'
    checks.append(
        {
            "expr": f"count by (alertname) ({firing})",
            "eval_time": AT,
            "exp_samples": [{"labels": _labels({"alertname": a}), "value": n} for a, n in FIRING.items()],
        }
    )
    test = {"interval": f"{SCRAPE_SECONDS}s", "input_series": input_series(), "promql_expr_test": checks}
    assert_passes(run_promtool(tmp_path, rule_groups(), [test]))

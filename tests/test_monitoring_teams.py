"""The Kueue dashboard shows each team's share, and an alert fires when a team waits while its guarantee is lent.

The expressions come from one place (mlplatform/monitoring/team_queries.py); the metric names they
read are checked against Kueue's documented metrics by tests/test_monitoring.py.
"""

from __future__ import annotations

from mlplatform.monitoring import load_dashboards, platform_rules
from mlplatform.monitoring import team_queries as q
from mlplatform.monitoring.gpu_usage import ALLOCATED, gpu_hours
from tests.promql_eval import Series, evaluate

TEAM = 'cluster_queue=~"$team"'


def panels() -> dict[str, list[str]]:
    board = load_dashboards()["kueue"]
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]}


def test_the_dashboard_has_a_panel_per_team_view_the_issue_asks_for() -> None:
    found = panels()
    assert found["Team: GPUs in use and guaranteed"][0] == q.in_use(team=TEAM)
    assert found["Team: GPUs borrowed"] == [q.borrowed(team=TEAM)]
    assert found["Team: GPUs lent"] == [f"sum by (cluster_queue) ({q.lent(team=TEAM)})"]
    assert found["Team: GPU-hours over the last day"] == [gpu_hours(ALLOCATED, "1d", 'team=~"$team"')]
    pending = found["Team: pending and admitted workloads"]
    assert "kueue_pending_workloads" in pending[0] and "kueue_admitted_active_workloads" in pending[1]
    for title, exprs in found.items():
        if title.startswith("Team: ") and "GPU-hours" not in title:
            assert all(TEAM in e and "by (cluster_queue" in e for e in exprs), title
    team = next(v for v in load_dashboards()["kueue"]["templating"]["list"] if v["name"] == "team")
    assert team["includeAll"] and team["definition"] == "label_values(kueue_cluster_queue_nominal_quota, cluster_queue)"


def kueue_series(
    usage: dict[str, float], nominal: dict[str, float], lending: dict[str, float], cohort: float
) -> list[Series]:
    """What Kueue exports for a cohort ``ml-teams`` of teams sharing GPUs (one flavor, one resource)."""
    out: list[Series] = []
    for team in usage:
        labels = {"cohort": "ml-teams", "cluster_queue": team, "flavor": "gpu", "resource": "nvidia.com/gpu",
                  "replica_role": "standalone"}  # fmt: skip
        out += [
            ("kueue_cluster_queue_resource_usage", labels, usage[team]),
            ("kueue_cluster_queue_nominal_quota", labels, nominal[team]),
            ("kueue_cluster_queue_lending_limit", labels, lending[team]),
        ]
    cohort_labels = {"cohort": "ml-teams", "flavor": "gpu", "resource": "nvidia.com/gpu", "replica_role": "standalone"}
    return [*out, ("kueue_cohort_subtree_quota", cohort_labels, cohort)]


def per_team(value: object) -> dict[str, float]:
    assert isinstance(value, dict)
    return {dict(labels)["cluster_queue"]: v for labels, v in value.items()}


INF = float("inf")


def test_lent_is_an_unused_guarantee_covering_others_borrowing_beyond_the_shared_quota() -> None:
    # a and b are guaranteed 1 GPU each; the cohort has 3 (1 nobody is guaranteed). b is idle.
    lent = f"sum by (cluster_queue) ({q.lent()})"
    uses_all = kueue_series({"a": 3, "b": 0}, {"a": 1, "b": 1}, {"a": INF, "b": INF}, 3)
    assert per_team(evaluate(lent, uses_all)) == {"a": 0, "b": 1}  # a has the shared GPU and b's
    assert per_team(evaluate(q.borrowed(), uses_all)) == {"a": 2, "b": 0}
    assert per_team(evaluate(q.in_use(), uses_all)) == {"a": 3, "b": 0}
    shared_only = kueue_series({"a": 2, "b": 0}, {"a": 1, "b": 1}, {"a": INF, "b": INF}, 3)
    assert per_team(evaluate(lent, shared_only)) == {"a": 0, "b": 0}  # only what nobody is guaranteed
    keeps_it = kueue_series({"a": 3, "b": 0}, {"a": 1, "b": 1}, {"a": INF, "b": 0}, 3)
    assert per_team(evaluate(lent, keeps_it))["b"] == 0  # lendingLimit 0: never lent


def test_the_alert_fires_for_the_waiting_team_whose_guarantee_is_lent() -> None:
    rule = platform_rules("monitoring", ml_namespaces=["a", "b"])
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    (expr,) = [r["expr"] for r in rules if r.get("alert") == "TeamWaitsWhileItsQuotaIsLent"]
    usage = kueue_series({"a": 3, "b": 0}, {"a": 1, "b": 1}, {"a": INF, "b": INF}, 3)
    waiting = [("kueue_pending_workloads", {"cluster_queue": "b", "status": "inadmissible"}, 1.0),
               ("kueue_pending_workloads", {"cluster_queue": "a", "status": "active"}, 2.0)]  # fmt: skip
    # a waits too, but nothing of a's is lent: only b's wait is the platform's fault.
    assert per_team(evaluate(expr, [*usage, *waiting])) == {"b": 1}
    assert evaluate(expr, [*kueue_series({"a": 2, "b": 0}, {"a": 1, "b": 1}, {"a": INF, "b": INF}, 3), *waiting]) == {}


def test_a_team_waiting_while_its_guarantee_is_lent_raises_an_alert() -> None:
    rule = platform_rules("monitoring", ml_namespaces=["a", "b"], reclaim_within="20m")
    (group,) = [g for g in rule["spec"]["groups"] if g["name"] == "mlplatform.kueue"]
    alert = next(r for r in group["rules"] if r.get("alert") == "TeamWaitsWhileItsQuotaIsLent")
    assert alert["for"] == "20m" and alert["labels"]["severity"] == "warning"
    assert alert["expr"].startswith(
        '(sum by (cluster_queue) (kueue_pending_workloads{status=~"active|inadmissible"}) > 0)'
    )
    # Any resource of the team's guarantee counts, not only GPUs.
    assert q.lent(resource="") in alert["expr"] and 'resource="nvidia.com/gpu"' not in alert["expr"]
    assert "reclaimWithinCohort" in alert["annotations"]["runbook"]
    default = platform_rules("monitoring", ml_namespaces=["a"])
    assert any(r.get("for") == "15m" for g in default["spec"]["groups"] for r in g["rules"]
               if r.get("alert") == "TeamWaitsWhileItsQuotaIsLent")  # fmt: skip

"""Per-team GPU usage records and the idle alerts, on Prometheus' own engine (promtool).

Sample series: Kueue's admitted usage per ClusterQueue, and GPU utilisation with the labels the
simulated exporter (dev) and NVIDIA's dcgm-exporter (EKS) emit. The same rules must give the same
numbers for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlplatform.monitoring import gpu_usage as u
from mlplatform.monitoring import load_dashboards, platform_rules
from tests.promtool import EKS_DCGM, SIMULATED_DCGM, assert_passes, gpu_series, promtool, run_promtool, series

UTIL = "DCGM_FI_DEV_GPU_UTIL"
HOURS = 2  # the input series run for 2 hours at one sample a minute
N = HOURS * 60


def kueue(team: str, values: str, role: str = "standalone") -> dict[str, str]:
    labels = {"cohort": "ml-teams", "cluster_queue": team, "flavor": "gpu", "resource": "nvidia.com/gpu",
              "replica_role": role, "job": "kueue-controller-manager-metrics-service"}  # fmt: skip
    return series("kueue_cluster_queue_resource_usage", labels, values)


def cluster(exporter: dict[str, str]) -> list[dict[str, str]]:
    """Five teams on two GPU nodes of ``exporter``'s kind, two hours long.

    idle: 2 GPUs admitted, both 0% busy.            busy: 1 GPU admitted, 75% busy.
    half: 2 GPUs admitted, one 100%, one 0%.        none: admits nothing, holds nothing.
    late: nothing for 60m, then 1 GPU for 30m at 50% (its pod exists only then), then nothing.
    A free GPU (no pod) at 0% and a Kueue follower replica repeating "idle" must count nowhere.
    """
    node_a = exporter
    node_b = {**exporter, "Hostname": exporter["Hostname"] + "-b", "instance": "10.244.3.9:9400"}
    # The late pod's GPU: no series before 60m; at 90m the pod is gone and the scrape marks the series stale.
    late_gpu = "_x60 50+0x29 stale"
    return [
        kueue("idle", f"2+0x{N}"),
        kueue("idle", f"2+0x{N}", role="follower"),
        kueue("busy", f"1+0x{N}"),
        kueue("half", f"2+0x{N}"),
        kueue("none", f"0+0x{N}"),
        kueue("late", f"0+0x59 1+0x29 0+0x{N - 90}"),
        gpu_series(UTIL, node_a, 0, f"0+0x{N}", holder=("idle", "idle-train-0")),
        gpu_series(UTIL, node_a, 1, f"0+0x{N}", holder=("idle", "idle-train-1")),
        gpu_series(UTIL, node_a, 2, f"75+0x{N}", holder=("busy", "busy-train-0")),
        gpu_series(UTIL, node_a, 3, f"0+0x{N}"),  # free
        gpu_series(UTIL, node_b, 0, f"100+0x{N}", holder=("half", "half-train-0")),
        gpu_series(UTIL, node_b, 1, f"0+0x{N}", holder=("half", "half-train-1")),
        gpu_series(UTIL, node_b, 2, late_gpu, holder=("late", "late-train-0")),
    ]


def per_team(expr: str, at: str, values: dict[str, float]) -> dict[str, Any]:
    """``expr`` gives ``values`` per team at ``at``; a bare recorded series keeps its name."""
    name = expr if expr in (*u.RECORDS, u.UTILIZATION) else ""
    return {
        "expr": expr,
        "eval_time": at,
        "exp_samples": [{"labels": f'{name}{{team="{team}"}}', "value": value} for team, value in values.items()],
    }


def team_alert(team: str, percent: str) -> dict[str, Any]:
    rule = u_rule("TeamGpusIdle")
    summary = rule["annotations"]["summary"].replace("{{ $labels.team }}", team)
    return {
        "exp_labels": {"alertname": "TeamGpusIdle", "severity": "warning", "team": team},
        "exp_annotations": {
            "summary": summary.replace("{{ $value | humanize }}", percent),
            "runbook": rule["annotations"]["runbook"].replace("{{ $labels.team }}", team),
        },
    }


def gpu_alert(exporter: dict[str, str], gpu: int, team: str, pod: str) -> dict[str, Any]:
    rule = u_rule("GpuAllocatedButIdle")
    labels = {"gpu": str(gpu), "Hostname": exporter["Hostname"], "exported_namespace": team, "exported_pod": pod}
    summary = rule["annotations"]["summary"]
    for key, val in labels.items():
        summary = summary.replace(f"{{{{ $labels.{key} }}}}", val)
    return {
        "exp_labels": {"alertname": "GpuAllocatedButIdle", "severity": "warning", **labels},
        "exp_annotations": {"summary": summary, "runbook": rule["annotations"]["runbook"]},
    }


def rules() -> list[dict[str, Any]]:
    return list(platform_rules("monitoring", ml_namespaces=["idle", "busy", "half", "none", "late"])["spec"]["groups"])


def u_rule(name: str) -> dict[str, Any]:
    return next(r for g in rules() for r in g["rules"] if r.get("alert") == name)


@pytest.mark.parametrize("exporter", [SIMULATED_DCGM, EKS_DCGM], ids=["simulated", "dcgm"])
def test_gpu_hours_and_idle_alerts_on_the_real_engine(tmp_path: Path, exporter: dict[str, str]) -> None:
    node_b = {**exporter, "Hostname": exporter["Hostname"] + "-b"}
    # 30s past the last sample: Prometheus 2 counts a sample on a range's left edge, 3 does not.
    at_end = f"{HOURS}h30s"
    hours = {  # over the whole two hours
        u.ALLOCATED: {"idle": 4, "busy": 2, "half": 4, "none": 0, "late": 0.5},
        u.BUSY: {"idle": 0, "busy": 1.5, "half": 2, "none": 0, "late": 0.25},
        u.IDLE: {"idle": 4, "busy": 0.5, "half": 2, "none": 0, "late": 0.25},
    }
    tests = [
        {
            "interval": "1m",
            "input_series": cluster(exporter),
            "promql_expr_test": [
                per_team(u.ALLOCATED, "70m", {"idle": 2, "busy": 1, "half": 2, "none": 0, "late": 1}),
                per_team(u.BUSY, "70m", {"idle": 0, "busy": 0.75, "half": 1, "none": 0, "late": 0.5}),
                per_team(u.IDLE, "70m", {"idle": 2, "busy": 0.25, "half": 1, "none": 0, "late": 0.5}),
                # Only teams holding GPUs have a utilisation.
                per_team(u.UTILIZATION, "70m", {"idle": 0, "busy": 75, "half": 50, "late": 50}),
                per_team(u.UTILIZATION, "100m", {"idle": 0, "busy": 75, "half": 50}),
                *[per_team(u.gpu_hours(record, "2h"), at_end, values) for record, values in hours.items()],
                # One hour's window: the late team's 30 minutes are inside it.
                per_team(u.gpu_hours(u.ALLOCATED, "1h", 'team="late"'), "100m", {"late": 0.5}),
            ],
            "alert_rule_test": [
                {"eval_time": "29m", "alertname": "TeamGpusIdle", "exp_alerts": []},
                # Fired for the team whose admitted GPUs are idle; not for 75% or 50% busy, nor for late
                # (it held its GPU only 30m, at 50%), nor for none (holds nothing).
                {"eval_time": "31m", "alertname": "TeamGpusIdle", "exp_alerts": [team_alert("idle", "0")]},
                {"eval_time": "110m", "alertname": "TeamGpusIdle", "exp_alerts": [team_alert("idle", "0")]},
                # Per GPU: each idle GPU a pod holds, including half's idle one; never the free GPU.
                {
                    "eval_time": "31m",
                    "alertname": "GpuAllocatedButIdle",
                    "exp_alerts": [
                        gpu_alert(exporter, 0, "idle", "idle-train-0"),
                        gpu_alert(exporter, 1, "idle", "idle-train-1"),
                        gpu_alert(node_b, 1, "half", "half-train-1"),
                    ],
                },
            ],
        }
    ]
    assert_passes(run_promtool(tmp_path, rules(), tests))


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    # The engine really checks the numbers: one GPU-hour too many is a failure, with the values shown.
    test = {
        "interval": "1m",
        "input_series": cluster(SIMULATED_DCGM),
        "promql_expr_test": [per_team(u.gpu_hours(u.ALLOCATED, "2h", 'team="busy"'), "2h", {"busy": 3})],
    }
    run = run_promtool(tmp_path, rules(), [test])
    assert run.returncode != 0
    assert 'team="busy"' in run.stdout + run.stderr


def test_thresholds_come_from_stack_config(tmp_path: Path) -> None:
    custom = platform_rules("monitoring", ml_namespaces=["busy"], gpu_idle_percent=85, gpu_idle_minutes=10)
    alerts = {r["alert"]: r for g in custom["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["TeamGpusIdle"]["expr"] == f"{u.UTILIZATION} < 85" and alerts["TeamGpusIdle"]["for"] == "10m"
    assert alerts["GpuAllocatedButIdle"]["expr"].endswith("< 85") and alerts["GpuAllocatedButIdle"]["for"] == "10m"
    summary = alerts["TeamGpusIdle"]["annotations"]["summary"]
    assert "under 85%" in summary and "for 10m" in summary
    # At 85% the 75%-busy team is idle too, after 10 minutes.
    firing = 'ALERTS{alertname="TeamGpusIdle", alertstate="firing"}'
    test = {
        "interval": "1m",
        "input_series": cluster(SIMULATED_DCGM),
        "promql_expr_test": [
            {"expr": f"count({firing})", "eval_time": "9m", "exp_samples": []},
            {
                "expr": f"sum by (team) ({firing})",
                "eval_time": "11m",
                "exp_samples": [{"labels": f'{{team="{t}"}}', "value": 1} for t in ("busy", "half", "idle")],
            },
        ],
    }
    assert_passes(run_promtool(tmp_path, custom["spec"]["groups"], [test]))


def test_without_promtool_the_tests_fail_and_say_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install prometheus"):
        promtool()


def test_the_gpu_dashboard_has_a_panel_per_team_from_the_same_records() -> None:
    board = load_dashboards()["gpu"]
    panels = {p["title"]: p for p in board["panels"]}
    team = 'team=~"$team"'
    per_team = panels["Team: GPUs allocated, busy and idle"]
    assert per_team["repeat"] == "team"  # Grafana draws one panel per selected team
    assert [t["expr"] for t in per_team["targets"]] == [f"{r}{{{team}}}" for r in u.RECORDS]
    table = panels["Team: GPU-hours over the time range"]
    assert [t["expr"] for t in table["targets"]] == [u.gpu_hours(r, "$__range", team) for r in u.RECORDS]
    variable = next(v for v in board["templating"]["list"] if v["name"] == "team")
    assert variable["definition"] == f"label_values({u.ALLOCATED}, team)" and variable["allValue"] == ".*"

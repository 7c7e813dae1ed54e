"""Dashboards, alerts and the autoscaling metric read only metrics that really exist, in valid PromQL.

Known metric names come from the components themselves: the recommender's real ``/metrics``
output (its ASGI app, called in-process), DCGM's default counters, Kueue's and
kube-state-metrics' documented metrics (fixtures citing their upstream source). A renamed
metric fails here, not silently in a dashboard.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlplatform.monitoring import load_dashboards as platform_dashboards
from mlplatform.monitoring import platform_rules
from mlplatform.monitoring.dashboards import DASHBOARD_DIR
from recommender.contract import METRICS_PATH
from recommender.server import App, ServerConfig
from workloads.bookstore_monitoring import (
    REQUESTS_PER_SECOND_METRIC,
    adapter_rules,
    dashboard,
    requests_per_second_metric,
    serving_rules,
)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard a stack with monitoring ships: the platform's and the recommender's."""
    return {**platform_dashboards(), "recommender": dashboard()}


FIXTURES = Path(__file__).parent / "test_monitoring_fixtures"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
REQUIRED_ALERTS = {
    "ServingNoReadyEndpoints",
    "ServingErrorRatioOverBudget",
    "ModelReloadFailing",
    "GpuAllocatedButIdle",
    "TeamGpusIdle",
    "KueueWorkloadsPendingTooLong",
    "TeamWaitsWhileItsQuotaIsLent",
    "TrainingJobFailed",
}
# Grafana's built-in range variables -> a duration PromQL accepts.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


# -- what components expose ------------------------------------------------------------------


def _asgi_get(app: App, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    # A private loop: asyncio.run() would leave the thread without a current loop, which the
    # Pulumi mocks in other test modules rely on.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def exposition_names(text: str) -> set[str]:
    """Every series name an exposition can carry: sample names plus each family's typed suffixes
    (a labelled counter with no child yet still declares its family)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        if family.type == "info":
            names.add(f"{family.name}_info")
        elif family.type in SUFFIXES:
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        else:
            names.add(family.name)
    return names


@cache
def recommender_metrics_text() -> str:
    app = App(ServerConfig(registry=Path("/nonexistent-registry"), model="bookstore"))
    assert _asgi_get(app, "/live")[0] == 200  # one request, so the request counter has samples
    status, body = _asgi_get(app, METRICS_PATH)
    assert status == 200
    return body.decode()


def _fixture_names(name: str) -> set[str]:
    lines = (FIXTURES / name).read_text().splitlines()
    return {line.split("\t")[0] for line in lines if line.strip() and not line.startswith("#")}


@cache
def kueue_names() -> set[str]:
    names = set()
    for line in (FIXTURES / "kueue-metrics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind = line.split("\t")
            names.add(name)
            if kind == "histogram":
                names |= {name + suffix for suffix in SUFFIXES["histogram"]}
    return names


@cache
def known_metrics() -> dict[str, set[str]]:
    return {
        "recommender": exposition_names(recommender_metrics_text()),
        "dcgm": _fixture_names("dcgm-default-counters.txt"),
        "kueue": kueue_names(),
        "kube-state-metrics": _fixture_names("kube-state-metrics.txt"),
    }


def all_known() -> set[str]:
    return set().union(*known_metrics().values(), recorded_names())


# -- PromQL ----------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects, from the real parser's AST (raises on a syntax error)."""
    for variable, duration in GRAFANA_RANGES.items():
        expr = expr.replace(variable, duration)
    return set(_walk(promql_parser.parse(expr)))


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        for matcher in node.matchers.matchers:
            if matcher.name == "__name__":
                yield matcher.value
        return
    children: list[Any] = []
    if isinstance(node, promql_parser.MatrixSelector):
        children = [node.vector_selector]
    elif isinstance(node, promql_parser.Call):
        children = list(node.args)
    elif isinstance(node, promql_parser.AggregateExpr):
        children = [node.expr, node.param]
    elif isinstance(node, promql_parser.BinaryExpr):
        children = [node.lhs, node.rhs]
    elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        children = [node.expr]
    for child in children:
        if child is not None:
            yield from _walk(child)


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            exprs.append(match.group(1))
    return exprs


def rule_exprs(rule: dict[str, Any]) -> dict[str, str]:
    """Every rule's expression, by alert name or recorded series name."""
    return {r.get("alert") or r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for rule in all_rules() for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


@cache
def recorded_names() -> set[str]:
    """Series the platform's own recording rules produce (dashboards and alerts read them)."""
    return {r["record"] for rule in all_rules() for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}


def all_rules() -> list[dict[str, Any]]:
    return [
        platform_rules("monitoring", ml_namespaces=["bookstore-ml", "vision"]),
        serving_rules("bookstore-ml", "recommender"),
    ]


# -- tests -----------------------------------------------------------------------------------


def test_recommender_metrics_come_from_its_real_metrics_endpoint() -> None:
    names = known_metrics()["recommender"]
    expected = {
        "recommender_requests_total",
        "recommender_request_duration_seconds_bucket",
        "recommender_model_info",
        "recommender_model_reloads_total",
        "recommender_model_last_reload_success",
    }
    assert expected <= names
    assert 'route="/live"' in recommender_metrics_text()  # samples, not only declarations


def test_every_fixture_catalogue_is_non_empty() -> None:
    for source, names in known_metrics().items():
        assert len(names) >= 5, source
    assert "DCGM_FI_DEV_GPU_UTIL" in known_metrics()["dcgm"]
    assert "kueue_admission_wait_time_seconds_bucket" in known_metrics()["kueue"]


def test_dashboards_parse_and_cover_gpu_kueue_and_serving() -> None:
    boards = load_dashboards()
    assert set(boards) == {"gpu", "kueue", "recommender"}
    for stem, board in boards.items():
        assert board["uid"] == f"mlplatform-{stem}" and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), stem
        for panel in board["panels"]:
            assert panel["targets"], (stem, panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("stem", ["gpu", "kueue", "recommender"])
def test_every_dashboard_query_is_valid_promql_over_exposed_metrics(stem: str) -> None:
    board = load_dashboards()[stem]
    queried: set[str] = set()
    for expr in dashboard_queries(board):
        names = metric_names(expr)
        assert names, expr
        queried |= names
    assert queried - all_known() == set(), f"{stem}.json queries metrics nothing exposes"


def test_dashboards_show_what_the_issue_asks_for() -> None:
    boards = load_dashboards()
    text = {stem: json.dumps(board) for stem, board in boards.items()}
    for needle in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "exported_pod"):
        assert needle in text["gpu"]
    for needle in ("kueue_pending_workloads", "kueue_admitted_active_workloads", "kueue_cluster_queue_nominal_quota",
                   "kueue_admission_wait_time_seconds_bucket"):  # fmt: skip
        assert needle in text["kueue"]
    for needle in ("histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99", 'status=~\\"5..\\"',
                   "recommender_model_info", "recommender_model_reloads_total"):  # fmt: skip
        assert needle in text["recommender"]


def test_the_alerts_exist_with_a_runbook_and_severity() -> None:
    alerts = alert_rules()
    assert set(alerts) == REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert len(rule["annotations"]["runbook"]) > 40 and rule["annotations"]["summary"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_every_alert_is_valid_promql_over_exposed_metrics() -> None:
    for rule in all_rules():
        for alert, expr in rule_exprs(rule).items():
            names = metric_names(expr)
            assert names and names <= all_known(), (alert, names - all_known())


def test_alert_thresholds_match_the_issue() -> None:
    exprs = {a: e for rule in all_rules() for a, e in rule_exprs(rule).items()}
    alerts = alert_rules()
    assert exprs["GpuAllocatedButIdle"].endswith("< 10") and alerts["GpuAllocatedButIdle"]["for"] == "30m"
    assert alerts["ServingErrorRatioOverBudget"]["for"] == "5m" and "[5m]" in exprs["ServingErrorRatioOverBudget"]
    assert 'namespace=~"bookstore-ml|vision"' in exprs["TrainingJobFailed"]
    custom = platform_rules("monitoring", ml_namespaces=["a"], pending_for="2h")
    (kueue,) = [g for g in custom["spec"]["groups"] if g["name"] == "mlplatform.kueue"]
    assert kueue["rules"][0]["for"] == "2h"
    with pytest.raises(ValueError, match="error_budget"):
        serving_rules("ns", "app", error_budget=5)


def test_a_misspelt_metric_or_bad_syntax_is_caught() -> None:
    # The two checks above are only worth something if they fail.
    assert metric_names("rate(recommender_request_total[5m])") - all_known() == {"recommender_request_total"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(recommender_requests_total[5m])")


def test_adapter_rule_queries_the_recommender_counter_and_skips_probes() -> None:
    (rule,) = adapter_rules()
    assert rule["name"]["as"] == REQUESTS_PER_SECOND_METRIC
    series = metric_names(rule["seriesQuery"])
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", "recommender_requests_total")
        .replace("<<.LabelMatchers>>", 'namespace="bookstore-ml",pod=~"a|b"')
        .replace("<<.GroupBy>>", "pod")
    )
    assert series == metric_names(query) == {"recommender_requests_total"}
    assert series <= known_metrics()["recommender"]
    for probe in ("/live", "/ready", "/metrics"):
        assert probe in rule["metricsQuery"]


def test_hpa_metric_entry_is_a_pods_metric_on_the_adapter_name() -> None:
    entry = requests_per_second_metric(25)
    target = {"type": "AverageValue", "averageValue": "25"}
    assert entry == {"type": "Pods", "pods": {"metric": {"name": REQUESTS_PER_SECOND_METRIC}, "target": target}}
    assert requests_per_second_metric(2.5)["pods"]["target"]["averageValue"] == "2500m"
    with pytest.raises(ValueError, match="target_per_pod"):
        requests_per_second_metric(0)


def test_dashboard_files_are_the_only_json_shipped() -> None:
    # The platform ships only platform dashboards; the recommender's lives with the recommender's wiring.
    assert sorted(p.name for p in DASHBOARD_DIR.iterdir()) == ["gpu.json", "kueue.json"]

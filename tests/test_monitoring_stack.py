"""The Monitoring component inside the whole program, run under Pulumi mocks.

With ``ml-platform:monitoring`` on: pinned charts, a privileged namespace of its own, Grafana
internal with a generated password, dashboards for the sidecar, alerts, and ``scrape`` wiring
an app (ServiceMonitor + alerts + the one NetworkPolicy for Prometheus). Off: no
ServiceMonitor or PrometheusRule anywhere (their CRDs would not exist).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlplatform import capture
from mlplatform.capture import SECRET_SIG, Capture, run_under_mocks, stack_file_config
from mlplatform.config import parse_config
from mlplatform.monitoring import MONITORING_NAMESPACE, MonitoringArgs, gpu_usage
from mlplatform.program import Platform
from mlplatform.versions import CURRENT, PROMETHEUS_COMMUNITY_REPO
from stack import build as build_stack
from tests.validation import validate_manifest
from workloads.bookstore_monitoring import dashboard, requests_per_second_metric, serving_rules

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
MOCK_PASSWORD = "mock-generated-password"  # what the mocked provider "generates"
APP = "recommender"
TEAM = "bookstore-ml"
SELECTOR = {"app.kubernetes.io/name": APP}


def _program(*, scrape: bool) -> Platform:
    platform = build_stack("dev").platform
    if scrape and platform.monitoring is not None:
        # What an app brings: its alerts with the scrape, and its dashboard.
        platform.monitoring.scrape(platform.namespaces[TEAM], APP, SELECTOR, rules=serving_rules(TEAM, APP))
        platform.monitoring.add_dashboard(APP, dashboard())
    return platform


def _run(monitoring: bool, *, scrape: bool = False, **settings: str) -> Capture:
    config = stack_file_config("dev")
    config["ml-platform:monitoring"] = "true" if monitoring else "false"
    config |= {f"ml-platform:{key}": value for key, value in settings.items()}
    # The platform alone: the workloads (and their own scrape() call) are tested with the workloads.
    config["ml-platform:recommenderEnabled"] = "false"
    return run_under_mocks(lambda: _program(scrape=scrape), stack="dev", config=config)


@pytest.fixture(scope="module")
def _random_outputs() -> Iterator[None]:
    # The real provider returns the generated ``result``; the mocks must too, or it is unknown.
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(capture.OUTPUT_FILLERS, RANDOM_PASSWORD, lambda args: {"result": MOCK_PASSWORD})
        yield


@pytest.fixture(scope="module")
def on(_random_outputs: None) -> Capture:
    return _run(True, scrape=True)


@pytest.fixture(scope="module")
def off() -> Capture:
    return _run(False)


def _release(cap: Capture, chart: str) -> dict[str, Any]:
    (release,) = [p for p in (r.props for r in cap.of_type("kubernetes:helm.sh/v3:Release")) if p["chart"] == chart]
    return release


def _in(cap: Capture, kind: str, namespace: str) -> list[dict[str, Any]]:
    return [m for m in cap.kind(kind) if m["metadata"].get("namespace") == namespace]


def test_monitoring_off_creates_no_monitor_rule_or_stack(off: Capture) -> None:
    assert off.kind("ServiceMonitor") == [] and off.kind("PrometheusRule") == [] and off.kind("PodMonitor") == []
    charts = {r.props["chart"] for r in off.of_type("kubernetes:helm.sh/v3:Release")}
    assert not charts & {"kube-prometheus-stack", "prometheus-adapter"}
    assert _release(off, "oci://registry.k8s.io/kueue/charts/kueue")["values"]["enablePrometheus"] is False
    assert off.result.monitoring is None


def test_charts_are_pinned_from_the_official_repository(on: Capture) -> None:
    for chart in (CURRENT.kube_prometheus_stack, CURRENT.prometheus_adapter):
        release = _release(on, chart.name)
        assert release["version"] == chart.version and release["repositoryOpts"]["repo"] == PROMETHEUS_COMMUNITY_REPO
        assert release["namespace"] == MONITORING_NAMESPACE and release["atomic"] is True
        assert "skipAwait" not in release


def test_own_namespace_is_privileged_and_ml_namespaces_stay_restricted(on: Capture) -> None:
    namespaces = {m["metadata"]["name"]: m["metadata"]["labels"] for m in on.kind("Namespace")}
    assert namespaces[MONITORING_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces[TEAM]["pod-security.kubernetes.io/enforce"] == "restricted"
    releases = [r.props for r in on.of_type("kubernetes:helm.sh/v3:Release")]
    assert {r["chart"] for r in releases if r["namespace"] == MONITORING_NAMESPACE} == {
        "kube-prometheus-stack",
        "prometheus-adapter",
    }


def test_grafana_is_internal_and_its_password_is_generated(on: Capture) -> None:
    values = _release(on, "kube-prometheus-stack")["values"]
    grafana = values["grafana"]
    assert "adminPassword" not in grafana and grafana["admin"]["existingSecret"] == "grafana-admin"
    for component in ("grafana", "prometheus", "alertmanager"):
        assert values[component]["service"]["type"] == "ClusterIP" and values[component]["ingress"]["enabled"] is False
    secret = next(r for r in on.of_type("kubernetes:core/v1:Secret") if r.props["metadata"]["name"] == "grafana-admin")
    assert secret.inputs["stringData"].get("4dabf18193072939515e22adb298388d") == SECRET_SIG  # a Pulumi secret
    assert secret.props["stringData"]["admin-password"] == MOCK_PASSWORD  # the generated value, not a literal
    password = on.of_type(RANDOM_PASSWORD)[0].props
    assert password["length"] >= 24
    assert on.result.monitoring.service_monitor_labels == {"release": "kube-prometheus-stack"}


def test_dashboards_ship_in_labelled_config_maps(on: Capture) -> None:
    maps = [m for m in _in(on, "ConfigMap", MONITORING_NAMESPACE) if m["metadata"]["name"].startswith("dashboard-")]
    assert {m["metadata"]["name"] for m in maps} == {"dashboard-gpu", "dashboard-kueue", "dashboard-recommender"}
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
    sidecar = _release(on, "kube-prometheus-stack")["values"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")


def test_platform_and_serving_alerts_are_installed(on: Capture) -> None:
    rules = {m["metadata"]["name"]: m for m in on.kind("PrometheusRule")}
    assert rules["mlplatform-platform"]["metadata"]["namespace"] == MONITORING_NAMESPACE
    assert rules[f"{APP}-serving"]["metadata"]["namespace"] == TEAM


def _gpu_rules(cap: Capture) -> dict[str, dict[str, Any]]:
    (platform,) = [m for m in cap.kind("PrometheusRule") if m["metadata"]["name"] == "mlplatform-platform"]
    return {g["name"]: g for g in platform["spec"]["groups"]}


def test_gpu_usage_is_recorded_and_idle_thresholds_come_from_stack_config(on: Capture, _random_outputs: None) -> None:
    groups = _gpu_rules(on)
    assert [r["record"] for r in groups["mlplatform.gpu-usage"]["rules"]][:3] == list(gpu_usage.RECORDS)
    alerts = {r["alert"]: r for r in groups["mlplatform.gpu"]["rules"]}
    assert (alerts["TeamGpusIdle"]["expr"], alerts["TeamGpusIdle"]["for"]) == (f"{gpu_usage.UTILIZATION} < 10", "30m")
    custom = _gpu_rules(_run(True, gpuIdleAlertPercent="25", gpuIdleAlertMinutes="45"))
    alerts = {r["alert"]: r for r in custom["mlplatform.gpu"]["rules"]}
    assert (alerts["TeamGpusIdle"]["expr"], alerts["TeamGpusIdle"]["for"]) == (f"{gpu_usage.UTILIZATION} < 25", "45m")
    assert alerts["GpuAllocatedButIdle"]["expr"].endswith("< 25") and alerts["GpuAllocatedButIdle"]["for"] == "45m"


def test_scrape_wires_a_service_monitor_and_lets_only_prometheus_in(on: Capture) -> None:
    (monitor,) = _in(on, "ServiceMonitor", TEAM)  # (the simulated GPUs' exporter has one too)
    assert monitor["spec"]["selector"]["matchLabels"] == SELECTOR
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s", "scheme": "http"}]
    (policy,) = [p for p in _in(on, "NetworkPolicy", TEAM) if p["metadata"]["name"] == f"allow-prometheus-{APP}"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    assert policy["spec"]["podSelector"] == {"matchLabels": SELECTOR}
    (dcgm,) = _in(on, "NetworkPolicy", "gpu-operator")  # dev: the simulated GPUs' exporter
    assert dcgm["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9400}]


def test_scraped_things_depend_on_the_stack_that_brings_their_crds(on: Capture) -> None:
    stack_urn = next(r.urn for r in on.of_type("kubernetes:helm.sh/v3:Release") if r.name == "kube-prometheus-stack")
    for r in on.resources:
        if r.type.startswith("kubernetes:monitoring.coreos.com/"):
            assert stack_urn in r.dependencies, r.name


def test_builtin_objects_of_the_monitoring_stack_validate(on: Capture) -> None:
    ours = [
        m
        for m in on.kubernetes_objects()
        if m["metadata"].get("namespace") == MONITORING_NAMESPACE
        or m["metadata"].get("name") == MONITORING_NAMESPACE
        or m["metadata"]["name"].startswith("allow-prometheus-")
    ]
    builtin = [m for m in ours if "monitoring.coreos.com" not in m["apiVersion"]]
    assert {m["kind"] for m in builtin} == {"Namespace", "Secret", "ConfigMap", "NetworkPolicy"}
    for manifest in builtin:
        validate_manifest(manifest)


def test_an_hpa_scaling_on_requests_per_second_validates() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP, "namespace": TEAM},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [requests_per_second_metric(20)],
        },
    }
    validate_manifest(hpa)


def test_args_for_eks_keep_a_week_of_history() -> None:
    eks = parse_config({"clusterProvider": "eks", "teams": '["a", "b"]', "eksPrivateEndpointOnly": "true"}, stack="eks")
    args = MonitoringArgs.for_platform(eks, cluster=None)  # type: ignore[arg-type]
    assert args.retention == "7d" and args.ml_namespaces == ("a", "b")
    dev = MonitoringArgs.for_platform(parse_config({}, stack="dev"), cluster=None)  # type: ignore[arg-type]
    assert dev.retention == "2d"

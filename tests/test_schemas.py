"""Every object validates against the real schemas and CRD rules; every Helm value we set exists upstream."""

from __future__ import annotations

import copy
import filecmp
from pathlib import Path

import pytest

from mlplatform.capture import Capture, capture_stack
from tests.stacks import EKS_FROM_HERE
from tests.validation import (
    CHART_VALUES,
    UPSTREAM,
    CelReport,
    SchemaError,
    chart_defaults,
    custom_resource_groups,
    has_schema,
    unchecked_subcharts,
    unknown_release_keys,
    unknown_value_keys,
    validate_manifest,
)
from tests.validation.crds import crd_versions

SHARED_UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream"
RELEASE = "kubernetes:helm.sh/v3:Release"
# Charts whose upstream values.yaml is not vendored: none, every chart the program installs is checked.
UNCHECKED_CHARTS: set[str] = set()
# Subcharts whose values are not vendored: their subtree of the parent's values cannot be checked.
UNCHECKED_SUBCHARTS = {"kube-prometheus-stack": {"kube-state-metrics", "prometheus-node-exporter"}}


@pytest.fixture(scope="module")
def eks() -> Capture:
    capture = capture_stack("eks", EKS_FROM_HERE)
    assert len(capture.kubernetes_objects()) > 10  # a run that registered nothing would pass every "for all"
    return capture


def _validate_all(capture: Capture) -> CelReport:
    total = CelReport()
    for manifest in capture.kubernetes_objects():
        total += validate_manifest(manifest)
    return total


def test_every_kubernetes_object_of_the_dev_stack_validates_with_its_cel_rules(dev: Capture) -> None:
    kinds = {m["kind"] for m in dev.kubernetes_objects()}
    # Built-in kinds (kubernetes-validate) and Kueue kinds (upstream CRDs and their rules) are both covered.
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"} <= kinds
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"} <= kinds
    report = _validate_all(dev)
    assert report.evaluated > 0  # the CEL rules ran, not just the schemas


def test_every_kubernetes_object_of_the_eks_stack_validates_with_its_cel_rules(eks: Capture) -> None:
    objects = eks.kubernetes_objects()
    # Monitoring is on in eks: prometheus-operator objects are checked against their vendored CRDs too.
    assert {"ServiceMonitor", "PrometheusRule"} <= {m["kind"] for m in objects}
    assert all(has_schema(m) for m in objects)
    assert _validate_all(eks).evaluated > 0


def test_every_vendored_crd_is_indexed_by_what_it_serves() -> None:
    served = {(g, v, k) for g, v, k in crd_versions()}
    for kind in ("ClusterQueue", "Cohort", "AdmissionCheck", "ProvisioningRequestConfig", "Workload", "Topology"):
        assert ("kueue.x-k8s.io", "v1beta2", kind) in served
    assert ("jobset.x-k8s.io", "v1alpha2", "JobSet") in served
    assert ("autoscaling.x-k8s.io", "v1", "ProvisioningRequest") in served
    assert {("monitoring.coreos.com", "v1", k) for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule")} <= served
    assert custom_resource_groups() == {g for g, _, _ in served}


def _releases(*captures: Capture) -> list[dict]:
    return [r.props for c in captures for r in c.of_type(RELEASE)]


def test_every_helm_value_we_set_exists_in_the_upstream_chart(dev: Capture, eks: Capture) -> None:
    releases = _releases(dev, eks)  # eks turns monitoring on: kube-prometheus-stack and prometheus-adapter
    charts = {r["chart"].rpartition("/")[2] for r in releases}
    assert {"kube-prometheus-stack", "prometheus-adapter", "metrics-server", "kueue"} <= charts
    assert charts - set(CHART_VALUES) == UNCHECKED_CHARTS
    for r in releases:
        # The release's pinned version is the vendored one, or the check would read another chart's keys.
        assert unknown_release_keys(r["chart"], r["values"], r["version"]) == [], r["chart"]
        assert unchecked_subcharts(r["chart"], r["values"]) == UNCHECKED_SUBCHARTS.get(r["chart"], set())


def test_a_subchart_subtree_is_checked_against_the_subchart_values(eks: Capture) -> None:
    (stack,) = [r for r in _releases(eks) if r["chart"] == "kube-prometheus-stack"]
    assert "existingSecret" in chart_defaults("kube-prometheus-stack")["grafana"]["admin"]  # from grafana's values
    values = copy.deepcopy(stack["values"])
    values["grafana"]["admin"]["existingSecrett"] = "x"
    values["grafana"]["sidecar"]["dashboards"]["labelValu"] = "1"
    values["grafana"]["grafana.ini"] = {"server": {"root_url": "http://localhost:3000"}}  # free-form upstream
    assert unknown_release_keys("kube-prometheus-stack", values) == [
        "grafana.admin.existingSecrett",
        "grafana.sidecar.dashboards.labelValu",
    ]


def test_a_release_of_another_version_or_an_unvendored_chart_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"the vendored values are of 3\.13\.0"):
        unknown_release_keys("metrics-server", {}, "3.12.0")
    with pytest.raises(SchemaError, match="not vendored"):
        unknown_release_keys("oci://example.com/charts/unknown", {})
    # Charts not installed yet are vendored for the work that adds them, looked up by name or OCI reference.
    jobset = {"controller": {"replicas": 2, "replica": 2}, "prometheus": {"enable": True}}
    assert unknown_release_keys("oci://registry.k8s.io/jobset/charts/jobset", jobset, "0.12.0") == [
        "controller.replica"
    ]
    autoscaler = {"autoDiscovery": {"clusterName": "ml"}, "awsRegion": "eu-west-1", "extraArgs": {"scale-down": "x"}}
    assert unknown_release_keys("cluster-autoscaler", autoscaler | {"awsRegino": "x"}, "9.53.0") == ["awsRegino"]


def test_validators_catch_misspelt_fields(dev: Capture) -> None:
    # The checks above are only worth something if they fail on a typo.
    quota = copy.deepcopy(dev.kind("ResourceQuota")[0])
    quota["spec"]["hrad"] = quota["spec"].pop("hard")
    with pytest.raises(SchemaError, match="hrad"):
        validate_manifest(quota)
    flavor = copy.deepcopy(next(m for m in dev.kind("ResourceFlavor") if m["spec"].get("nodeLabels")))
    flavor["spec"]["nodeLabel"] = flavor["spec"].pop("nodeLabels")
    with pytest.raises(SchemaError, match="nodeLabel"):
        validate_manifest(flavor)
    queue = copy.deepcopy(dev.kind("ClusterQueue")[0])
    queue["spec"]["cohort"] = "all"  # v1beta1 spelling; v1beta2 calls it cohortName
    with pytest.raises(SchemaError, match="cohort"):
        validate_manifest(queue)
    wrong_version = dict(dev.kind("LocalQueue")[0], apiVersion="kueue.x-k8s.io/v1beta1")
    with pytest.raises(SchemaError, match="v1beta2"):
        validate_manifest(wrong_version)
    values = {"nodeSelecter": {}, "image": {"tag": "x", "repo": "y"}, "config": {"map": {"anything": "goes"}}}
    assert unknown_value_keys(values, chart_defaults("nvidia-device-plugin")) == ["nodeSelecter", "image.repo"]
    # resources is a Kubernetes ResourceRequirements, whatever subset the chart's default shows.
    resources = {"resources": {"limits": {"memory": "1Gi"}, "limit": {"cpu": "1"}}}
    assert unknown_value_keys(resources, chart_defaults("metrics-server")) == ["resources.limit"]


@pytest.mark.skipif(not SHARED_UPSTREAM.is_dir(), reason="shared/upstream is not beside this clone; nothing to compare")
def test_vendored_upstream_fixtures_match_shared_upstream() -> None:
    for path in SHARED_UPSTREAM.rglob("*.yaml"):
        vendored = UPSTREAM / path.relative_to(SHARED_UPSTREAM)
        assert filecmp.cmp(path, vendored, shallow=False), vendored

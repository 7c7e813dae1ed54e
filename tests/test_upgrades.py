"""Upgrades: where each chart keeps its CRDs, and that a version bump upgrades the CRDs the stack applies.

The eks stack is captured at both pinned tables (``ml-platform:componentVersions``): ``previous``
then ``current`` is the upgrade the e2e leg performs on a real cluster.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import crds as crds_module
from mlplatform import versions
from mlplatform.capture import Capture, CapturedResource, capture_stack
from mlplatform.config import ConfigError, parse_config
from mlplatform.crds import BUNDLE_ANNOTATION, BUNDLES, FIELD_MANAGER, bundle_crds, chart_crd_manifests
from mlplatform.upgrade_plan import fixture_crds
from mlplatform.versions import COMPONENT_VERSIONS, CURRENT, PREVIOUS, CrdLocation, CrdUpkeep
from tests.stacks import EKS_FROM_HERE
from tests.test_autoscaler import reaches
from tests.validation import UPSTREAM, validate_manifest
from tests.validation.crds import crd_versions

CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
RELEASE = "kubernetes:helm.sh/v3:Release"

# Read from each chart at its pinned tag (../shared/NOTES.md, "Upgrades"): where its CRDs are, and
# who keeps them current. A new chart (or a chart that moves its CRDs) must be added here.
WHERE = {
    "kueue": (CrdLocation.TEMPLATES, CrdUpkeep.HELM),
    "jobset": (CrdLocation.CRDS_DIR, CrdUpkeep.PROGRAM),
    "kube_prometheus_stack": (CrdLocation.CRDS_DIR, CrdUpkeep.PROGRAM),
    "cluster_autoscaler": (CrdLocation.NONE, CrdUpkeep.NONE),
    "dcgm_exporter": (CrdLocation.NONE, CrdUpkeep.NONE),
    "metrics_server": (CrdLocation.NONE, CrdUpkeep.NONE),
    "nvidia_device_plugin": (CrdLocation.NONE, CrdUpkeep.NONE),
    "prometheus_adapter": (CrdLocation.NONE, CrdUpkeep.NONE),
    # crds/ holds the GPU Operator's ClusterPolicy and DRA ComputeDomain, which dev's simulator never uses.
    "fake_gpu_operator": (CrdLocation.CRDS_DIR, CrdUpkeep.SKIPPED),
}


@pytest.fixture(scope="module")
def eks_current() -> Capture:
    return capture_stack("eks", EKS_FROM_HERE)


@pytest.fixture(scope="module")
def eks_previous() -> Capture:
    return capture_stack("eks", {**EKS_FROM_HERE, "componentVersions": "previous"})


def releases(capture: Capture) -> dict[str, dict[str, Any]]:
    return {r.props["name"]: r.props for r in capture.of_type(RELEASE)}


def crds(capture: Capture) -> dict[str, CapturedResource]:
    return {r.props["metadata"]["name"]: r for r in capture.of_type(CRD)}


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` (and ``git ls-tree <tag>``) says of a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def readme_rows(path: Path) -> dict[str, str]:
    """file -> upstream git blob id, from a README table with a ``git blob`` column."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        rows[cells["file"].strip("`")] = cells["git blob"]
    return rows


# ---- where each chart keeps its CRDs --------------------------------------------------------------


@pytest.mark.parametrize("table", COMPONENT_VERSIONS.values(), ids=COMPONENT_VERSIONS)
def test_every_chart_records_where_its_crds_are_and_who_keeps_them(table: versions.ComponentVersions) -> None:
    charts = table.charts()
    assert charts.keys() == WHERE.keys()
    for key, chart in charts.items():
        assert (chart.crds.location, chart.crds.upkeep) == WHERE[key], key
        # Helm upgrades templated CRDs itself; crds/ it never upgrades, so the program must (or none is used).
        assert (chart.crds.location is CrdLocation.CRDS_DIR) == (
            chart.crds.upkeep in (CrdUpkeep.PROGRAM, CrdUpkeep.SKIPPED)
        ), key
        assert (chart.crds.bundle is not None) == (chart.crds.upkeep is CrdUpkeep.PROGRAM), key


def test_the_jobset_crd_is_the_charts_crds_directory_byte_for_byte() -> None:
    bundle = BUNDLES / "jobset-v0.12.0" / "jobset.x-k8s.io_jobsets.yaml"
    fixture = UPSTREAM / "jobset-v0.12.0" / "jobset.x-k8s.io_jobsets.yaml"
    assert bundle.read_bytes() == fixture.read_bytes()
    assert [c["metadata"]["name"] for c in bundle_crds("jobset-v0.12.0")] == ["jobsets.jobset.x-k8s.io"]


@pytest.mark.parametrize("version", ["87.15.1", "86.3.2"])
def test_the_monitoring_crds_are_the_charts_own_files(version: str) -> None:
    bundle = {c["metadata"]["name"]: c for c in bundle_crds(f"kube-prometheus-stack-{version}")}
    assert len(bundle) == 10 and all(name.endswith(".monitoring.coreos.com") for name in bundle)
    # crds.bz2 holds the same documents as the chart's crds/ directory: compare with the vendored ones.
    for kind in ("servicemonitors", "prometheusrules", "podmonitors"):
        fixture = yaml.safe_load((UPSTREAM / f"kube-prometheus-stack-{version}" / f"crd-{kind}.yaml").read_text())
        assert bundle[f"{kind}.monitoring.coreos.com"] == fixture, kind
        assert fixture["metadata"]["annotations"]["operator.prometheus.io/version"] in ("0.92.1", "0.91.0")


def test_every_vendored_program_crd_file_is_byte_identical_to_upstream() -> None:
    rows = readme_rows(BUNDLES / "README.md")
    files = sorted(str(p.relative_to(BUNDLES)) for p in BUNDLES.glob("*/*") if p.suffix in (".yaml", ".bz2"))
    assert sorted(rows) == files  # every file has its row, every row its file
    for name, blob in rows.items():
        assert git_blob_id((BUNDLES / name).read_bytes()) == blob, name
    # Every bundle a table points at exists and decompresses (bz2's own check).
    for table in COMPONENT_VERSIONS.values():
        for chart in table.charts().values():
            if chart.crds.bundle:
                for path in (BUNDLES / chart.crds.bundle).glob("*.bz2"):
                    assert bz2.decompress(path.read_bytes()).startswith(b"# https://")
                assert bundle_crds(chart.crds.bundle)


def test_no_crd_the_program_applies_has_a_conversion_webhook() -> None:
    # A webhook's caBundle is injected into the CRD by a controller (cert-manager, the chart's cert
    # rotator): a forced apply of the program's copy would take it back on every `up`. Kueue's CRDs,
    # which convert through the release's webhook, stay with Helm for this reason.
    for table in COMPONENT_VERSIONS.values():
        for chart in table.charts().values():
            for crd in chart_crd_manifests(chart):
                assert crd["spec"].get("conversion", {}).get("strategy", "None") == "None", crd["metadata"]["name"]


# ---- the program applies them, before the release, and the release installs none ----------------


@pytest.mark.parametrize("stack", ["current", "previous"])
def test_program_crds_come_first_under_their_own_field_manager(
    stack: str, eks_current: Capture, eks_previous: Capture
) -> None:
    capture = eks_current if stack == "current" else eks_previous
    table = COMPONENT_VERSIONS[stack]
    by_name = crds(capture)
    adopting = capture.named("ml-platform-crd-provider")
    for key in ("jobset", "kube_prometheus_stack"):
        chart = getattr(table, key)
        expected = {c["metadata"]["name"] for c in bundle_crds(str(chart.crds.bundle))}
        release = next(r for r in capture.of_type(RELEASE) if r.props["chart"] == chart.name)
        assert release.props["version"] == chart.version
        assert release.props["skipCrds"] is True  # Helm leaves them to the program
        for name in expected:
            crd = by_name[name]
            annotations = crd.props["metadata"]["annotations"]
            assert annotations[BUNDLE_ANNOTATION] == chart.crds.bundle
            assert annotations["pulumi.com/patchFieldManager"] == FIELD_MANAGER
            # Forced: on a stack whose CRDs Helm installed, the first apply takes their fields over.
            assert annotations["pulumi.com/patchForce"] == "true"
            assert crd.provider.startswith(adopting.urn + "::")  # adopts a CRD that already exists
            assert crd.urn in release.dependencies  # the release (its controller) waits for its CRDs
            assert chart.version not in crd.name  # named by CRD: a bump updates it in place
    stack_values = releases(capture)["kube-prometheus-stack"]["values"]
    assert stack_values["crds"] == {"enabled": False}  # the crds subchart: its crds/ and its upgrade hook
    # Charts whose CRDs Helm upgrades (or that have none) install as before.
    for name in ("kueue", "cluster-autoscaler", "metrics-server", "dcgm-exporter", "prometheus-adapter"):
        assert "skipCrds" not in releases(capture)[name], name
    assert adopting.props["upsertExistingObjects"] in (True, "true")


def test_monitoring_objects_wait_for_the_crds_of_their_kinds(eks_current: Capture) -> None:
    by_name = crds(eks_current)
    for resource in eks_current.resources:
        if resource.is_kubernetes_object and resource.type.startswith("kubernetes:monitoring.coreos.com/"):
            plural = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}[resource.props["kind"]]
            assert reaches(eks_current, resource, by_name[f"{plural}.monitoring.coreos.com"].urn), resource.name


# ---- a version bump upgrades them; nothing is deleted -----------------------------------------------


def test_a_version_bump_changes_the_crd_objects_the_program_applies(
    eks_current: Capture, eks_previous: Capture
) -> None:
    before, after = crds(eks_previous), crds(eks_current)
    assert before.keys() == after.keys()  # the same resources: updated, none created or deleted
    monitoring = sorted(n for n in after if n.endswith(".monitoring.coreos.com"))
    assert len(monitoring) == 10
    for name in monitoring:
        old, new = before[name], after[name]
        assert old.name == new.name and old.urn == new.urn
        assert old.props["metadata"]["annotations"][BUNDLE_ANNOTATION] == "kube-prometheus-stack-86.3.2"
        assert new.props["metadata"]["annotations"][BUNDLE_ANNOTATION] == "kube-prometheus-stack-87.15.1"
        assert old.props != new.props, name
    # prometheus-operator v0.92 added spec.tsdb.staleSeriesCompactionThreshold to Prometheus.
    fields = [before["prometheuses.monitoring.coreos.com"], after["prometheuses.monitoring.coreos.com"]]
    tsdb = [
        f.props["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["tsdb"]
        for f in fields
    ]
    assert "staleSeriesCompactionThreshold" not in tsdb[0]["properties"]
    assert "staleSeriesCompactionThreshold" in tsdb[1]["properties"]
    # Kueue's CRDs are templates: the bump is the release's version, Helm applies the new CRDs.
    assert releases(eks_previous)["kueue"]["version"] == "0.18.6"
    assert releases(eks_current)["kueue"]["version"] == "0.19.2"
    image = ["controllerManager", "manager", "image", "tag"]
    assert [_at(releases(c)["kueue"]["values"], image) for c in (eks_previous, eks_current)] == ["v0.18.6", "v0.19.2"]


def _at(values: Any, path: list[str]) -> Any:
    for key in path:
        values = values[key]
    return values


def test_kueues_two_vendored_crd_versions_differ_where_the_bump_changes_them() -> None:
    old, new = _fixture_crds("kueue-v0.18.6"), _fixture_crds("kueue-v0.19.2")
    assert old.keys() == new.keys()
    changed = sorted(name for name in old if old[name]["spec"] != new[name]["spec"])
    assert changed == ["workloads.kueue.x-k8s.io"]
    # Both serve v1beta1 (deprecated) and store v1beta2: no storage migration between them.
    for crds_ in (old, new):
        stored = {n: [v["name"] for v in c["spec"]["versions"] if v["storage"]] for n, c in crds_.items()}
        assert set(map(tuple, stored.values())) == {("v1beta2",)}


def _fixture_crds(directory: str) -> dict[str, dict[str, Any]]:
    chart, _, version = directory.partition("-v")
    found = fixture_crds(chart, version, UPSTREAM)
    assert found, directory
    return found


def test_no_upgrade_from_previous_to_current_deletes_a_crd() -> None:
    for key, chart in PREVIOUS.charts().items():
        now = CURRENT.charts()[key]
        if chart.crds.bundle and now.crds.bundle:
            old = {c["metadata"]["name"] for c in bundle_crds(chart.crds.bundle)}
            assert old <= {c["metadata"]["name"] for c in bundle_crds(now.crds.bundle)}, key
    # Templated (Helm would delete a CRD the chart drops): compare the vendored CRDs of both releases.
    assert _fixture_crds("kueue-v0.18.6").keys() <= _fixture_crds("kueue-v0.19.2").keys()


@pytest.mark.parametrize("key", sorted(WHERE))
def test_a_bump_of_each_chart_changes_the_crds_the_program_applies_exactly_when_it_keeps_them(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = getattr(CURRENT, key)
    crds_facts = chart.crds
    if crds_facts.upkeep is CrdUpkeep.PROGRAM:
        # The next release's CRDs: the pinned ones with one field added to the first.
        bundles = tmp_path / "bundles"
        shutil.copytree(BUNDLES, bundles, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        documents = bundle_crds(str(crds_facts.bundle))
        schema = documents[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schema["properties"]["synthetic"] = {"type": "string"}
        (bundles / "next").mkdir()
        (bundles / "next" / "crds.yaml").write_text(yaml.safe_dump_all(documents))
        monkeypatch.setattr(crds_module, "BUNDLES", bundles)
        crds_facts = dataclasses.replace(crds_facts, bundle="next")
    bumped = dataclasses.replace(chart, version="99.0.0", crds=crds_facts)
    before = {c["metadata"]["name"]: c for c in chart_crd_manifests(chart)}
    after = {c["metadata"]["name"]: c for c in chart_crd_manifests(bumped)}
    assert before.keys() == after.keys()  # the same CRDs, hence the same resources: updated in place
    changed = sorted(name for name in before if before[name] != after[name])
    if chart.crds.upkeep is CrdUpkeep.PROGRAM:
        first = documents[0]["metadata"]["name"]
        assert before and changed == sorted(before)  # every one says which files it comes from now
        assert [n for n in before if before[n]["spec"] != after[n]["spec"]] == [first]
        assert after[first]["metadata"]["annotations"][BUNDLE_ANNOTATION] == "next"
    else:
        assert before == {}  # Helm keeps them (templated) or there are none: the program applies nothing


def test_crds_of_a_chart_helm_upgrades_are_not_applied_by_the_program() -> None:
    for table in COMPONENT_VERSIONS.values():
        for chart in table.charts().values():
            assert bool(chart_crd_manifests(chart)) == (chart.crds.upkeep is CrdUpkeep.PROGRAM)


# ---- the previous release is a valid stack too ------------------------------------------------------


def test_every_object_of_the_previous_release_validates_against_its_own_crds(eks_previous: Capture) -> None:
    served = crd_versions(PREVIOUS)
    assert any(v.path.parent.name == "kueue-v0.18.6" for v in served.values())
    assert any(v.path.parent.name == "kube-prometheus-stack-86.3.2" for v in served.values())
    objects = eks_previous.kubernetes_objects()
    assert {"ClusterQueue", "ServiceMonitor", "PrometheusRule", "CustomResourceDefinition"} <= {
        m["kind"] for m in objects
    }
    for manifest in objects:
        validate_manifest(manifest, PREVIOUS)


def test_component_versions_selects_a_pinned_table_and_refuses_anything_else() -> None:
    assert parse_config({}, stack="dev").versions is CURRENT
    assert parse_config({"componentVersions": "previous"}, stack="dev").versions is PREVIOUS
    with pytest.raises(
        ConfigError,
        match=re.escape("ml-platform:componentVersions = 'latest' is not allowed: one of: current, previous"),
    ):
        parse_config({"componentVersions": "latest"}, stack="dev")

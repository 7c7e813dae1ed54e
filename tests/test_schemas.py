"""Every object validates against the real schemas; every Helm value we set exists upstream."""

from __future__ import annotations

import copy
import filecmp
from pathlib import Path

import pytest

from mlplatform.capture import Capture
from tests.validation import (
    CHART_VALUES,
    UPSTREAM,
    SchemaError,
    chart_defaults,
    unknown_value_keys,
    validate_manifest,
)

SHARED_UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream"
# Charts whose upstream values.yaml is not vendored: their keys are checked by the chart-specific tests only.
UNCHECKED_CHARTS = {"metrics-server"}


def test_every_kubernetes_object_of_the_dev_stack_validates(dev: Capture) -> None:
    objects = dev.kubernetes_objects()
    kinds = {m["kind"] for m in objects}
    # Built-in kinds (kubernetes-validate) and every Kueue kind (upstream CRDs) are both covered.
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"} <= kinds
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"} <= kinds
    for manifest in objects:
        validate_manifest(manifest)


def test_every_helm_value_we_set_exists_in_the_upstream_chart(dev: Capture) -> None:
    releases = [r.props for r in dev.of_type("kubernetes:helm.sh/v3:Release")]
    checked = [r for r in releases if r["chart"] in CHART_VALUES]
    assert {r["chart"] for r in releases} - {r["chart"] for r in checked} == UNCHECKED_CHARTS
    for r in checked:
        assert unknown_value_keys(r["values"], chart_defaults(r["chart"])) == [], r["chart"]


def test_validators_catch_misspelt_fields(dev: Capture) -> None:
    # The checks above are only worth something if they fail on a typo.
    quota = copy.deepcopy(dev.kind("ResourceQuota")[0])
    quota["spec"]["hrad"] = quota["spec"].pop("hard")
    with pytest.raises(SchemaError, match="hrad"):
        validate_manifest(quota)
    flavor = copy.deepcopy(next(m for m in dev.kind("ResourceFlavor") if m["metadata"]["name"] == "gpu"))
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


@pytest.mark.skipif(not SHARED_UPSTREAM.is_dir(), reason="shared/upstream is not beside this clone; nothing to compare")
def test_vendored_upstream_fixtures_match_shared_upstream() -> None:
    for path in SHARED_UPSTREAM.rglob("*.yaml"):
        vendored = UPSTREAM / path.relative_to(SHARED_UPSTREAM)
        assert filecmp.cmp(path, vendored, shallow=False), vendored

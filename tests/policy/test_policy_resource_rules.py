"""Per-resource rules as pure functions: one compliant and at least one violating case each."""

from __future__ import annotations

from typing import Any

import pytest
from mlpolicy.containers import image_pinned, parse_quantity
from mlpolicy.model import Resource
from mlpolicy.rules import ADVISORY, MANDATORY, RULES, rule, run_resource_rule

from .builders import container, pod_spec, workload

KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "JobSet"]


def messages(rule_name: str, resource: Resource, config: dict[str, Any] | None = None) -> list[str]:
    return [v.message for v in run_resource_rule(rule(rule_name), resource, config)]


def test_every_rule_has_a_level_and_one_kind_of_check() -> None:
    assert len({r.name for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.level in (MANDATORY, ADVISORY)
        assert (r.resource_check is None) != (r.stack_check is None), r.name


@pytest.mark.parametrize("kind", KINDS)
def test_compliant_workload_passes_every_resource_rule(kind: str) -> None:
    resource = workload(kind, spec=pod_spec(container(gpus=1)))
    for r in RULES:
        if r.resource_check:
            assert run_resource_rule(r, resource) == [], r.name


@pytest.mark.parametrize("kind", KINDS)
def test_missing_limits_is_reported_for_every_kind(kind: str) -> None:
    bare = container()
    bare["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    [message] = messages("container-requests-limits", workload(kind, spec=pod_spec(bare)))
    assert "containers[app].resources.limits: set cpu, memory" in message


def test_required_resources_are_configurable() -> None:
    c = container()
    del c["resources"]["limits"]["cpu"]
    resource = workload("Deployment", spec=pod_spec(c))
    assert messages("container-requests-limits", resource) != []
    assert messages("container-requests-limits", resource, {"requiredResources": ["memory"]}) == []


def test_init_containers_need_resources_too() -> None:
    init = container("init")
    del init["resources"]
    [message] = messages(
        "container-requests-limits", workload("Job", spec=pod_spec(container(), initContainers=[init]))
    )
    assert "initContainers[init].resources.requests" in message


@pytest.mark.parametrize(
    ("requests", "limits", "expected"),
    [
        ({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": 1.0}, None),  # string vs the engine's double: equal
        ({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "2"}, "set limits.nvidia.com/gpu (2) equal to requests"),
        ({"nvidia.com/gpu": 2.0}, {}, "set limits.nvidia.com/gpu equal to requests.nvidia.com/gpu (2.0)"),
        ({}, {"nvidia.com/gpu": "1"}, "set requests.nvidia.com/gpu equal to limits.nvidia.com/gpu (1)"),
    ],
)
def test_gpu_limit_equals_request(requests: dict[str, Any], limits: dict[str, Any], expected: str | None) -> None:
    c = container()
    c["resources"]["requests"].update(requests)
    c["resources"]["limits"].update(limits)
    found = messages("gpu-limit-equals-request", workload("Job", spec=pod_spec(c)))
    if expected is None:
        assert found == []
    else:
        [message] = found
        assert expected in message


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("ghcr.io/example/app:1.2.3", True),
        ("python:3.12-slim", True),
        ("registry.local:5000/app@sha256:" + "a" * 64, True),
        ("registry.local:5000/app:v2", True),
        ("registry.local:5000/app", False),  # the port is not a tag
        ("python", False),
        ("python:latest", False),
        ("app@md5:abc", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    assert image_pinned(image) is pinned
    found = messages("image-pinned", workload("Deployment", spec=pod_spec(container(image=image))))
    assert (found == []) is pinned
    if not pinned:
        assert "use a version tag (not latest) or a @sha256 digest" in found[0]


def test_unpinned_ephemeral_container_image_is_reported() -> None:
    debug = {"name": "debug", "image": "busybox"}
    [message] = messages("image-pinned", workload("Pod", spec=pod_spec(container(), ephemeralContainers=[debug])))
    assert "ephemeralContainers[debug].image" in message


@pytest.mark.parametrize(("value", "expected"), [("500m", "0.5"), ("2Gi", str(2**31)), (1.0, "1.0"), ("x", None)])
def test_parse_quantity(value: Any, expected: str | None) -> None:
    result = parse_quantity(value)
    assert (None if result is None else result.normalize()) == (None if expected is None else parse_quantity(expected))


def helm(**props: Any) -> Resource:
    return Resource("kubernetes:helm.sh/v3:Release", "kueue", {"chart": "kueue", "namespace": "kueue-system", **props})


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        ({"version": "0.19.2"}, None),
        ({"version": "v1.2.3-rc.1"}, None),
        ({"chart": "./charts/local"}, None),
        ({}, "set version to the exact chart version"),
        ({"version": "^0.19"}, "is a range or partial version"),
        ({"version": "0.19"}, "is a range or partial version"),
        ({"version": ">=1.0.0"}, "is a range or partial version"),
    ],
)
def test_helm_chart_version_pinned(props: dict[str, Any], problem: str | None) -> None:
    found = messages("helm-chart-version-pinned", helm(**props))
    assert (found == []) is (problem is None)
    if problem:
        assert problem in found[0]


def node_group(ami: str, taints: list[dict[str, str]] | None = None) -> Resource:
    return Resource("aws:eks/nodeGroup:NodeGroup", "pool", {"amiType": ami, "taints": taints or [], "labels": {}})


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}


@pytest.mark.parametrize(
    ("ami", "taints", "problem"),
    [
        ("AL2023_x86_64_NVIDIA", [GPU_TAINT], None),
        ("AL2023_x86_64_STANDARD", [], None),
        ("AL2023_x86_64_NVIDIA", [], "add taint"),
        ("AL2_x86_64_GPU", [{**GPU_TAINT, "effect": "PREFER_NO_SCHEDULE"}], "add taint"),
        ("AL2023_x86_64_STANDARD", [GPU_TAINT], "remove the nvidia.com/gpu taint"),
    ],
)
def test_eks_gpu_node_taints(ami: str, taints: list[dict[str, str]], problem: str | None) -> None:
    found = messages("eks-gpu-node-taints", node_group(ami, taints))
    assert (found == []) is (problem is None)
    if problem:
        assert problem in found[0]


def eks_cluster(vpc: dict[str, Any]) -> Resource:
    return Resource("aws:eks/cluster:Cluster", "ml", {"vpcConfig": {"subnetIds": ["subnet-1"], **vpc}})


@pytest.mark.parametrize(
    ("vpc", "config", "open_to"),
    [
        ({"endpointPublicAccess": False}, {}, None),
        ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}, {}, None),
        ({}, {}, "0.0.0.0/0 (the AWS default)"),
        ({"publicAccessCidrs": ["0.0.0.0/0"]}, {}, "0.0.0.0/0"),
        ({"publicAccessCidrs": ["10.0.0.0/8", "::/0"]}, {}, "::/0"),
        ({"publicAccessCidrs": ["0.0.0.0/0"]}, {"allowPublicEndpoint": True}, None),
    ],
)
def test_eks_endpoint_not_public(vpc: dict[str, Any], config: dict[str, Any], open_to: str | None) -> None:
    found = messages("eks-endpoint-not-public", eks_cluster(vpc), config)
    assert (found == []) is (open_to is None)
    if open_to:
        assert f"open to {open_to}" in found[0] and "set endpointPublicAccess false" in found[0]


def test_resource_rules_ignore_other_types() -> None:
    namespace = Resource("kubernetes:core/v1:Namespace", "ns", {"metadata": {"name": "x"}})
    patch = Resource("kubernetes:apps/v1:DeploymentPatch", "p", {"spec": {"template": {"spec": {"containers": [{}]}}}})
    for r in RULES:
        if r.resource_check:
            assert run_resource_rule(r, namespace) == [] and run_resource_rule(r, patch) == [], r.name

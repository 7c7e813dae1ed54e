"""EKS: GPU nodes exist when a GPU workload is admitted, and go away when idle.

cluster-autoscaler (pinned, least-privilege IAM through EKS Pod Identity, auto-discovery by tags,
scale from zero, ProvisioningRequests on), Kueue's ProvisioningRequest admission check on the GPU
flavor only, node-group sizes left to the autoscaler, waitForPodsReady outlasting provisioning.
All under mocks: the eks stack as ``pulumi up`` would register it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import capture as capture_module
from mlplatform.capture import Capture, CapturedResource, capture_stack
from mlplatform.cluster.eks_autoscaler import PROVISIONING_REQUEST_CRD, provisioning_request_crd
from mlplatform.cluster.pools import POOL_LABEL
from mlplatform.versions import CURRENT
from tests.stacks import EKS_FROM_HERE
from tests.validation import UPSTREAM, unknown_release_keys, validate_manifest

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
TAG = "aws:autoscaling/tag:Tag"
OWNED_TAG = "k8s.io/cluster-autoscaler/ml-platform"
PREFIX = "k8s.io/cluster-autoscaler/node-template"


@pytest.fixture(scope="module")
def eks() -> Capture:
    return capture_stack("eks", {**EKS_FROM_HERE, "eksGpuIdleMinutes": 7})


def release(capture: Capture, name: str) -> CapturedResource:
    (found,) = [r for r in capture.of_type(RELEASE) if r.name == name]
    return found


def minutes(duration: str) -> float:
    """'15m0s', '25m', '90s' -> minutes."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    hours, mins, secs = (int(g or 0) for g in match.groups())
    return hours * 60 + mins + secs / 60


def asg_tags(capture: Capture, pool: str) -> dict[str, str]:
    (group,) = [g for g in capture.of_type(NODE_GROUP) if g.props["labels"][POOL_LABEL] == pool]
    asg = f"eks-{group.name}-asg"  # what the mocks answer for the group's Auto Scaling group
    return {t.props["tag"]["key"]: t.props["tag"]["value"] for t in capture.of_type(TAG)
            if t.props["autoscalingGroupName"] == asg}  # fmt: skip


def reaches(capture: Capture, start: CapturedResource, target: str) -> bool:
    by_urn = {r.urn: r for r in capture.resources}
    todo, seen = list(start.dependencies), set()
    while todo:
        urn = todo.pop()
        if urn == target:
            return True
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        todo.extend(by_urn[urn].dependencies)
        parent = by_urn[urn].parent
        if parent:
            todo.append(parent)
    return False


def test_the_autoscaler_is_pinned_and_its_values_exist_in_the_chart(eks: Capture) -> None:
    props = release(eks, "cluster-autoscaler").props
    assert (props["chart"], props["version"], props["namespace"]) == ("cluster-autoscaler", "9.53.0", "kube-system")
    assert props["repositoryOpts"]["repo"] == CURRENT.cluster_autoscaler.repo == "https://kubernetes.github.io/autoscaler"
    chart = yaml.safe_load((UPSTREAM / "cluster-autoscaler-9.53.0" / "Chart.yaml").read_text())
    # The image is the chart's own appVersion, whose minor is the cluster's.
    assert props["values"]["image"]["tag"] == CURRENT.cluster_autoscaler_image[1] == f"v{chart['appVersion']}"
    assert chart["appVersion"].startswith("1.34.")
    assert unknown_release_keys(props["chart"], props["values"], props["version"]) == []
    misspelt = {**props["values"], "autoDiscovery": {"clusterNam": "x"}}
    assert unknown_release_keys(props["chart"], misspelt, props["version"]) == ["autoDiscovery.clusterNam"]


def test_the_autoscaler_serves_provisioning_requests_and_removes_idle_gpu_nodes(eks: Capture) -> None:
    values = release(eks, "cluster-autoscaler").props["values"]
    args = values["extraArgs"]
    assert args["enable-provisioning-requests"] == "true"
    assert args["kube-api-content-type"] == "application/json"  # required with ProvisioningRequests
    assert minutes(args["scale-down-delay-after-add"]) == 7
    assert asg_tags(eks, "gpu")[f"{PREFIX}/autoscaling-options/scaledownunneededtime"] == "7m0s"
    assert f"{PREFIX}/autoscaling-options/scaledownunneededtime" not in asg_tags(eks, "cpu")
    # It may read ProvisioningRequests and their pod templates and write their status; the chart
    # grants neither.
    granted = {
        (g, r) for rule in values["rbac"]["additionalRules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert {("autoscaling.x-k8s.io", "provisioningrequests"), ("autoscaling.x-k8s.io", "provisioningrequests/status"),
            ("", "podtemplates")} <= granted  # fmt: skip
    # On the CPU pool: never keeping a GPU node alive to run itself.
    assert values["nodeSelector"] == {POOL_LABEL: "cpu"}


def test_auto_discovery_scale_from_zero_and_the_iam_condition_use_the_same_tags(eks: Capture) -> None:
    values = release(eks, "cluster-autoscaler").props["values"]
    assert values["autoDiscovery"] == {"clusterName": "ml-platform", "tags": ["k8s.io/cluster-autoscaler/enabled",
                                                                              OWNED_TAG]}  # fmt: skip
    for pool in ("cpu", "gpu"):
        tags = asg_tags(eks, pool)
        assert tags["k8s.io/cluster-autoscaler/enabled"] == "true" and tags[OWNED_TAG] == "owned", pool
    # Scale from zero: a template GPU node with the pool's labels (the AWS GPU label included, so
    # a new node counts as unready until its GPUs are advertised), taint and GPUs.
    (gpu_group,) = [g for g in eks.of_type(NODE_GROUP) if g.props["labels"][POOL_LABEL] == "gpu"]
    gpu = asg_tags(eks, "gpu")
    assert gpu_group.props["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia"
    for key, value in gpu_group.props["labels"].items():
        assert gpu[f"{PREFIX}/label/{key}"] == value
    assert gpu[f"{PREFIX}/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert gpu[f"{PREFIX}/resources/nvidia.com/gpu"] == "1"
    policy = iam_policy(eks)
    (scale,) = [s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert scale["Condition"] == {"StringEquals": {f"aws:ResourceTag/{OWNED_TAG}": "owned"}}


def test_a_sliced_gpu_template_advertises_the_slices() -> None:
    sliced = capture_stack("eks", {**EKS_FROM_HERE, "gpuTimeSlicingReplicas": 4})
    assert asg_tags(sliced, "gpu")[f"{PREFIX}/resources/nvidia.com/gpu"] == "4"


def iam_policy(capture: Capture) -> dict[str, Any]:
    (policy,) = capture.of_type("aws:iam/policy:Policy")
    return json.loads(policy.props["policy"])  # type: ignore[no-any-return]


def test_the_autoscaler_role_is_least_privilege_through_pod_identity(eks: Capture) -> None:
    (role,) = [r for r in eks.of_type("aws:iam/role:Role") if r.name == "ml-platform-autoscaler"]
    trust = json.loads(role.props["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                      "Action": ["sts:AssumeRole", "sts:TagSession"]}]  # fmt: skip
    (association,) = eks.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    values = release(eks, "cluster-autoscaler").props["values"]
    assert (association.props["namespace"], association.props["serviceAccount"]) == (
        "kube-system",
        values["rbac"]["serviceAccount"]["name"],
    )
    assert association.props["roleArn"] == "arn:aws:iam::123456789012:role/ml-platform-autoscaler"
    statements = iam_policy(eks)["Statement"]
    writes = {a for s in statements for a in s["Action"] if not a.split(":")[1].startswith(("Describe", "Get"))}
    assert writes == {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}
    for statement in statements:
        assert "*" not in statement["Action"] and statement["Effect"] == "Allow"
        describe_only = all(a.split(":")[1].startswith(("Describe", "Get")) for a in statement["Action"])
        if statement["Resource"] == "*" and not describe_only:  # unscoped writes: only under the tag condition
            assert set(statement["Action"]) <= writes and statement["Condition"], statement
    (nodegroups,) = [s for s in statements if s["Action"] == ["eks:DescribeNodegroup"]]
    assert nodegroups["Resource"] == "arn:aws:eks:us-east-1:123456789012:nodegroup/ml-platform/*/*"


def test_node_group_sizes_are_the_autoscalers_after_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    ignored: dict[str, list[str]] = {}

    class Recording(capture_module.RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
            ignored[request.name] = list(request.ignoreChanges)
            return super().RegisterResource(request)

    monkeypatch.setattr(capture_module, "RecordingMonitor", Recording)
    eks = capture_stack("eks", EKS_FROM_HERE)
    groups = eks.of_type(NODE_GROUP)
    assert len(groups) == 2
    for group in groups:
        assert ignored[group.name] == ["scalingConfig.desiredSize"], group.name
    assert ignored["ml-platform-net"] == []  # only where a controller owns the field
    # The eks stack starts without GPU nodes: the autoscaler adds them when a GPU job is admitted.
    (gpu,) = [g for g in groups if g.props["labels"][POOL_LABEL] == "gpu"]
    assert gpu.props["scalingConfig"]["desiredSize"] == 0 and gpu.props["scalingConfig"]["maxSize"] == 2


def test_tag_resources_are_named_by_their_key(eks: Capture) -> None:
    # Numbered names shift when a tag is added, and replacements then delete their successors' keys.
    for tag in eks.of_type(TAG):
        key = tag.props["tag"]["key"]
        assert tag.name.endswith(f"-asg-tag-{hashlib.sha256(key.encode()).hexdigest()[:10]}"), tag.name


def test_the_provisioning_request_crd_is_the_vendored_one_and_comes_first(eks: Capture) -> None:
    vendored = UPSTREAM / "cluster-autoscaler-9.53.0" / PROVISIONING_REQUEST_CRD.name
    assert PROVISIONING_REQUEST_CRD.read_bytes() == vendored.read_bytes()
    (crd,) = [
        r
        for r in eks.resources
        if r.type == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
        and r.props["metadata"]["name"] == "provisioningrequests.autoscaling.x-k8s.io"
    ]
    manifest = crd.manifest()
    assert manifest["spec"] == provisioning_request_crd()["spec"]
    validate_manifest(manifest)
    # Kueue sets up its ProvisioningRequest controller only if the API exists when it starts; the
    # autoscaler needs it too.
    assert reaches(eks, release(eks, "kueue"), crd.urn)
    assert reaches(eks, release(eks, "cluster-autoscaler"), crd.urn)


def test_gpu_workloads_wait_for_provisioned_nodes_on_the_gpu_flavor_only(eks: Capture, dev: Capture) -> None:
    (check,) = eks.kind("AdmissionCheck")
    (config,) = eks.kind("ProvisioningRequestConfig")
    assert check["spec"] == {
        "controllerName": "kueue.x-k8s.io/provisioning-request",
        "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig",
                       "name": config["metadata"]["name"]},
    }  # fmt: skip
    assert config["spec"]["provisioningClassName"] == "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
    assert config["spec"]["managedResources"] == ["nvidia.com/gpu"]  # CPU pod sets need no new node
    for queue in eks.kind("ClusterQueue"):
        assert "admissionChecks" not in queue["spec"]  # that form would hold every workload
        assert queue["spec"]["admissionChecksStrategy"] == {
            "admissionChecks": [{"name": check["metadata"]["name"], "onFlavors": ["gpu"]}]
        }
    # kind's nodes are all there is: nothing to wait for.
    assert not dev.kind("AdmissionCheck") and not dev.kind("ProvisioningRequestConfig")
    assert all("admissionChecksStrategy" not in q["spec"] for q in dev.kind("ClusterQueue"))


def test_wait_for_pods_ready_outlasts_node_provisioning(eks: Capture) -> None:
    kueue = release(eks, "kueue").props["values"]
    manager = yaml.safe_load(kueue["managerConfig"]["controllerManagerConfigYaml"])
    provision = release(eks, "cluster-autoscaler").props["values"]["extraArgs"]["max-node-provision-time"]
    assert minutes(manager["waitForPodsReady"]["timeout"]) >= minutes(provision) + 5
    assert minutes(provision) == 15


def test_the_autoscaler_is_documented_where_its_data_came_from() -> None:
    readme = (Path(PROVISIONING_REQUEST_CRD).parent / "README.md").read_text()
    assert PROVISIONING_REQUEST_CRD.name in readme and "Apache-2.0" in readme

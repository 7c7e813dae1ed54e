"""EKS upgrades: the version gate's rule, the pinned table it walks, and what an upgrade touches in order.

The gate is a dynamic resource whose ``check`` the engine runs in preview and up with the
version recorded in the state. Under mocks the engine's part is played by ``EngineCheckMocks``:
it unpickles the provider the program serialized (as the engine's dynamic-provider host does) and
runs its ``check`` against a recorded version; a failure fails the registration, as it fails
`pulumi preview` and `up`.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import dill
import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from mlplatform import versions
from mlplatform.capture import REPO_ROOT, Capture, PlatformMocks, capture_stack, plain, run_under_mocks
from mlplatform.capture import stack_file_config as file_config
from mlplatform.cluster.eks_upgrade import KubernetesVersionGateProvider
from mlplatform.config import KEYS, ConfigError, parse_config
from mlplatform.eks_versions import EKS_RELEASES, minor, upgrade_path, upgrade_refusal
from stack import build as build_stack
from tests.stacks import EKS_FROM_HERE
from tests.test_eks import _reaches as depends_on

GATE = "pulumi-python:dynamic/eks:KubernetesVersionGate"
CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"


# --- the rule ---------------------------------------------------------------------------------


def test_a_skipped_minor_is_refused_naming_both_versions_and_the_way_there() -> None:
    reason = upgrade_refusal("1.33", "1.35")
    assert reason is not None
    assert "ml-platform:kubernetesVersion" in reason and "at 1.33" in reason and "asks for 1.35" in reason
    assert "1.33 -> 1.34 -> 1.35" in reason and "set 1.34, run pulumi up" in reason
    assert "1.32 -> 1.33 -> 1.34 -> 1.35 -> 1.36" in (upgrade_refusal("1.32", "1.36") or "")


def test_a_downgrade_is_refused_with_the_command_that_sets_it_back() -> None:
    reason = upgrade_refusal("1.34", "1.33")
    assert reason is not None
    assert "cannot downgrade" in reason and "at 1.34" in reason and "asks for 1.33" in reason
    assert "pulumi config set ml-platform:kubernetesVersion 1.34" in reason
    assert upgrade_refusal("1.34", "1.9") is not None  # minors compare as numbers, not text


@pytest.mark.parametrize(("recorded", "requested"), [(None, "1.34"), ("", "1.31"), ("1.34", "1.34"), ("1.33", "1.34")])
def test_first_create_no_change_and_one_minor_up_are_accepted(recorded: str | None, requested: str) -> None:
    assert upgrade_refusal(recorded, requested) is None


def test_minor_parses_numbers_and_refuses_other_text() -> None:
    assert minor("1.9") < minor("1.10")
    assert upgrade_path("1.33", "1.35") == ["1.34", "1.35"]
    with pytest.raises(ValueError, match=r"1\.34\.2"):
        minor("1.34.2")


# --- the provider the engine runs -------------------------------------------------------------


def test_the_provider_check_fails_on_the_version_property_and_passes_a_new_cluster() -> None:
    provider = KubernetesVersionGateProvider()
    old = {"clusterName": "ml", "kubernetesVersion": "1.32"}
    [failure] = provider.check(old, {"clusterName": "ml", "kubernetesVersion": "1.34"}).failures
    assert failure.property == "kubernetesVersion" and "at 1.32" in failure.reason
    assert not provider.check({}, {"clusterName": "ml", "kubernetesVersion": "1.34"}).failures  # first create
    # Another cluster name is a new cluster (the old one is replaced): any version goes.
    assert not provider.check(old, {"clusterName": "ml2", "kubernetesVersion": "1.34"}).failures
    assert not provider.check(old, {"clusterName": "ml", "kubernetesVersion": "1.33"}).failures


def test_the_provider_diff_updates_on_a_new_version_and_replaces_on_a_new_cluster() -> None:
    provider = KubernetesVersionGateProvider()
    old = {"clusterName": "ml", "kubernetesVersion": "1.33"}
    bump = provider.diff("ml", old, {**old, "kubernetesVersion": "1.34"})
    assert bump.changes is True and not bump.replaces
    assert provider.diff("ml", old, dict(old)).changes is False
    assert provider.diff("ml", old, {**old, "clusterName": "other"}).replaces == ["clusterName"]
    assert provider.update("ml", old, {**old, "kubernetesVersion": "1.34"}).outs == {
        "kubernetesVersion": "1.34",
        "clusterName": "ml",
    }


GATE_URN = "urn:pulumi:eks::ml-platform::pulumi-python:dynamic/eks:KubernetesVersionGate::ml-platform-version-gate"


@pytest.fixture(scope="module")
def engine_side() -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """The dynamic-provider host the engine starts (`python -m pulumi.dynamic`, in the project
    directory), spoken to over gRPC as the engine does."""
    host = subprocess.Popen([sys.executable, "-m", "pulumi.dynamic"], cwd=REPO_ROOT, stdout=subprocess.PIPE)
    try:
        assert host.stdout is not None
        port = int(host.stdout.readline())  # its first line, as the engine reads it
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            stub.Configure(provider_pb2.ConfigureRequest(args=struct_pb2.Struct()))
            yield stub
    finally:
        host.kill()
        host.wait()


def wire(version: str, cluster: str = "ml-platform") -> struct_pb2.Struct:
    """The gate's inputs as the engine sends them: the serialized provider beside its properties."""
    props = struct_pb2.Struct()
    props.update(
        {"__provider": serialize_provider(KubernetesVersionGateProvider()), "clusterName": cluster,
         "kubernetesVersion": version}
    )  # fmt: skip
    return props


def test_the_serialized_provider_is_a_stable_reference_to_this_module() -> None:
    payload = serialize_provider(KubernetesVersionGateProvider())
    # Stable: a different payload on every run would show the gate as changed on every `up`.
    assert payload == serialize_provider(KubernetesVersionGateProvider())
    assert b"mlplatform.cluster.eks_upgrade" in base64.b64decode(payload)  # a reference, not the code


def test_the_engine_side_check_refuses_a_skip_and_a_downgrade_and_passes_one_minor_up(
    engine_side: provider_pb2_grpc.ResourceProviderStub,
) -> None:
    def check(old: str | None, new: str) -> list[tuple[str, str]]:
        olds = wire(old) if old else struct_pb2.Struct()
        answer = engine_side.Check(provider_pb2.CheckRequest(urn=GATE_URN, olds=olds, news=wire(new)))
        return [(f.property, f.reason) for f in answer.failures]

    [(prop, reason)] = check("1.33", "1.35")
    assert prop == "kubernetesVersion" and "at 1.33, the config asks for 1.35" in reason
    [(prop, reason)] = check("1.34", "1.33")
    assert prop == "kubernetesVersion" and "cannot downgrade" in reason
    assert check("1.33", "1.34") == [] and check(None, "1.34") == [] and check("1.34", "1.34") == []
    diff = engine_side.Diff(
        provider_pb2.DiffRequest(id="ml-platform", urn=GATE_URN, olds=wire("1.33"), news=wire("1.34"))
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and not diff.replaces


# --- the table --------------------------------------------------------------------------------


def test_every_pinned_minor_has_matching_versions_and_a_one_step_path_from_the_previous() -> None:
    rows = sorted(EKS_RELEASES, key=minor)
    assert versions.KUBERNETES_VERSION in rows and len(rows) >= 2  # an upgrade to the default is pinned
    for previous, current in itertools.pairwise(rows):
        assert upgrade_path(previous, current) == [current], "each pinned minor is reachable from the last"
    for version, release in EKS_RELEASES.items():
        assert set(release.addons) == set(EKS_RELEASES[rows[-1]].addons), version
        assert release.addons["kube-proxy"].startswith(f"v{version}."), "kube-proxy follows the minor"
        assert release.node_ami_release.startswith(f"{version}."), "the AMI release carries its kubelet"
        assert release.autoscaler_image_tag.startswith(f"v{version}."), "cluster-autoscaler matches the minor"
    pinned_tag = versions.CURRENT.cluster_autoscaler_image[1]
    assert EKS_RELEASES[versions.KUBERNETES_VERSION].autoscaler_image_tag == pinned_tag
    assert file_config("eks")["ml-platform:kubernetesVersion"] in EKS_RELEASES
    assert KEYS["kubernetesVersion"].default == versions.KUBERNETES_VERSION


def test_an_eks_minor_without_pins_is_refused_at_config_time_naming_the_table() -> None:
    with pytest.raises(ConfigError, match=r"kubernetesVersion = '1\.32'.*EKS_RELEASES \(1\.33, 1\.34\)"):
        parse_config(
            {"clusterProvider": "eks", "kubernetesVersion": "1.32", "eksPrivateEndpointOnly": "true"}, stack="e"
        )


# --- the stack under mocks (preview=False) ----------------------------------------------------


@pytest.fixture(scope="module")
def eks() -> Capture:
    return capture_stack("eks", EKS_FROM_HERE)


def test_every_aws_resource_waits_for_the_gate_and_everything_on_the_cluster_for_the_cluster(eks: Capture) -> None:
    [gate] = eks.of_type(GATE)
    assert {k: v for k, v in gate.props.items() if k != "__provider"} == {
        "clusterName": "ml-platform",
        "kubernetesVersion": "1.34",
    }
    assert not gate.dependencies, "the gate waits for nothing: it is checked first"
    [cluster] = eks.of_type(CLUSTER)
    assert gate.urn in cluster.dependencies
    # Not only the cluster: no AWS resource of the stack (VPC, IAM, ECR, EFS too) goes before the check.
    aws_resources = [r for r in eks.resources if r.custom and r.type.startswith("aws:")]
    assert len(aws_resources) > 30
    assert not [r.name for r in aws_resources if gate.urn not in r.dependencies]
    on_the_cluster = [r for r in eks.resources if r.type in (NODE_GROUP, ADDON) or r.is_kubernetes_object]
    assert len(on_the_cluster) > 20
    for resource in on_the_cluster:
        assert depends_on(eks, resource, [cluster.urn]), f"{resource.name} could change before the control plane"


def test_add_ons_and_node_groups_follow_the_control_plane_at_the_pinned_versions() -> None:
    for version, release in EKS_RELEASES.items():
        stack = capture_stack("eks", {**EKS_FROM_HERE, "kubernetesVersion": version})
        [cluster] = stack.of_type(CLUSTER)
        assert cluster.props["version"] == version
        assert {a.props["addonName"]: a.props["addonVersion"] for a in stack.of_type(ADDON)} == release.addons
        for addon in stack.of_type(ADDON):
            assert cluster.urn in addon.dependencies  # updated after the control plane
            assert addon.props["resolveConflictsOnUpdate"] == "PRESERVE"
        groups = stack.of_type(NODE_GROUP)
        assert len(groups) == 2
        for group in groups:
            assert depends_on(stack, group, [cluster.urn])
            assert (group.props["version"], group.props["releaseVersion"]) == (version, release.node_ami_release)
            # Rolled one node at a time through evictions (PDBs hold); never forced past a PDB.
            assert group.props["updateConfig"] == {"maxUnavailable": 1}
            assert group.props["forceUpdateVersion"] is False
        [autoscaler] = [r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if r.name == "cluster-autoscaler"]
        assert autoscaler.props["values"]["image"]["tag"] == release.autoscaler_image_tag


def test_serving_keeps_a_replica_through_a_node_roll(eks: Capture) -> None:
    # The roll drains nodes one at a time; the recommender's budget must allow it yet keep one serving.
    [budget] = [m for m in eks.kind("PodDisruptionBudget") if m["metadata"]["namespace"] == "bookstore-ml"]
    [hpa] = [m for m in eks.kind("HorizontalPodAutoscaler") if m["metadata"]["namespace"] == "bookstore-ml"]
    # At least one replica stays, and at least one may go: a budget at minReplicas would block the roll.
    assert 1 <= budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


class EngineCheckMocks(PlatformMocks):
    """Plays the engine's part for the gate: its pickled provider's check against a recorded version."""

    def __init__(self, recorded: str) -> None:
        super().__init__()
        self.recorded = recorded
        self.registered: list[str] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args.typ)
        if args.typ == GATE:
            news = plain(json.loads(json.dumps(args.inputs)))
            provider = dill.loads(base64.b64decode(news["__provider"]))
            olds = {"clusterName": news["clusterName"], "kubernetesVersion": self.recorded}
            failures = provider.check(olds, news).failures
            if failures:
                raise RuntimeError("; ".join(f"{f.property}: {f.reason}" for f in failures))
        return super().new_resource(args)


def run_recorded(mocks: EngineCheckMocks, requested: str) -> None:
    config = {
        **file_config("eks"),
        "ml-platform:eksPublicAccessCidrs": json.dumps(EKS_FROM_HERE["eksPublicAccessCidrs"]),
        "ml-platform:kubernetesVersion": requested,
    }
    run_under_mocks(lambda: build_stack("eks"), stack="eks", config=config, mocks=mocks)


@pytest.mark.parametrize(
    ("recorded", "requested", "says"),
    [("1.32", "1.34", "one minor version at a time"), ("1.34", "1.33", "cannot downgrade")],
)
def test_a_refused_change_fails_the_run_before_anything_goes_to_aws(recorded: str, requested: str, says: str) -> None:
    mocks = EngineCheckMocks(recorded)
    with pytest.raises(Exception, match=rf"{says}.*at {recorded}, the config asks for {requested}") as refused:
        run_recorded(mocks, requested)
    assert "kubernetesVersion" in str(refused.value)
    assert GATE in mocks.registered
    touched = [t for t in mocks.registered if t.startswith(("aws:", "kubernetes:", "command:"))]
    assert not touched, f"registered although the gate refused: {touched}"


def test_one_minor_up_from_the_recorded_version_runs_through() -> None:
    mocks = EngineCheckMocks("1.33")
    run_recorded(mocks, "1.34")
    assert mocks.registered.index(GATE) < mocks.registered.index(CLUSTER)
    assert mocks.registered.count(NODE_GROUP) == 2 and ADDON in mocks.registered

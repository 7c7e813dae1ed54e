"""The eks stack's pure helpers and its edges: invokes, bad input, other callers, the model store."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from mlplatform import capture
from mlplatform.capture import PlatformMocks, capture_stack, run_under_mocks, stack_file_config
from mlplatform.cluster.eks import kubeconfig
from mlplatform.cluster.eks_iam import iam_role_arn
from mlplatform.cluster.eks_network import subnet_plan
from mlplatform.cluster.eks_nodes import autoscaler_node_template_tags
from mlplatform.cluster.eks_storage import MODEL_STORE_CLASS
from mlplatform.cluster.pools import node_pools
from mlplatform.config import ConfigError, parse_config
from mlplatform.eks_versions import EKS_RELEASES
from stack import build as build_stack
from tests.stacks import EKS_FROM_HERE

EXPECTED_INVOKES = {
    "aws:index/getAvailabilityZones:getAvailabilityZones",
    "aws:index/getCallerIdentity:getCallerIdentity",
    "aws:iam/getSessionContext:getSessionContext",
    "aws:index/getPartition:getPartition",
    "aws:index/getRegion:getRegion",
}


class RecordingMocks(PlatformMocks):
    """PlatformMocks that also keep each invoke's token and answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        answer, failures = super().call(args)
        self.calls.append((args.token, answer))
        return answer, failures


def test_every_invoke_is_answered_with_non_empty_fields() -> None:
    mocks = RecordingMocks()
    run_under_mocks(
        lambda: build_stack("eks"),
        stack="eks",
        config={
            **stack_file_config("eks"),
            "ml-platform:eksPublicAccessCidrs": json.dumps(EKS_FROM_HERE["eksPublicAccessCidrs"]),
        },
        mocks=mocks,
    )
    assert {token for token, _ in mocks.calls} == EXPECTED_INVOKES
    for token, answer in mocks.calls:
        assert answer and all(v not in (None, "", []) for v in answer.values()), token


def test_an_unanswered_invoke_fails_the_run_instead_of_returning_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(capture.INVOKE_ANSWERS, "aws:index/getPartition:getPartition")
    with pytest.raises(Exception, match="getPartition"):
        capture_stack("eks", EKS_FROM_HERE)


def test_an_iam_user_deployer_is_its_own_access_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    user = "arn:aws:iam::123456789012:user/alice"
    monkeypatch.setitem(
        capture.INVOKE_ANSWERS,
        "aws:index/getCallerIdentity:getCallerIdentity",
        lambda args: {"id": "123456789012", "accountId": "123456789012", "arn": user, "userId": "AIDAEXAMPLE"},
    )
    (entry,) = capture_stack("eks", EKS_FROM_HERE).of_type("aws:eks/accessEntry:AccessEntry")
    assert entry.props["principalArn"] == user


def test_iam_role_arn_turns_sessions_into_roles_and_keeps_users() -> None:
    session = "arn:aws:sts::111122223333:assumed-role/Admin/alice"
    assert (
        iam_role_arn(session, "arn:aws:iam::111122223333:role/team/Admin")
        == "arn:aws:iam::111122223333:role/team/Admin"
    )
    assert iam_role_arn("arn:aws:iam::111122223333:user/bob", None) == "arn:aws:iam::111122223333:user/bob"
    with pytest.raises(ValueError, match="assumed-role/Admin"):
        iam_role_arn(session, None)


def test_more_zones_than_the_region_has_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"eksAvailabilityZones = 4.*only 3"):
        capture_stack("eks", {**EKS_FROM_HERE, "eksAvailabilityZones": 4})


def test_three_zones_give_three_private_subnets_for_the_nodes() -> None:
    stack = capture_stack("eks", {**EKS_FROM_HERE, "eksAvailabilityZones": 3})
    private = [
        s for s in stack.of_type("aws:ec2/subnet:Subnet") if "kubernetes.io/role/internal-elb" in s.props["tags"]
    ]
    assert len({s.props["availabilityZone"] for s in private}) == 3
    for group in stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert len(group.props["subnetIds"]) == 3


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.20.0.0/20"])
def test_subnet_plan_never_overlaps_and_stays_inside_the_vpc(cidr: str) -> None:
    plan = subnet_plan(cidr, ["a", "b", "c", "d", "e", "f"])
    nets = [ipaddress.ip_network(c) for p in plan for c in (p.private_cidr, p.public_cidr)]
    vpc = ipaddress.ip_network(cidr)
    assert all(n.subnet_of(vpc) for n in nets)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    with pytest.raises(ValueError, match="at most 7 zones"):
        subnet_plan(cidr, [str(i) for i in range(8)])


def test_unpinned_kubernetes_version_is_a_config_error_with_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"kubernetesVersion = '1\.36'.*describe-addon-versions --kubernetes-version 1\.36"
    ):
        parse_config(
            {"clusterProvider": "eks", "kubernetesVersion": "1.36", "eksPrivateEndpointOnly": "true"}, stack="eks"
        )
    # kind runs its pinned node image: the EKS table does not constrain it.
    assert parse_config({"kubernetesVersion": "1.36"}, stack="dev").kubernetes_version == "1.36"


def test_add_ons_are_installed_at_their_pinned_versions_with_pod_identity_for_csi(eks_addons: dict[str, Any]) -> None:
    assert {name: a["addonVersion"] for name, a in eks_addons.items()} == EKS_RELEASES["1.34"].addons
    assert eks_addons["aws-ebs-csi-driver"]["podIdentityAssociations"][0]["serviceAccount"] == "ebs-csi-controller-sa"
    assert eks_addons["aws-efs-csi-driver"]["podIdentityAssociations"][0]["serviceAccount"] == "efs-csi-controller-sa"
    assert "podIdentityAssociations" not in eks_addons["coredns"]


@pytest.fixture(scope="module")
def eks_addons() -> dict[str, Any]:
    return {a.props["addonName"]: a.props for a in capture_stack("eks", EKS_FROM_HERE).of_type("aws:eks/addon:Addon")}


def test_model_store_is_encrypted_efs_reachable_by_nfs_from_the_cluster_only() -> None:
    stack = capture_stack("eks", EKS_FROM_HERE)
    (fs,) = stack.of_type("aws:efs/fileSystem:FileSystem")
    assert fs.props["encrypted"] is True
    private = {f"{s.name}-id" for s in stack.of_type("aws:ec2/subnet:Subnet") if "internal-elb" in json.dumps(s.props)}
    assert {m.props["subnetId"] for m in stack.of_type("aws:efs/mountTarget:MountTarget")} == private
    (rule,) = stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert (rule.props["fromPort"], rule.props["toPort"], rule.props["ipProtocol"]) == (2049, 2049, "tcp")
    assert rule.props["referencedSecurityGroupId"] == "sg-0eksclustermock"  # the cluster SG, no CIDR
    assert "cidrIpv4" not in rule.props
    (sc,) = stack.kind("StorageClass")
    assert sc["metadata"]["name"] == MODEL_STORE_CLASS == stack.result.platform.cluster.model_store_class
    assert sc["parameters"]["fileSystemId"] == f"{fs.name}-id"
    assert (sc["parameters"]["uid"], sc["parameters"]["gid"], sc["parameters"]["directoryPerms"]) == (
        "10001",
        "10001",
        "700",
    )
    for claim in stack.kind("PersistentVolumeClaim"):
        assert claim["spec"]["storageClassName"] == MODEL_STORE_CLASS


def test_images_go_to_an_immutable_scanned_ecr_repository() -> None:
    stack = capture_stack("eks", EKS_FROM_HERE)
    (repo,) = stack.of_type("aws:ecr/repository:Repository")
    assert repo.props["imageTagMutability"] == "IMMUTABLE"
    assert repo.props["imageScanningConfiguration"] == {"scanOnPush": True}


def test_kubeconfig_authenticates_with_aws_eks_get_token() -> None:
    config = kubeconfig("ml", "https://example.eks", "Y2E=", "eu-west-1", profile="dev")
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:2] == ["eks", "get-token"]
    assert exec_["args"][exec_["args"].index("--cluster-name") + 1] == "ml"
    assert exec_["args"][exec_["args"].index("--region") + 1] == "eu-west-1"
    assert exec_["env"] == [{"name": "AWS_PROFILE", "value": "dev"}]
    assert "env" not in kubeconfig("ml", "https://e", "Y2E=", "eu-west-1")["users"][0]["user"]["exec"]


def test_kubeconfig_output_is_a_secret() -> None:
    stack = capture_stack("eks", EKS_FROM_HERE)
    providers = stack.of_type("pulumi:providers:kubernetes")
    assert len(providers) == 2  # the cluster's, and the one adopting the CRDs Helm installed before
    for provider in providers:
        assert capture.SECRET_SIG in json.dumps(provider.inputs["kubeconfig"])


def test_autoscaler_template_tags_follow_the_pool() -> None:
    config = parse_config(
        {"clusterProvider": "eks", "eksGpusPerNode": "4", "eksPrivateEndpointOnly": "true"}, stack="eks"
    )
    cpu, gpu = node_pools(config)
    tags = autoscaler_node_template_tags(gpu)
    assert tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "4"
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert not any("/taint/" in k or "/resources/" in k for k in autoscaler_node_template_tags(cpu))

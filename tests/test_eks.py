"""The eks stack under Pulumi mocks (preview=False): network, nodes, GPU taint, API exposure, IAM.

Nothing here reaches AWS: ``capture_stack("eks", EKS_FROM_HERE)`` runs the real program from Pulumi.eks.yaml and
records what the engine would receive; the mocks answer every invoke and raise on any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from mlplatform.capture import Capture, CapturedResource, capture_stack
from mlplatform.cluster.eks_network import ELB_ROLE_TAG, INTERNAL_ELB_ROLE_TAG, cluster_tag
from mlplatform.cluster.pools import GPU_TAINT
from tests.stacks import EKS_FROM_HERE
from tests.validation import validate_manifest

SUBNET = "aws:ec2/subnet:Subnet"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CLUSTER = "aws:eks/cluster:Cluster"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


@pytest.fixture(scope="module")
def eks() -> Capture:
    capture = capture_stack("eks", EKS_FROM_HERE)
    assert len(capture.of_type(CLUSTER)) == 1  # a run that registered nothing would pass every "for all"
    return capture


def mock_id(resource: CapturedResource) -> str:
    """The id PlatformMocks gives a resource (``<name>-id``): how inputs refer to it."""
    return f"{resource.name}-id"


def subnets(capture: Capture, *, public: bool) -> list[CapturedResource]:
    role = ELB_ROLE_TAG if public else INTERNAL_ELB_ROLE_TAG
    return [s for s in capture.of_type(SUBNET) if role in s.props.get("tags", {})]


def node_group(capture: Capture, pool: str) -> dict:
    groups = [g.props for g in capture.of_type(NODE_GROUP) if g.props["labels"].get("mlplatform.io/pool") == pool]
    assert len(groups) == 1, pool
    return groups[0]


def test_subnets_span_at_least_two_zones_with_a_public_and_a_private_subnet_each(eks: Capture) -> None:
    public, private = subnets(eks, public=True), subnets(eks, public=False)
    zones = {s.props["availabilityZone"] for s in public + private}
    assert len(zones) >= 2
    for zone in zones:
        assert [s.props["availabilityZone"] for s in public].count(zone) == 1
        assert [s.props["availabilityZone"] for s in private].count(zone) == 1
    assert len(public) + len(private) == len(eks.of_type(SUBNET))  # every subnet has its LB role tag
    for s in public + private:
        assert s.props["tags"][cluster_tag("ml-platform")] == "shared"


def test_private_subnets_route_to_the_internet_only_through_nat(eks: Capture) -> None:
    tables = {mock_id(t): t.props for t in eks.of_type("aws:ec2/routeTable:RouteTable")}
    associations = eks.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assocs = {a.props["subnetId"]: a.props["routeTableId"] for a in associations}
    for s in subnets(eks, public=False):
        routes = tables[assocs[mock_id(s)]]["routes"]
        assert routes and all("natGatewayId" in r and "gatewayId" not in r for r in routes)
    for s in subnets(eks, public=True):
        assert any("gatewayId" in r for r in tables[assocs[mock_id(s)]]["routes"])


def test_nodes_and_the_control_plane_live_only_in_private_subnets(eks: Capture) -> None:
    private = {mock_id(s) for s in subnets(eks, public=False)}
    groups = eks.of_type(NODE_GROUP)
    assert len(groups) == 2
    for g in groups:
        assert set(g.props["subnetIds"]) == private
    assert set(eks.of_type(CLUSTER)[0].props["vpcConfig"]["subnetIds"]) == private


def test_gpu_taint_is_on_the_gpu_group_and_only_there(eks: Capture) -> None:
    gpu, cpu = node_group(eks, "gpu"), node_group(eks, "cpu")
    assert gpu["taints"] == [GPU_TAINT.as_eks()]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["instanceTypes"] == ["g5.xlarge"]
    assert gpu["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu["scalingConfig"]["minSize"] == 0  # scale from zero, as Pulumi.eks.yaml asks
    assert not cpu.get("taints")
    assert "nvidia.com/gpu.present" not in cpu["labels"]


def test_kueue_gpu_flavor_selects_and_tolerates_exactly_the_gpu_group(eks: Capture) -> None:
    gpu = node_group(eks, "gpu")
    flavor = next(m for m in eks.kind("ResourceFlavor") if m["metadata"]["name"] == "gpu")["spec"]
    assert flavor["nodeLabels"].items() <= gpu["labels"].items()
    cpu = node_group(eks, "cpu")
    assert not flavor["nodeLabels"].items() <= cpu["labels"].items()  # the labels pick one group
    taints = [{"key": t["key"], "value": t["value"], "effect": EFFECTS[t["effect"]]} for t in gpu["taints"]]
    assert flavor["nodeTaints"] == taints
    for taint in taints:
        assert {**taint, "operator": "Equal"} in flavor["tolerations"]


def test_scale_from_zero_tags_describe_the_gpu_template_node(eks: Capture) -> None:
    tags = {t.props["tag"]["key"]: t.props["tag"]["value"] for t in eks.of_type("aws:autoscaling/tag:Tag")}
    prefix = "k8s.io/cluster-autoscaler/node-template"
    gpu = node_group(eks, "gpu")
    for key, value in gpu["labels"].items():
        assert tags[f"{prefix}/label/{key}"] == value
    assert tags[f"{prefix}/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert tags[f"{prefix}/resources/nvidia.com/gpu"] == "1"
    # The CPU group never scales below 2 here, so only the GPU group's ASG is tagged.
    assert not any(k.endswith("/label/mlplatform.io/pool") and v == "cpu" for k, v in tags.items())


def test_api_endpoint_is_private_when_deploying_from_inside_the_vpc() -> None:
    private = capture_stack("eks", {"eksPublicAccessCidrs": [], "eksPrivateEndpointOnly": True})
    vpc_config = private.of_type(CLUSTER)[0].props["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is False
    assert "0.0.0.0/0" not in (vpc_config.get("publicAccessCidrs") or [])


def test_configured_public_cidrs_are_the_only_public_access() -> None:
    opened = capture_stack("eks", {"eksPublicAccessCidrs": ["203.0.113.7/32"]})
    vpc_config = opened.of_type(CLUSTER)[0].props["vpcConfig"]
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == ["203.0.113.7/32"]
    assert vpc_config["endpointPrivateAccess"] is True


def attached_policies(capture: Capture) -> dict[str, set[str]]:
    """Role name -> the managed policy ARNs attached to it."""
    roles: dict[str, set[str]] = {r.props.get("name", r.name): set() for r in capture.of_type(ROLE)}
    for a in capture.of_type(ATTACHMENT):
        roles[a.props["role"]].add(a.props["policyArn"])
    return roles


def test_each_iam_role_holds_exactly_its_minimal_managed_policies(eks: Capture) -> None:
    aws = "arn:aws:iam::aws:policy/"
    assert attached_policies(eks) == {
        "ml-platform-cluster": {aws + "AmazonEKSClusterPolicy"},
        "ml-platform-node": {
            aws + "AmazonEKSWorkerNodePolicy",
            aws + "AmazonEKS_CNI_Policy",
            aws + "AmazonEC2ContainerRegistryReadOnly",
        },
        "ml-platform-ebs-csi": {aws + "service-role/AmazonEBSCSIDriverPolicy"},
        "ml-platform-efs-csi": {aws + "service-role/AmazonEFSCSIDriverPolicy"},
        # Its own policy (tests/test_autoscaler.py): scale only this cluster's node groups.
        "ml-platform-autoscaler": {"arn:aws:iam::123456789012:policy/ml-platform-autoscaler-scale"},
    }
    assert not eks.of_type("aws:iam/rolePolicy:RolePolicy")  # no inline policies either
    trusted = {r.name: r.props["assumeRolePolicy"] for r in eks.of_type(ROLE)}
    assert "eks.amazonaws.com" in trusted["ml-platform-cluster"]
    assert "ec2.amazonaws.com" in trusted["ml-platform-node"]
    assert "pods.eks.amazonaws.com" in trusted["ml-platform-efs-csi"]
    assert "pods.eks.amazonaws.com" in trusted["ml-platform-autoscaler"]


def test_cluster_uses_api_authentication_and_makes_the_deployer_role_admin(eks: Capture) -> None:
    access = eks.of_type(CLUSTER)[0].props["accessConfig"]
    assert access == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    (entry,) = eks.of_type("aws:eks/accessEntry:AccessEntry")
    # The mocked caller is an STS session of role PlatformAdmin: the entry names the IAM role.
    assert entry.props["principalArn"] == "arn:aws:iam::123456789012:role/PlatformAdmin"
    (policy,) = eks.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert policy.props["policyArn"].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
    assert policy.props["accessScope"] == {"type": "cluster"}


def test_every_kubernetes_object_of_the_eks_stack_validates(eks: Capture) -> None:
    objects = eks.kubernetes_objects()
    assert {"StorageClass", "Namespace", "ResourceFlavor", "ClusterQueue"} <= {m["kind"] for m in objects}
    for manifest in objects:
        validate_manifest(manifest)
    # Monitoring is on in eks: its prometheus-operator objects validate against their vendored CRDs too.
    assert {"ServiceMonitor", "PrometheusRule"} <= {m["kind"] for m in objects}


def _reaches(capture: Capture, start: CapturedResource, targets: Iterable[str]) -> bool:
    """Whether ``start`` depends (directly, transitively, or through its provider) on a target URN."""
    by_urn = {r.urn: r for r in capture.resources}
    wanted, seen, todo = set(targets), set(), [start.urn]
    while todo:
        urn = todo.pop()
        if urn in wanted and urn != start.urn:
            return True
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        r = by_urn[urn]
        todo.extend(r.dependencies)
        if r.provider:
            todo.append(r.provider.rsplit("::", 1)[0])
    return False


def test_teardown_removes_everything_in_the_vpc_before_the_vpc(eks: Capture) -> None:
    cluster = eks.of_type(CLUSTER)[0]
    gateway_types = ("aws:ec2/natGateway:NatGateway", "aws:ec2/internetGateway:InternetGateway")
    gateways = [r.urn for r in eks.resources if r.type in gateway_types]
    # The cluster waits for the whole network (routes, NAT, IGW), so destroy removes it first...
    assert set(gateways) <= set(cluster.dependencies)
    # ...and everything that puts ENIs or load balancers in the VPC goes before the cluster.
    in_vpc = [
        r
        for r in eks.resources
        if r.custom
        and (r.type in (NODE_GROUP, "aws:eks/addon:Addon", "aws:efs/mountTarget:MountTarget") or r.is_kubernetes_object)
    ]
    assert len(in_vpc) > 10
    for r in in_vpc:
        subnet_urns = [s.urn for s in eks.of_type(SUBNET)]
        assert _reaches(eks, r, [cluster.urn, *subnet_urns]), r.name


def test_network_policies_are_enforced_by_the_vpc_cni(eks: Capture) -> None:
    # The ML namespaces' default-deny is only real if the CNI enforces NetworkPolicies.
    (cni,) = [a.props for a in eks.of_type("aws:eks/addon:Addon") if a.props["addonName"] == "vpc-cni"]
    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert eks.kind("NetworkPolicy")


def test_provider_is_configured_only_once_the_deployer_can_reach_the_api(eks: Capture) -> None:
    # A provider configured before the access association exists gets a 401 and marks the cluster
    # unreachable for the whole run: its kubeconfig must come out of the access check.
    providers = eks.of_type("pulumi:providers:kubernetes")
    assert {p.name for p in providers} == {"ml-platform-provider", "ml-platform-crd-provider"}
    check = eks.named("ml-platform-api-access")
    (association,) = eks.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert association.urn in check.dependencies
    for provider in providers:  # the CRDs' provider too
        assert check.urn in provider.dependencies
        assert provider.props["kubeconfig"] == check.props["environment"]["KUBECONFIG_DATA"]  # handed on as is
    # Never drop objects from the state when the API is unreachable (expired credentials, an IP
    # outside eksPublicAccessCidrs): a later up would hit AlreadyExists, a destroy would leak.
    assert all("deleteUnreachable" not in provider.props for provider in providers)


def test_missing_gpu_capacity_does_not_block_the_platform(eks: Capture) -> None:
    gpu_group = next(
        r for r in eks.of_type("aws:eks/nodeGroup:NodeGroup") if r.props["labels"]["mlplatform.io/pool"] == "gpu"
    )
    cpu_group = next(
        r for r in eks.of_type("aws:eks/nodeGroup:NodeGroup") if r.props["labels"]["mlplatform.io/pool"] == "cpu"
    )
    kueue = next(r for r in eks.of_type("kubernetes:helm.sh/v3:Release") if r.name == "kueue")
    assert cpu_group.urn in kueue.dependencies
    assert gpu_group.urn not in kueue.dependencies


def test_the_image_is_pushed_for_the_nodes_architecture_once_per_content_tag() -> None:
    stack = capture_stack("eks", {**EKS_FROM_HERE, "aws:profile": "ml-admin"})
    build = stack.named("bookstore-image-build").props
    assert "--platform linux/amd64" in build["create"]
    assert "aws ecr describe-images" in build["create"]  # an immutable tag is never pushed twice
    assert build["environment"]["AWS_PROFILE"] == "ml-admin"
    repository, tag = build["environment"]["IMAGE"].rsplit(":", 1)
    assert repository == build["environment"]["REPOSITORY"] and len(tag) == 12

"""An AWS EKS cluster with a CPU pool and a tainted GPU pool, built with pulumi-aws only.

The EKS twin of ``kind.py``: the same ``Cluster`` interface (provider, pools, ready, model store,
image registry), so nothing above this module branches on the cloud. What differs for real lives
here: a VPC, IAM, managed node groups, pinned EKS add-ons, EFS for the model store and ECR for
images.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_kubernetes as k8s

from ..config import ConfigError, PlatformConfig
from ..crds import adopting_provider
from ..eks_versions import eks_release
from .eks_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs, discovery_tags, idle_tags
from .eks_iam import (
    CLUSTER_POLICIES,
    EBS_CSI_POLICIES,
    EFS_CSI_POLICIES,
    NODE_POLICIES,
    POD_IDENTITY_ACTIONS,
    POD_IDENTITY_PRINCIPAL,
    iam_role_arn,
    role_with_policies,
)
from .eks_network import Vpc, VpcArgs
from .eks_nodes import CPU_AMI_TYPE, GPU_AMI_TYPE, EksNodeGroup, EksNodeGroupArgs
from .eks_storage import EfsModelStore, EfsModelStoreArgs
from .eks_upgrade import KubernetesVersionGate
from .pools import SimulatedGpus, node_pools
from .provisioning import NodeProvisioning

__all__ = ["CLUSTER_ADMIN_POLICY", "EksCluster", "kubeconfig"]

# Installed before any node joins: nodes need pod networking and kube-proxy to become Ready, and
# the Pod Identity agent must run before the CSI drivers ask it for credentials.
_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
# The VPC CNI accepts NetworkPolicies but enforces none until asked to: without this the ML
# namespaces' default-deny would be decoration.
_ADDON_CONFIGURATION: dict[str, dict[str, object]] = {"vpc-cni": {"enableNetworkPolicy": "true"}}
# Deployments that need a node to run on: created after the CPU node group, or they never turn ACTIVE.
_AFTER_NODES = ("coredns", "aws-ebs-csi-driver", "aws-efs-csi-driver")
# Service accounts the CSI controllers run as (fixed by the add-ons), for EKS Pod Identity.
_CSI_SERVICE_ACCOUNTS = {"aws-ebs-csi-driver": "ebs-csi-controller-sa", "aws-efs-csi-driver": "efs-csi-controller-sa"}
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
_CPU_DISK_GIB = 50  # room for ML images; the 20 GiB EKS default fills up fast
_GPU_DISK_GIB = 100  # the CUDA images and the NVIDIA AMI's own footprint need more than CPU nodes


API_ACCESS_TIMEOUT_SECONDS = 600
# Waits until the deployer's access entry works (its association can take a while to apply), then
# prints the kubeconfig: the provider gets it from here, so it cannot be configured earlier.
WAIT_FOR_API = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
deadline=$((SECONDS + TIMEOUT_SECONDS))
until answer="$(kubectl --kubeconfig "$kc" auth can-i '*' '*' --all-namespaces 2>&1)" && [ "$answer" = yes ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "after ${TIMEOUT_SECONDS}s the EKS API still refuses this deployer: $answer." \
         "Is this machine's address in ml-platform:eksPublicAccessCidrs (or inside the VPC with" \
         "eksPrivateEndpointOnly), and do the aws CLI and kubectl work here?" >&2
    exit 1
  fi
  sleep 10
done
printf '%s' "$KUBECONFIG_DATA"
"""


def kubeconfig(
    cluster_name: str, endpoint: str, ca_data: str, region: str, *, profile: str | None = None
) -> dict[str, Any]:
    """A kubeconfig that authenticates with ``aws eks get-token`` (no long-lived token stored)."""
    env = [{"name": "AWS_PROFILE", "value": profile}] if profile else None
    user: dict[str, Any] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
            "interactiveMode": "Never",
        }
    }
    if env:
        user["exec"]["env"] = env
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": user}],
    }


def _after(gate: pulumi.Resource) -> pulumi.ResourceTransformation:
    """A transformation that makes a resource wait for ``gate`` (inherited by every descendant)."""

    def wait(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
        return pulumi.ResourceTransformationResult(
            args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(depends_on=[gate]))
        )

    return wait


def _zones(count: int) -> list[str]:
    """The first ``count`` default (non opt-in) zones of the region, or a ConfigError."""
    found = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    )
    names = sorted(found.names)
    if len(names) < count:
        raise ConfigError(
            [f"ml-platform:eksAvailabilityZones = {count} is not allowed: this region has only {len(names)} ({names})"]
        )
    return names[:count]


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster in its own VPC, a CPU and a GPU managed node group, and a provider for it.

    Guarantees: nodes run only in private subnets; GPU nodes (``AL2023_x86_64_NVIDIA``) carry the
    GPU pool's labels and the ``nvidia.com/gpu=present:NoSchedule`` taint from registration, CPU
    nodes carry no taint; the API endpoint is private, and public only to
    ``eksPublicAccessCidrs`` when set; authentication is by EKS access entries (API mode) and only
    the deploying IAM principal is cluster admin; each IAM role holds only its documented
    managed policies; add-ons, the nodes' AMI release and cluster-autoscaler are pinned per Kubernetes
    minor (``mlplatform.eks_versions.EKS_RELEASES``) and follow the control plane on an upgrade,
    which moves one minor at a time (``KubernetesVersionGate``); the model store is an encrypted
    EFS file system behind the ``model_store_class`` StorageClass; images go to an ECR repository
    (immutable tags, scan on push); the kubeconfig output is a secret using ``aws eks get-token``.

    Teardown: everything that puts ENIs or load balancers into the VPC (node groups, add-ons,
    mount targets, Kubernetes objects through ``provider``) depends on the cluster, and the
    cluster on the whole ``Vpc`` component, so ``pulumi destroy`` deletes them before the NAT
    gateway, internet gateway and subnets.
    """

    def __init__(self, name: str, config: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        # Beside the component, not in it: every resource of the component waits for the gate (the
        # transformation adds the dependency to each, nested ones too), so a refused version change
        # sends nothing to AWS; the cluster also names it explicitly below.
        gate = KubernetesVersionGate(
            f"{name}-version-gate",
            cluster_name=config.cluster_name,
            kubernetes_version=config.kubernetes_version,
            opts=pulumi.ResourceOptions(parent=opts.parent if opts else None),
        )
        gated = pulumi.ResourceOptions(transformations=[_after(gate)])
        super().__init__("mlplatform:cluster:EksCluster", name, None, pulumi.ResourceOptions.merge(opts, gated))
        self.version_gate = gate
        eks = config.eks
        release = eks_release(config.kubernetes_version)
        if release is None:  # config.py refuses it first; this keeps other callers honest
            raise ConfigError([f"ml-platform:kubernetesVersion = {config.kubernetes_version!r} has no EKS pins"])
        versions = release.addons
        self.cpu_pool, self.gpu_pool = node_pools(config)
        self.simulated_gpus: SimulatedGpus | None = None  # real GPUs: the NVIDIA device plugin and DCGM
        partition = aws.get_partition().partition
        region = aws.get_region().region
        caller = aws.get_caller_identity()
        session = aws.iam.get_session_context(arn=caller.arn)
        admin_arn = iam_role_arn(caller.arn, session.issuer_arn)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = Vpc(
            f"{name}-net",
            VpcArgs(cidr=eks.vpc_cidr, zones=tuple(_zones(eks.availability_zones)), cluster_name=config.cluster_name),
            opts=child,
        )

        cluster_role, cluster_role_attachments = role_with_policies(
            f"{name}-cluster", service="eks.amazonaws.com", policies=CLUSTER_POLICIES, partition=partition, parent=self
        )
        node_role, node_role_attachments = role_with_policies(
            f"{name}-node", service="ec2.amazonaws.com", policies=NODE_POLICIES, partition=partition, parent=self
        )
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=config.cluster_name,
            version=config.kubernetes_version,
            role_arn=cluster_role.arn,
            access_config={
                "authentication_mode": "API",
                # The admin entry below is explicit; a bootstrap entry for the same principal would clash.
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            # We install vpc-cni, kube-proxy and coredns as pinned add-ons instead.
            bootstrap_self_managed_addons=False,
            vpc_config={
                "subnet_ids": self.vpc.private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": bool(eks.public_access_cidrs),
                "public_access_cidrs": list(eks.public_access_cidrs) or None,
            },
            tags={"Name": config.cluster_name},
            opts=pulumi.ResourceOptions(
                parent=self,
                # Explicit name: a replacement must delete the old cluster first.
                delete_before_replace=True,
                # Created after (and destroyed before) the subnets' routes and NAT gateway; never
                # updated before the version gate's check passed.
                depends_on=[self.vpc, cluster_role, *cluster_role_attachments, self.version_gate],
            ),
        )
        self.cluster_name: pulumi.Output[str] = self.cluster.name
        self.identity: pulumi.Output[str] = pulumi.Output.concat(self.cluster.arn, "@", self.cluster.created_at)
        cluster_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster])

        admin_entry = aws.eks.AccessEntry(
            f"{name}-admin", cluster_name=self.cluster.name, principal_arn=admin_arn, type="STANDARD", opts=cluster_opts
        )
        self.admin_access = aws.eks.AccessPolicyAssociation(
            f"{name}-admin",
            cluster_name=self.cluster.name,
            principal_arn=admin_entry.principal_arn,
            policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/{CLUSTER_ADMIN_POLICY}",
            access_scope={"type": "cluster"},
            opts=cluster_opts,
        )

        self.addons: dict[str, aws.eks.Addon] = {}
        for addon in _BEFORE_NODES:
            self.addons[addon] = self._addon(
                name, addon, versions[addon], depends_on=[self.cluster], configuration=_ADDON_CONFIGURATION.get(addon)
            )

        # pool, instance types, (min, desired, max), AMI, disk, autoscaler tags: one managed node group each.
        discovered = discovery_tags(config.cluster_name)
        groups = (
            (
                self.cpu_pool,
                eks.cpu_instance_types,
                (eks.cpu_nodes_min, eks.cpu_nodes_desired, eks.cpu_nodes_max),
                CPU_AMI_TYPE,
                _CPU_DISK_GIB,
                discovered,
            ),
            (
                self.gpu_pool,
                eks.gpu_instance_types,
                (eks.gpu_nodes_min, eks.gpu_nodes_desired, eks.gpu_nodes_max),
                GPU_AMI_TYPE,
                _GPU_DISK_GIB,
                {**discovered, **idle_tags(eks.gpu_idle_minutes)},
            ),
        )
        self.cpu_nodes, self.gpu_nodes = (
            EksNodeGroup(
                f"{name}-{pool.name}",
                EksNodeGroupArgs(
                    cluster_name=self.cluster.name,
                    node_role_arn=node_role.arn,
                    subnet_ids=self.vpc.private_subnet_ids,
                    pool=pool,
                    instance_types=instance_types,
                    min_size=sizes[0],
                    desired_size=sizes[1],
                    max_size=sizes[2],
                    ami_type=ami_type,
                    kubernetes_version=config.kubernetes_version,
                    ami_release_version=release.node_ami_release,
                    disk_size_gib=disk,
                    autoscaler_tags=tags,
                    # The role's policy attachments too: a node without them cannot join.
                    after=[*self.addons.values(), node_role, *node_role_attachments],
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster]),
            )
            for pool, instance_types, sizes, ami_type, disk, tags in groups
        )

        csi_roles = {
            addon: role_with_policies(
                f"{name}-{addon.removeprefix('aws-').removesuffix('-driver')}",
                service=POD_IDENTITY_PRINCIPAL,
                actions=POD_IDENTITY_ACTIONS,
                policies=policies,
                partition=partition,
                parent=self,
            )
            for addon, policies in (("aws-ebs-csi-driver", EBS_CSI_POLICIES), ("aws-efs-csi-driver", EFS_CSI_POLICIES))
        }
        for addon in _AFTER_NODES:
            identity: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None
            role_deps: list[pulumi.Resource] = []
            if addon in csi_roles:
                role, attachments = csi_roles[addon]
                identity = [
                    aws.eks.AddonPodIdentityAssociationArgs(
                        role_arn=role.arn, service_account=_CSI_SERVICE_ACCOUNTS[addon]
                    )
                ]
                role_deps = [role, *attachments]
            self.addons[addon] = self._addon(
                name,
                addon,
                versions[addon],
                pod_identity=identity,
                depends_on=[self.cpu_nodes, self.addons["eks-pod-identity-agent"], *role_deps],
            )

        ca_data = self.cluster.certificate_authority.apply(lambda ca: ca.data)
        profile = pulumi.Config("aws").get("profile")
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.name, self.cluster.endpoint, ca_data).apply(
                lambda a: json.dumps(kubeconfig(a[0], a[1], a[2], region, profile=profile))
            )
        )
        # The provider connects when it is configured, and a 401 then (access entry not associated
        # yet: bootstrap_cluster_creator_admin_permissions is off) marks the cluster unreachable for
        # the whole run. So it is configured with the kubeconfig this step hands on only once the
        # deployer's access works. No delete_unreachable: a refresh while the API is unreachable
        # (expired credentials, an address outside eksPublicAccessCidrs) would silently drop every
        # Kubernetes object from the state; docs/eks.md says how to destroy a cluster deleted by hand.
        api_access = command.local.Command(
            f"{name}-api-access",
            create=WAIT_FOR_API,
            interpreter=["/bin/bash", "-c"],
            environment={
                "KUBECONFIG_DATA": self.kubeconfig,
                "TIMEOUT_SECONDS": str(API_ACCESS_TIMEOUT_SECONDS),
                **({"AWS_PROFILE": profile} if profile else {}),
            },
            triggers=[self.cluster.arn, self.admin_access.id],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.admin_access], additional_secret_outputs=["stdout"]
            ),
        )
        handed_on: pulumi.Output[str] = pulumi.Output.secret(api_access.stdout)
        self.provider = k8s.Provider(f"{name}-provider", kubeconfig=handed_on, opts=child)
        self.crd_provider = adopting_provider(f"{name}-crd-provider", handed_on, opts=child)
        # The image push authenticates to ECR with the same AWS profile as the provider.
        self.image_push_environment: dict[str, str] = {"AWS_PROFILE": profile} if profile else {}

        # EKS creates this group and attaches it to the control plane and every managed node.
        cluster_sg = cast(pulumi.Output[str], self.cluster.vpc_config.apply(lambda v: v.cluster_security_group_id))
        self.model_store = EfsModelStore(
            f"{name}-models",
            EfsModelStoreArgs(
                vpc_id=self.vpc.vpc_id,
                subnet_ids=self.vpc.private_subnet_ids,
                client_security_group_id=cluster_sg,
                class_depends_on=[self.addons["aws-efs-csi-driver"], self.admin_access],
            ),
            opts=pulumi.ResourceOptions(parent=self, providers=[self.provider], depends_on=[self.cluster]),
        )
        self.model_store_class: str | None = self.model_store.class_name

        self.registry = aws.ecr.Repository(
            f"{name}-images",
            name=f"{config.cluster_name}/recommender",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            # Destroy must not stall on pushed images: they are rebuilt from the repository.
            force_delete=True,
            opts=child,
        )
        self.image_repository: pulumi.Output[str] | None = self.registry.repository_url

        # GPU nodes come when Kueue asks for them: cluster-autoscaler serves its ProvisioningRequests.
        self.autoscaler = ClusterAutoscaler(
            f"{name}-autoscaler",
            ClusterAutoscalerArgs(
                cluster_name=config.cluster_name,
                eks_cluster=self.cluster,
                region=region,
                partition=partition,
                account_id=caller.account_id,
                cpu_pool=self.cpu_pool,
                provider=self.provider,
                gpu_idle_minutes=eks.gpu_idle_minutes,
                provisioning=NodeProvisioning(),
                image_tag=release.autoscaler_image_tag,
                pins=config.versions,
                # Not the GPU group: auto-discovery finds it whenever it exists, and missing GPU
                # capacity must not block the platform.
                after=[self.cpu_nodes, self.addons["eks-pod-identity-agent"], self.admin_access],
            ),
            opts=child,
        )
        self.node_provisioning: NodeProvisioning | None = self.autoscaler.provisioning

        # Not the GPU nodes: a GPU quota of zero or no g5 capacity in the zones must not block the
        # platform (the device plugin's DaemonSet simply waits for them). The ProvisioningRequest
        # API is: Kueue serves its admission check only if that API exists when Kueue starts.
        self.ready: list[pulumi.Resource] = [
            self.admin_access,
            self.cpu_nodes,
            *self.addons.values(),
            self.model_store,
            self.autoscaler.crd,
        ]
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "vpc_id": self.vpc.vpc_id,
                "image_repository": self.image_repository,
                "model_store_file_system_id": self.model_store.file_system_id,
            }
        )

    def wait_for_gpus(
        self, name: str, *, timeout_seconds: int = 600, opts: pulumi.ResourceOptions | None = None
    ) -> pulumi.Resource | None:
        """None: GPU nodes come and go with cluster-autoscaler, and a GPU quota of zero must not
        block the platform; a GPU workload waits for its node through Kueue's admission check."""
        del name, timeout_seconds, opts
        return None

    def _addon(
        self,
        name: str,
        addon: str,
        version: str,
        *,
        depends_on: list[pulumi.Resource],
        pod_identity: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None,
        configuration: dict[str, object] | None = None,
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.cluster.name,
            addon_name=addon,
            addon_version=version,
            pod_identity_associations=pod_identity,
            configuration_values=json.dumps(configuration) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            # Keep settings someone changed in the cluster on upgrade; Pulumi still pins the version.
            resolve_conflicts_on_update="PRESERVE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

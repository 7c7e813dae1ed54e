"""ML namespaces: one per team, locked down by default, with a share of the cluster and a queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import versions
from .cluster.pools import GPU_RESOURCE
from .config import TeamConfig
from .kueue import ML_NAMESPACE_LABEL, local_queue
from .objects import MANAGED_BY, apply, child_options, namespace_manifest
from .sharing import quantity_text
from .team_queues import cluster_queue_name

__all__ = [
    "TEAM_LABEL",
    "MlNamespace",
    "MlNamespaceArgs",
    "default_deny_policy",
    "dns_egress_policy",
    "ingress_policy",
    "limit_range",
    "ml_namespace",
    "resource_quota",
]

TEAM_LABEL = "mlplatform.io/team"


def ml_namespace(team: TeamConfig, psa_version: str = versions.PSA_VERSION) -> dict[str, Any]:
    return namespace_manifest(
        team.name, "restricted", psa_version, labels={ML_NAMESPACE_LABEL: "true", TEAM_LABEL: team.name}
    )


def resource_quota(team: TeamConfig) -> dict[str, Any]:
    """The most the namespace holds at once: CPU, memory and GPUs requested (never less than its
    ClusterQueue may admit, and no externally exposed Services). Pods Kueue does not admit (serving
    replicas, the retrain launcher) count against the same quota: when they use its headroom, an
    admitted workload's pods can still be refused, so teamCpuQuota/teamMemoryQuota should exceed what
    the queue admits by what serving needs."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "team-quota", "namespace": team.name, "labels": dict(MANAGED_BY)},
        "spec": {
            "hard": {
                "requests.cpu": quantity_text("cpu", team.cpu.namespace_limit),
                "requests.memory": quantity_text("memory", team.memory.namespace_limit),
                # Extended resources are quota'd by request only (they cannot be overcommitted).
                f"requests.{GPU_RESOURCE}": quantity_text("gpus", team.gpus.namespace_limit),
                "pods": "50",
                "persistentvolumeclaims": "10",
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def limit_range(team: TeamConfig) -> dict[str, Any]:
    """Defaults so a container that states no requests still gets them (the quota requires them)."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "container-defaults", "namespace": team.name, "labels": dict(MANAGED_BY)},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
                    "default": {"cpu": "1", "memory": "1Gi"},
                }
            ]
        },
    }


def _policy(namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": dict(spec),
    }


def default_deny_policy(namespace: str) -> dict[str, Any]:
    """Every pod in the namespace: no traffic in or out unless another policy allows it."""
    return _policy(namespace, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def dns_egress_policy(namespace: str) -> dict[str, Any]:
    """Name resolution through the cluster DNS, and nothing else."""
    dns_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return _policy(
        namespace,
        "allow-dns",
        {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [dns_peer], "ports": ports}]},
    )


def ingress_policy(
    namespace: str,
    name: str,
    *,
    pod_labels: Mapping[str, str],
    port: int,
    from_namespaces: Mapping[str, str] | None = None,
    from_pods: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Admit TCP ``port`` on pods matching ``pod_labels`` from the given peers only.

    ``from_namespaces`` selects namespaces by label (``{}`` = every namespace); ``from_pods``
    selects pods by label (within those namespaces, or this namespace when none are given).
    """
    peer: dict[str, Any] = {}
    if from_namespaces is not None:
        peer["namespaceSelector"] = {"matchLabels": dict(from_namespaces)}
    if from_pods is not None:
        peer["podSelector"] = {"matchLabels": dict(from_pods)}
    if not peer:
        raise ValueError(f"ingress policy {name!r}: name the peers (from_namespaces and/or from_pods)")
    return _policy(
        namespace,
        name,
        {
            "podSelector": {"matchLabels": dict(pod_labels)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}],
        },
    )


@dataclass(frozen=True)
class MlNamespaceArgs:
    team: TeamConfig
    cluster_queue: str | None = None  # None: the team's own ClusterQueue
    psa_version: str = versions.PSA_VERSION  # pinned: a cluster upgrade never tightens admission silently


class MlNamespace(pulumi.ComponentResource):
    """A team's namespace, safe by default.

    Guarantees: Pod Security Admission ``restricted`` (enforce, audit and warn, pinned version);
    a ResourceQuota over cpu, memory and ``requests.nvidia.com/gpu`` with no LoadBalancer or
    NodePort Services; LimitRange defaults for containers without requests; default-deny
    ingress and egress with only DNS allowed (``allow_ingress_from`` adds the rest); a Kueue
    LocalQueue ``default`` to the team's own ClusterQueue; the ``default`` service account mounts
    no API token.
    """

    def __init__(
        self,
        name: str,
        args: MlNamespaceArgs,
        *,
        queue_depends_on: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:tenancy:MlNamespace", name, None, opts)
        team = args.team
        self._name = name
        self.team = team
        self.namespace = apply(f"{name}-namespace", ml_namespace(team, args.psa_version), child_options(opts, self))
        in_ns = child_options(opts, self, depends_on=[self.namespace])
        self._in_ns = in_ns
        apply(f"{name}-quota", resource_quota(team), in_ns)
        apply(f"{name}-limits", limit_range(team), in_ns)
        apply(f"{name}-default-deny", default_deny_policy(team.name), in_ns)
        apply(f"{name}-allow-dns", dns_egress_policy(team.name), in_ns)
        k8s.core.v1.ServiceAccountPatch(
            f"{name}-default-sa",
            metadata={"name": "default", "namespace": team.name},
            automount_service_account_token=False,
            opts=in_ns,
        )
        queue = local_queue(team.name, args.cluster_queue or cluster_queue_name(team.name))
        apply(
            f"{name}-local-queue",
            queue,
            child_options(opts, self, depends_on=[self.namespace, *(queue_depends_on or [])]),
        )
        self.namespace_name: pulumi.Output[str] = pulumi.Output.from_input(team.name)
        self.local_queue_name_value: str = queue["metadata"]["name"]
        self.local_queue_name: pulumi.Output[str] = pulumi.Output.from_input(self.local_queue_name_value)
        self.register_outputs({"namespace_name": self.namespace_name, "local_queue_name": self.local_queue_name})

    def allow_ingress_from(
        self,
        policy_name: str,
        *,
        pod_labels: Mapping[str, str],
        port: int,
        from_namespaces: Mapping[str, str] | None = None,
        from_pods: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> pulumi.CustomResource:
        """Open ``port`` on the selected pods to the named peers; everything else stays denied."""
        manifest = ingress_policy(
            self.team.name,
            policy_name,
            pod_labels=pod_labels,
            port=port,
            from_namespaces=from_namespaces,
            from_pods=from_pods,
        )
        return apply(f"{self._name}-{policy_name}", manifest, pulumi.ResourceOptions.merge(self._in_ns, opts))

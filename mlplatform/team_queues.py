"""Kueue objects for teams sharing the cluster: one ClusterQueue per team in one cohort.

Pure builders (``kueue.x-k8s.io/v1beta2``, validated in tests against the upstream CRDs and their
CEL rules); ``kueue.Kueue`` registers them.

How a workload's pod set gets its flavors, and why CPU work never lands on GPU nodes: Kueue assigns
a flavor per *resource group*, and only for the resources the pod set requests
(``flavorassigner.findFlavorForPodSets`` looks up the group of each requested resource). So
cpu and memory are one group whose only flavor (``cpu``) carries no node labels and no
tolerations, and ``nvidia.com/gpu`` is a group of its own whose only flavor (``gpu``) carries the
GPU pool's node labels, taint and toleration. A pod set that requests no GPU is never assigned
anything from the GPU group: it gets neither the GPU nodes' labels nor the toleration for their
taint, so the scheduler keeps it off them. A GPU pod set gets ``cpu`` for its cpu and memory and
``gpu`` for its GPUs; their node labels cannot conflict because ``cpu`` has none. (One group over
all three resources with the flavors in order, as before, let a CPU-only job spill onto the GPU
flavor, which carried cpu and memory quota and the toleration, whenever the CPU flavor was full.)
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .cluster.pools import GPU_RESOURCE
from .sharing import COHORT, RESOURCES, Pools, Share, TeamConfig, quantity_text, shared_remainder

__all__ = [
    "API_VERSION",
    "COHORT",
    "CPU_FLAVOR",
    "GPU_CAPACITY_CHECK",
    "GPU_FLAVOR",
    "LOCAL_QUEUE",
    "ML_NAMESPACE_LABEL",
    "RESOURCE_GROUPS",
    "admission_check",
    "cluster_queue",
    "cluster_queue_name",
    "cohort",
    "local_queue",
    "provisioning_request_config",
]

API_VERSION = "kueue.x-k8s.io/v1beta2"
# Namespaces labelled so are ML namespaces (set by MlNamespace); each team's queue admits only its own.
ML_NAMESPACE_LABEL = "mlplatform.io/ml-namespace"
# Set by the API server on every namespace, and nobody can change it: a team cannot label its way
# into another team's ClusterQueue.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CPU_FLAVOR, GPU_FLAVOR = "cpu", "gpu"
# (flavor, covered resources as Kubernetes names, the team resources behind them): see the module docstring.
RESOURCE_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (CPU_FLAVOR, ("cpu", "memory"), ("cpu", "memory")),
    (GPU_FLAVOR, (GPU_RESOURCE,), ("gpus",)),
)
LOCAL_QUEUE = "default"
# The AdmissionCheck (and its ProvisioningRequestConfig) that holds a GPU workload until the
# autoscaler has provisioned nodes for all of its pods.
GPU_CAPACITY_CHECK = "gpu-capacity"
PROVISIONING_CONTROLLER = "kueue.x-k8s.io/provisioning-request"
# Failed provisioning (no capacity in the zones, a GPU quota of 0) is retried after 1, 2, 4
# minutes, then the workload is requeued: Kueue's documented defaults, spelled out so docs/eks.md
# can say how long a GPU job waits.
PROVISIONING_RETRIES = {"backoffLimitCount": 3, "backoffBaseSeconds": 60, "backoffMaxSeconds": 1800}

assert {r for _, _, team_resources in RESOURCE_GROUPS for r in team_resources} == set(RESOURCES)


def cluster_queue_name(team: str) -> str:
    """A team's ClusterQueue is named after the team (``kubectl get clusterqueue <team>``)."""
    return team


def _quantity(resource: str, value: Decimal) -> str | int:
    return int(value) if resource == "gpus" else quantity_text(resource, value)


def _quota(resource: str, share: Share) -> dict[str, Any]:
    quota: dict[str, Any] = {"nominalQuota": _quantity(resource, share.guaranteed)}
    if share.borrowing_limit is not None:
        quota["borrowingLimit"] = _quantity(resource, share.borrowing_limit)
    if share.lending_limit is not None:
        quota["lendingLimit"] = _quantity(resource, share.lending_limit)
    return quota


def _resource_groups(shares: dict[str, Share]) -> list[dict[str, Any]]:
    return [
        {
            "coveredResources": list(covered),
            # Same length and order as coveredResources (a CEL rule of the CRD).
            "flavors": [
                {
                    "name": flavor,
                    "resources": [
                        {"name": name, **_quota(resource, shares[resource])}
                        for name, resource in zip(covered, team_resources, strict=True)
                    ],
                }
            ],
        }
        for flavor, covered, team_resources in RESOURCE_GROUPS
    ]


def cluster_queue(team: TeamConfig, *, admission_check_name: str | None = None) -> dict[str, Any]:
    """The team's ClusterQueue: its guarantee as nominal quota, its limits, in the shared cohort.

    Preemption: a team takes its guarantee back from borrowers (``reclaimWithinCohort: Any``; with
    fair sharing on, only from teams above their fair share), and within the team a higher
    priority preempts a lower one. ``admission_check_name``: held for that check on the GPU flavor only.
    """
    spec: dict[str, Any] = {
        "cohortName": COHORT,
        "namespaceSelector": {"matchLabels": {ML_NAMESPACE_LABEL: "true", NAMESPACE_NAME_LABEL: team.name}},
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any"},
        "fairSharing": {"weight": format(team.weight.normalize(), "f")},
        "resourceGroups": _resource_groups({r: team.share(r) for r in RESOURCES}),
    }
    if admission_check_name:
        spec["admissionChecksStrategy"] = {
            "admissionChecks": [{"name": admission_check_name, "onFlavors": [GPU_FLAVOR]}]
        }
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": cluster_queue_name(team.name)},
            "spec": spec}  # fmt: skip


def cohort(teams: Sequence[TeamConfig], pools: Pools) -> dict[str, Any]:
    """The cohort of every team's ClusterQueue; its own quota is the part of the pool nobody is
    guaranteed, which any team may borrow. Guarantees plus this add up to the pool exactly."""
    remainder = shared_remainder(teams, pools)
    shares = {r: Share(max(remainder[r], Decimal(0))) for r in RESOURCES}
    return {"apiVersion": API_VERSION, "kind": "Cohort", "metadata": {"name": COHORT},
            "spec": {"resourceGroups": _resource_groups(shares)}}  # fmt: skip


def local_queue(namespace: str, cluster_queue_name: str, name: str = LOCAL_QUEUE) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue_name},
    }


def provisioning_request_config(name: str, provisioning_class: str) -> dict[str, Any]:
    """Ask the autoscaler for nodes for the pod sets that request GPUs (only those: CPU pod sets of
    the same workload run on nodes that are already there)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ProvisioningRequestConfig",
        "metadata": {"name": name},
        "spec": {
            "provisioningClassName": provisioning_class,
            "managedResources": [GPU_RESOURCE],
            "retryStrategy": dict(PROVISIONING_RETRIES),
        },
    }


def admission_check(name: str, config_name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AdmissionCheck",
        "metadata": {"name": name},
        "spec": {
            "controllerName": PROVISIONING_CONTROLLER,
            "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig", "name": config_name},
        },
    }

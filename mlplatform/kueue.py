"""Kueue: job queueing with one ClusterQueue per team, fair sharing and all-or-nothing admission.

Builders return ``kueue.x-k8s.io/v1beta2`` objects (validated in tests against the upstream
CRD schemas and their CEL rules); the team queues are built in ``team_queues.py``. ``Kueue``
installs the chart and then the objects, which depend on it because Kueue's webhooks fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from . import versions
from .cluster.pools import NodePool
from .cluster.provisioning import NodeProvisioning
from .helm import release
from .objects import apply, child_options, namespace_manifest
from .sharing import Pools, TeamConfig
from .team_queues import (
    API_VERSION,
    CPU_FLAVOR,
    GPU_CAPACITY_CHECK,
    GPU_FLAVOR,
    ML_NAMESPACE_LABEL,
    admission_check,
    cluster_queue,
    cluster_queue_name,
    cohort,
    local_queue,
    provisioning_request_config,
)

__all__ = [
    "API_VERSION",
    "FAIR_SHARING_STRATEGIES",
    "KUEUE_NAMESPACE",
    "ML_NAMESPACE_LABEL",
    "PRIORITY_CLASSES",
    "QUEUE_NAME_LABEL",
    "Kueue",
    "KueueArgs",
    "cluster_queue",
    "cpu_flavor",
    "kueue_values",
    "local_queue",
    "pods_ready_timeout",
    "resource_flavor",
]

KUEUE_NAMESPACE = "kueue-system"
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
# name -> (value, description); higher value is admitted first and may preempt lower.
PRIORITY_CLASSES: dict[str, tuple[int, str]] = {
    "production": (1000, "Retraining that feeds a serving model."),
    "experiment": (100, "Ad-hoc training and evaluation runs."),
}
# Admitted workloads whose pods are not all ready within this time are evicted and requeued,
# so a half-scheduled distributed job never sits on quota (all-or-nothing).
PODS_READY_TIMEOUT_MINUTES = 10
# Once its node has registered, a pod still waits for the device plugin and pulls its image (CUDA
# images are gigabytes): added to the node's provisioning time where nodes come on demand.
AFTER_NODE_JOINS_MINUTES = 10
# Fair sharing on: capacity nobody is guaranteed (and guarantees not in use) is divided by weight.
# The two strategies Kueue documents as its default, in its order (pkg/config/validation.go accepts
# only this set, or either one alone).
FAIR_SHARING_STRATEGIES = ("LessThanOrEqualToFinalShare", "LessThanInitialShare")


# JobSet: distributed training admitted as one workload (the JobSet controller is installed first).
FRAMEWORKS = ("batch/job", "jobset.x-k8s.io/jobset")


def pods_ready_timeout(provisioning: NodeProvisioning | None = None) -> str:
    """waitForPodsReady's timeout: where nodes come on demand it must outlast their provisioning,
    or every GPU workload would be evicted while its node boots."""
    if provisioning is None:
        return f"{PODS_READY_TIMEOUT_MINUTES}m"
    return f"{provisioning.max_node_provision_minutes + AFTER_NODE_JOINS_MINUTES}m"


def manager_config(*, frameworks: Sequence[str] = FRAMEWORKS, pods_ready: str = pods_ready_timeout()) -> str:
    """Kueue's controller-manager configuration (``config.kueue.x-k8s.io/v1beta2``)."""
    doc = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443", "enableClusterQueueResources": True},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        # Only jobs that name a queue are managed; everything else runs as usual.
        "manageJobsWithoutQueueName": False,
        "waitForPodsReady": {
            "timeout": pods_ready,
            "blockAdmission": False,
            "requeuingStrategy": {"timestamp": "Eviction", "backoffLimitCount": 5},
        },
        "integrations": {"frameworks": list(frameworks)},
        "fairSharing": {"preemptionStrategies": list(FAIR_SHARING_STRATEGIES)},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kueue_values(
    *, prometheus: bool, pods_ready: str = pods_ready_timeout(), pins: versions.ComponentVersions = versions.CURRENT
) -> dict[str, Any]:
    repository, tag = pins.kueue_image
    return {
        "enablePrometheus": prometheus,
        "controllerManager": {
            "manager": {"image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}},
        },
        "managerConfig": {"controllerManagerConfigYaml": manager_config(pods_ready=pods_ready)},
    }


def resource_flavor(name: str, pool: NodePool) -> dict[str, Any]:
    """A flavor per node pool: its labels steer admitted pods there, its tolerations get them in."""
    spec: dict[str, Any] = {"nodeLabels": dict(pool.selector)}
    if pool.taints:
        spec["nodeTaints"] = [{"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints]
        spec["tolerations"] = pool.tolerations
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}, "spec": spec}


def cpu_flavor(name: str = CPU_FLAVOR) -> dict[str, Any]:
    """The flavor of cpu and memory, wherever the pod runs: no node labels (a GPU pod's cpu is
    counted here too, and its GPU flavor's labels must not conflict) and no toleration (so a pod
    that gets only this flavor stays off the tainted GPU nodes)."""
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}, "spec": {}}


def priority_class(name: str, value: int, description: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": description,
    }


@dataclass(frozen=True)
class KueueArgs:
    gpu_pool: NodePool
    teams: Sequence[TeamConfig]
    pools: Pools  # what Kueue admits across all teams: the guarantees plus the cohort's remainder
    # Where the cluster adds GPU nodes on demand: GPU workloads wait for them (AdmissionCheck).
    node_provisioning: NodeProvisioning | None = None
    prometheus: bool = False  # ServiceMonitor for Kueue's metrics (needs the Prometheus operator)
    pins: versions.ComponentVersions = versions.CURRENT  # the chart and image versions
    values_overrides: Mapping[str, Any] = field(default_factory=dict)


class Kueue(pulumi.ComponentResource):
    """Kueue 0.19 with fair sharing, a ClusterQueue per team in one cohort, and priority classes.

    Guarantees: a workload that requests no GPU is never assigned the GPU flavor (team_queues.py);
    the GPU flavor's node labels, taint and toleration are the GPU pool's own; each team's
    ClusterQueue admits only from its own namespace, its nominal quota is its guarantee, and the
    guarantees plus the cohort's shared quota add up to the pool; where the cluster provisions
    nodes on demand, a workload using the GPU flavor is admitted only once nodes for all of its
    GPU pods are provisioned, and waitForPodsReady outlasts that provisioning.
    """

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:kueue:Kueue", name, None, opts)
        namespace = apply(
            f"{name}-namespace",
            namespace_manifest(KUEUE_NAMESPACE, "restricted", versions.PSA_VERSION),
            child_options(opts, self),
        )
        self.release = release(
            "kueue",
            args.pins.kueue,
            namespace=KUEUE_NAMESPACE,
            values=kueue_values(
                prometheus=args.prometheus, pods_ready=pods_ready_timeout(args.node_provisioning), pins=args.pins
            ),
            values_overrides=args.values_overrides,
            opts=child_options(opts, self, depends_on=[namespace]),
        )
        after_kueue = child_options(opts, self, depends_on=[self.release])
        self.cpu_flavor_name, self.gpu_flavor_name = CPU_FLAVOR, GPU_FLAVOR
        queue_deps: list[pulumi.Resource] = [
            self.release,
            apply(f"{name}-flavor-cpu", cpu_flavor(), after_kueue),
            apply(f"{name}-flavor-gpu", resource_flavor(GPU_FLAVOR, args.gpu_pool), after_kueue),
        ]
        check = None
        if args.node_provisioning is not None:
            config = apply(
                f"{name}-provisioning-config",
                provisioning_request_config(GPU_CAPACITY_CHECK, args.node_provisioning.provisioning_class),
                after_kueue,
            )
            check = GPU_CAPACITY_CHECK
            queue_deps.append(
                apply(
                    f"{name}-admission-check",
                    admission_check(GPU_CAPACITY_CHECK, GPU_CAPACITY_CHECK),
                    child_options(opts, self, depends_on=[self.release, config]),
                )
            )
        queue_deps.append(apply(f"{name}-cohort", cohort(args.teams, args.pools), after_kueue))
        self.cluster_queues = {
            team.name: apply(
                f"{name}-cq-{team.name}",
                cluster_queue(team, admission_check_name=check),
                child_options(opts, self, depends_on=queue_deps),
            )
            for team in args.teams
        }
        self.priority_classes = [
            apply(f"{name}-priority-{pc_name}", priority_class(pc_name, value, description), after_kueue)
            for pc_name, (value, description) in PRIORITY_CLASSES.items()
        ]
        self.cluster_queue_names = pulumi.Output.from_input({t.name: cluster_queue_name(t.name) for t in args.teams})
        self.register_outputs({"cluster_queue_names": self.cluster_queue_names})

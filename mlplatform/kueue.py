"""Kueue: job queueing with quotas per flavor and all-or-nothing admission.

Builders return ``kueue.x-k8s.io/v1beta2`` objects (validated in tests against the upstream
CRD schemas); ``Kueue`` installs the chart and then the objects, which depend on it because
Kueue's webhooks fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from . import versions
from .cluster.pools import GPU_RESOURCE, NodePool
from .helm import release
from .objects import apply, child_options, namespace_manifest

__all__ = [
    "API_VERSION",
    "CLUSTER_QUEUE",
    "KUEUE_NAMESPACE",
    "ML_NAMESPACE_LABEL",
    "PRIORITY_CLASSES",
    "QUEUE_NAME_LABEL",
    "Kueue",
    "KueueArgs",
    "cluster_queue",
    "kueue_values",
    "local_queue",
    "resource_flavor",
]

API_VERSION = "kueue.x-k8s.io/v1beta2"
KUEUE_NAMESPACE = "kueue-system"
CLUSTER_QUEUE = "ml-cluster-queue"
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
# Namespaces labelled so may submit to the ClusterQueue (set by MlNamespace).
ML_NAMESPACE_LABEL = "mlplatform.io/ml-namespace"
COVERED_RESOURCES = ("cpu", "memory", GPU_RESOURCE)
# name -> (value, description); higher value is admitted first and may preempt lower.
PRIORITY_CLASSES: dict[str, tuple[int, str]] = {
    "production": (1000, "Retraining that feeds a serving model."),
    "experiment": (100, "Ad-hoc training and evaluation runs."),
}
# Admitted workloads whose pods are not all ready within this time are evicted and requeued,
# so a half-scheduled distributed job never sits on quota (all-or-nothing).
PODS_READY_TIMEOUT = "10m"


# JobSet: distributed training admitted as one workload (the JobSet controller is installed first).
FRAMEWORKS = ("batch/job", "jobset.x-k8s.io/jobset")


def manager_config(*, frameworks: Sequence[str] = FRAMEWORKS) -> str:
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
            "timeout": PODS_READY_TIMEOUT,
            "blockAdmission": False,
            "requeuingStrategy": {"timestamp": "Eviction", "backoffLimitCount": 5},
        },
        "integrations": {"frameworks": list(frameworks)},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kueue_values(*, prometheus: bool) -> dict[str, Any]:
    repository, tag = versions.KUEUE_IMAGE
    return {
        "enablePrometheus": prometheus,
        "controllerManager": {
            "manager": {"image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}},
        },
        "managerConfig": {"controllerManagerConfigYaml": manager_config()},
    }


def resource_flavor(name: str, pool: NodePool) -> dict[str, Any]:
    """A flavor per node pool: its labels steer admitted pods there, its tolerations get them in."""
    spec: dict[str, Any] = {"nodeLabels": dict(pool.selector)}
    if pool.taints:
        spec["nodeTaints"] = [{"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints]
        spec["tolerations"] = pool.tolerations
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True)
class FlavorQuota:
    flavor: str
    cpu: str
    memory: str
    gpus: int


def cluster_queue(name: str, quotas: Sequence[FlavorQuota]) -> dict[str, Any]:
    """One resource group over cpu, memory and GPUs; flavors tried in order (CPU first)."""
    flavors = [
        {
            "name": q.flavor,
            # Same length and order as coveredResources (Kueue rejects anything else).
            "resources": [
                {"name": "cpu", "nominalQuota": q.cpu},
                {"name": "memory", "nominalQuota": q.memory},
                {"name": GPU_RESOURCE, "nominalQuota": q.gpus},
            ],
        }
        for q in quotas
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {ML_NAMESPACE_LABEL: "true"}},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [{"coveredResources": list(COVERED_RESOURCES), "flavors": flavors}],
        },
    }


def local_queue(namespace: str, cluster_queue_name: str = CLUSTER_QUEUE, name: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue_name},
    }


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
    cpu_pool: NodePool
    gpu_pool: NodePool
    cpu_quota: str = "8"
    memory_quota: str = "16Gi"
    gpu_quota: int = 0  # nvidia.com/gpu the GPU flavor admits; the pool's schedulable total
    prometheus: bool = False  # ServiceMonitor for Kueue's metrics (needs the Prometheus operator)
    values_overrides: Mapping[str, Any] = field(default_factory=dict)


class Kueue(pulumi.ComponentResource):
    """Kueue 0.19 with a CPU and a GPU ResourceFlavor, one ClusterQueue and priority classes.

    Guarantees: the GPU flavor's node labels and tolerations are the GPU pool's own; the
    ClusterQueue has nominal quota for cpu, memory and nvidia.com/gpu and admits workloads
    only from namespaces labelled ``mlplatform.io/ml-namespace=true``; waitForPodsReady is on.
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
            versions.KUEUE,
            namespace=KUEUE_NAMESPACE,
            values=kueue_values(prometheus=args.prometheus),
            values_overrides=args.values_overrides,
            opts=child_options(opts, self, depends_on=[namespace]),
        )
        after_kueue = child_options(opts, self, depends_on=[self.release])
        self.cpu_flavor_name, self.gpu_flavor_name = "cpu", "gpu"
        flavors = [
            apply(f"{name}-flavor-cpu", resource_flavor(self.cpu_flavor_name, args.cpu_pool), after_kueue),
            apply(f"{name}-flavor-gpu", resource_flavor(self.gpu_flavor_name, args.gpu_pool), after_kueue),
        ]
        quotas = [
            FlavorQuota(self.cpu_flavor_name, args.cpu_quota, args.memory_quota, 0),
            FlavorQuota(self.gpu_flavor_name, args.cpu_quota, args.memory_quota, args.gpu_quota),
        ]
        self.cluster_queue = apply(
            f"{name}-cluster-queue",
            cluster_queue(CLUSTER_QUEUE, quotas),
            child_options(opts, self, depends_on=[self.release, *flavors]),
        )
        self.priority_classes = [
            apply(f"{name}-priority-{pc_name}", priority_class(pc_name, value, description), after_kueue)
            for pc_name, (value, description) in PRIORITY_CLASSES.items()
        ]
        self.cluster_queue_name = pulumi.Output.from_input(CLUSTER_QUEUE)
        self.register_outputs({"cluster_queue_name": self.cluster_queue_name})

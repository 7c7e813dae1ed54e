"""A local kind cluster with a CPU pool and a tainted GPU pool, driven by the kind CLI.

The cluster is created by a ``command.local.Command`` (kind has no API to call), so preview
never needs Docker or the cluster: the kubeconfig is an unknown output until ``pulumi up``.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import yaml

from ..config import PlatformConfig
from ..versions import KIND_NODE_IMAGE
from .pools import GPU_RESOURCE, POOL_LABEL, NodePool, node_pools

__all__ = ["MODEL_STORE_NODE_PATH", "KindCluster", "kind_config"]

# Where the host's model-store directory appears inside every kind node; the ModelStore's
# PersistentVolume points here, so any pod on any node sees the same files.
MODEL_STORE_NODE_PATH = "/var/lib/ml-platform/models"

_CREATE = r"""set -euo pipefail
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  # Adopt only a cluster this stack made (its nodes carry the pool label), never a stranger.
  kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
  kind get kubeconfig --name "$KIND_CLUSTER" > "$kc"
  if ! kubectl --kubeconfig "$kc" get nodes -l "$POOL_LABEL" -o name | grep -q .; then
    echo "a kind cluster named $KIND_CLUSTER exists but was not created by this stack (no node labelled" \
         "$POOL_LABEL): delete it (kind delete cluster --name $KIND_CLUSTER) or set ml-platform:clusterName" >&2
    exit 1
  fi
else
  # UID 10001 in the pods must write here through a hostPath-backed volume (no fsGroup on hostPath).
  mkdir -p "$MODEL_STORE" && chmod 0777 "$MODEL_STORE"
  cfg="$(mktemp)"; trap 'rm -f "$cfg"' EXIT
  printf '%s' "$KIND_CONFIG" > "$cfg"
  kind create cluster --name "$KIND_CLUSTER" --config "$cfg" --wait 180s >&2
fi
kind get kubeconfig --name "$KIND_CLUSTER"
"""
_DELETE = 'kind delete cluster --name "$KIND_CLUSTER" >&2'

# One model-store directory per team, writable by the pods' non-root UID (hostPath-backed
# volumes ignore fsGroup, so the permission has to be right on the host).
_STORE_DIRS = r"""set -euo pipefail
for team in $TEAMS; do
  mkdir -p "$MODEL_STORE/$team" && chmod 0777 "$MODEL_STORE/$team"
done
"""

# Kubernetes' documented way to advertise an extended resource: patch the node *status*.
_SIMULATE_GPUS = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
for node in $(kubectl --kubeconfig "$kc" get nodes -l "$GPU_SELECTOR" -o name); do
  kubectl --kubeconfig "$kc" patch "$node" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$GPUS\"}]" >&2
  echo "$node: $GPUS simulated $GPU_RESOURCE"
done
"""


def _node(role: str, pool: NodePool | None, mount: dict[str, str]) -> dict[str, Any]:
    node: dict[str, Any] = {"role": role, "image": KIND_NODE_IMAGE, "extraMounts": [mount]}
    if pool is not None:
        node["labels"] = dict(pool.labels)
        if pool.taints:
            # Taint at registration (JoinConfiguration: workers join, they are not initialised),
            # so no pod can land on a GPU node in the window before a later taint would apply.
            flags = ",".join(t.as_kubelet_flag() for t in pool.taints)
            patch = {
                "kind": "JoinConfiguration",
                "nodeRegistration": {"kubeletExtraArgs": {"register-with-taints": flags}},
            }
            node["kubeadmConfigPatches"] = [yaml.safe_dump(patch, sort_keys=False)]
    return node


def kind_config(config: PlatformConfig) -> dict[str, Any]:
    """The kind cluster configuration (``kind.x-k8s.io/v1alpha4``) for this stack."""
    cpu, gpu = node_pools(config)
    mount = {"hostPath": config.kind.model_store_path, "containerPath": MODEL_STORE_NODE_PATH}
    nodes = [_node("control-plane", None, mount)]
    nodes += [_node("worker", cpu, mount) for _ in range(config.kind.cpu_workers)]
    nodes += [_node("worker", gpu, mount) for _ in range(config.kind.gpu_workers)]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": config.cluster_name,
        "nodes": nodes,
    }


class KindCluster(pulumi.ComponentResource):
    """A kind cluster and a Kubernetes provider bound to it.

    Guarantees: GPU workers carry the GPU pool labels and the ``nvidia.com/gpu=present:NoSchedule``
    taint from the moment they register; with ``kindSimulateGpus`` they advertise SIMULATED
    ``nvidia.com/gpu`` capacity (labelled ``mlplatform.io/gpu-simulated=true``) so GPU scheduling,
    quotas and Kueue admission are exercised without hardware; every node mounts the host's
    model-store directory at ``MODEL_STORE_NODE_PATH``; the kubeconfig output is a secret.
    """

    def __init__(self, name: str, config: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:KindCluster", name, None, opts)
        self.cpu_pool, self.gpu_pool = node_pools(config)
        kind_yaml = yaml.safe_dump(kind_config(config), sort_keys=False)

        cluster = command.local.Command(
            f"{name}-kind",
            create=_CREATE,
            delete=_DELETE,
            interpreter=["/bin/bash", "-c"],
            environment={
                "KIND_CLUSTER": config.cluster_name,
                "KIND_CONFIG": kind_yaml,
                "MODEL_STORE": config.kind.model_store_path,
                "POOL_LABEL": POOL_LABEL,
            },
            triggers=[kind_yaml],
            opts=pulumi.ResourceOptions(
                parent=self,
                # Same cluster name: the old cluster must be gone before the new one is created.
                delete_before_replace=True,
                additional_secret_outputs=["stdout"],
            ),
        )
        self.cluster_name: pulumi.Output[str] = pulumi.Output.from_input(config.cluster_name)
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.stdout)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            # `kind delete cluster` outside Pulumi must not leave a stack that cannot be destroyed.
            delete_unreachable=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready: list[pulumi.Resource] = [cluster]
        teams = " ".join(t.name for t in config.teams)
        store_dirs = command.local.Command(
            f"{name}-model-store-dirs",
            create=_STORE_DIRS,
            interpreter=["/bin/bash", "-c"],
            environment={"MODEL_STORE": config.kind.model_store_path, "TEAMS": teams},
            triggers=[config.kind.model_store_path, teams],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready.append(store_dirs)
        self.model_store_class: str | None = None  # static hostPath PV over MODEL_STORE_NODE_PATH
        self.image_repository: pulumi.Output[str] | None = None  # images go in with `kind load`
        self.image_push_environment: dict[str, str] = {}
        if config.kind.simulate_gpus and config.kind.gpu_workers > 0:
            simulated = command.local.Command(
                f"{name}-simulated-gpus",
                create=_SIMULATE_GPUS,
                interpreter=["/bin/bash", "-c"],
                environment={
                    "KUBECONFIG_DATA": self.kubeconfig,
                    "GPU_SELECTOR": f"{POOL_LABEL}={self.gpu_pool.labels[POOL_LABEL]}",
                    "GPUS": str(config.kind.gpus_per_worker),
                    "GPU_RESOURCE": GPU_RESOURCE,
                },
                triggers=[kind_yaml, config.kind.gpus_per_worker],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
            )
            self.ready.append(simulated)
        self.register_outputs({"cluster_name": self.cluster_name, "kubeconfig": self.kubeconfig})

"""A local kind cluster with a CPU pool and a tainted GPU pool, driven by the kind CLI.

The cluster is created by a ``command.local.Command`` (kind has no API to call), so preview
never needs Docker or the cluster: the kubeconfig is an unknown output until ``pulumi up``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import yaml

from ..config import PlatformConfig
from ..crds import adopting_provider
from ..versions import KIND_NODE_IMAGE
from .pools import GPU_RESOURCE, POOL_LABEL, NodePool, SimulatedGpus, node_pools, simulated_gpus
from .provisioning import NodeProvisioning

__all__ = ["MODEL_STORE_NODE_PATH", "KindCluster", "kind_config"]

# Where the host's model-store directory appears inside every kind node; the ModelStore's
# PersistentVolume points here, so any pod on any node sees the same files.
MODEL_STORE_NODE_PATH = "/var/lib/ml-platform/models"

_CREATE = r"""set -euo pipefail
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  # This command runs only when the stack's state has no cluster: one that exists anyway was made
  # by hand, by another stack, or outlived a lost state. Adopting it would make every object the
  # stack creates fail with AlreadyExists, so refuse and say how to proceed.
  echo "a kind cluster named $KIND_CLUSTER already exists, but this stack's state does not record it" \
       "(made by hand, by another stack, or left behind by a lost state). Delete it" \
       "(kind delete cluster --name $KIND_CLUSTER) or set ml-platform:clusterName to another name." >&2
  exit 1
fi
cfg="$(mktemp)"; trap 'rm -f "$cfg"' EXIT
printf '%s' "$KIND_CONFIG" > "$cfg"
kind create cluster --name "$KIND_CLUSTER" --config "$cfg" --wait 180s >&2
kind get kubeconfig --name "$KIND_CLUSTER"
"""
# Runs when an input other than the kind config changes (pulumi-command would re-run the create
# script otherwise, which refuses an existing cluster): the cluster stays, its kubeconfig is re-read.
_UPDATE = r"""set -euo pipefail
if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  echo "the kind cluster $KIND_CLUSTER that this stack created is gone (deleted outside Pulumi?):" \
       "create it again with pulumi up --replace on the stack's kind command (pulumi stack --show-urns" \
       "lists it, ending in ::$KIND_CLUSTER-kind)" >&2
  exit 1
fi
kind get kubeconfig --name "$KIND_CLUSTER"
"""
_DELETE = 'kind delete cluster --name "$KIND_CLUSTER" >&2'

# Runs on every preview and up (an invoke, not a resource: nothing in the state, so a second
# `up` stays a no-op), before the cluster exists: the store and one directory per team, writable
# by the pods' non-root UID (hostPath-backed volumes ignore fsGroup, so the host permission is
# what counts). A directory Docker created as root (its source vanished) is refused with the fix.
_STORE_DIRS = r"""set -euo pipefail
mkdir -p "$MODEL_STORE"
for dir in "$MODEL_STORE" $(for team in $TEAMS; do echo "$MODEL_STORE/$team"; done); do
  mkdir -p "$dir"
  if ! chmod 0777 "$dir" 2>/dev/null; then
    echo "the model store directory $dir is not yours (owner: $(stat -c %U "$dir" 2>/dev/null || echo unknown))," \
         "so pods cannot be given write access to it: run sudo chown -R $(id -u):$(id -g) $MODEL_STORE" \
         "or set ml-platform:kindModelStorePath to a directory you own" >&2
    exit 1
  fi
done
echo "$MODEL_STORE"
"""

# Helm's --wait counts a DaemonSet ready at desired - maxUnavailable, so a device plugin crash-looping
# on a one-node GPU pool passes it (and the simulated plugin's DaemonSet has no pod at all until its
# status-updater has labelled the node). Wait instead until every GPU node advertises exactly the
# nvidia.com/gpu that Kueue's quota counts on it, before anything that needs a GPU is created.
_WAIT_FOR_GPUS = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
deadline=$((SECONDS + TIMEOUT_SECONDS))
while :; do
  nodes="$(kubectl --kubeconfig "$kc" get nodes -l "$GPU_SELECTOR" -o name)"
  wrong=""
  for node in $nodes; do
    gpus="$(kubectl --kubeconfig "$kc" get "$node" -o "jsonpath={.status.allocatable.nvidia\.com/gpu}")"
    [ "${gpus:-0}" = "$EXPECTED_GPUS" ] || wrong="$wrong ${node#node/}=${gpus:-0}"
  done
  if [ -n "$nodes" ] && [ -z "$wrong" ]; then
    echo "$(echo $nodes | wc -w) GPU nodes advertise $EXPECTED_GPUS $GPU_RESOURCE each"; exit 0
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "after ${TIMEOUT_SECONDS}s these GPU nodes do not advertise the $EXPECTED_GPUS $GPU_RESOURCE each that" \
         "Kueue's quota counts (node=advertised):${wrong:- no node labelled $GPU_SELECTOR}. Check the device" \
         "plugin: kubectl get pods --all-namespaces -o wide | grep device-plugin, then its logs" >&2
    exit 1
  fi
  sleep 5
done
"""


def _node(role: str, pool: NodePool | None, mount: dict[str, str]) -> dict[str, Any]:
    # A copy per node: a shared dict would be dumped as YAML anchors, noise in every diff.
    node: dict[str, Any] = {"role": role, "image": KIND_NODE_IMAGE, "extraMounts": [dict(mount)]}
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


def _simulated_identity(gpus: SimulatedGpus | None) -> list[str]:
    """What a cluster's simulated GPUs are, for its triggers (nothing with real GPUs: no trigger change)."""
    return [] if gpus is None else [f"simulated {gpus.per_node} x {gpus.model} {gpus.memory_mib}MiB"]


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
    taint from the moment they register; with ``kindSimulateGpus`` their GPUs are SIMULATED
    (``simulated_gpus``, labelled ``mlplatform.io/gpu-simulated=true`` and put in the simulator's node
    pool), so GPU scheduling, quotas, Kueue admission and GPU metrics are exercised without hardware;
    every node mounts the host's model-store directory at ``MODEL_STORE_NODE_PATH``; the kubeconfig
    output is a secret.
    """

    def __init__(self, name: str, config: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:KindCluster", name, None, opts)
        self.cpu_pool, self.gpu_pool = node_pools(config)
        self.simulated_gpus: SimulatedGpus | None = simulated_gpus(config)
        kind_yaml = yaml.safe_dump(kind_config(config), sort_keys=False)
        teams = " ".join(t.name for t in config.teams)
        # Before the cluster (the nodes bind-mount it) and on every run (see _STORE_DIRS).
        model_store = command.local.run_output(
            command=_STORE_DIRS,
            interpreter=["/bin/bash", "-c"],
            environment={"MODEL_STORE": config.kind.model_store_path, "TEAMS": teams},
        ).stdout.apply(lambda out: out.strip() or config.kind.model_store_path)

        cluster = command.local.Command(
            f"{name}-kind",
            create=_CREATE,
            update=_UPDATE,
            delete=_DELETE,
            interpreter=["/bin/bash", "-c"],
            environment={"KIND_CLUSTER": config.cluster_name, "KIND_CONFIG": kind_yaml, "MODEL_STORE": model_store},
            # The simulator writes each node's GPUs down once, when it first sees the node, and never
            # again: other simulated GPUs (count, model, memory, time-slicing) need new nodes.
            triggers=[kind_yaml, *_simulated_identity(self.simulated_gpus)],
            opts=pulumi.ResourceOptions(
                parent=self,
                # Same cluster name: the old cluster must be gone before the new one is created.
                delete_before_replace=True,
                additional_secret_outputs=["stdout"],
            ),
        )
        self.cluster_name: pulumi.Output[str] = pulumi.Output.from_input(config.cluster_name)
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.stdout)
        # A fresh cluster has a fresh CA, hence a different kubeconfig: anything that lives inside
        # the nodes rather than in the API (images loaded with `kind load`) keys on this.
        self.identity: pulumi.Output[str] = pulumi.Output.unsecret(
            cluster.stdout.apply(lambda kc: hashlib.sha256(kc.encode()).hexdigest()[:16])
        )
        # No delete_unreachable: it would let a refresh while Docker is stopped drop every object
        # from the state. A cluster deleted by hand is destroyed with
        # `PULUMI_K8S_DELETE_UNREACHABLE=true pulumi destroy` (README, Tear down).
        self.provider = k8s.Provider(
            f"{name}-provider", kubeconfig=self.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        self.crd_provider = adopting_provider(
            f"{name}-crd-provider", self.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        self.ready: list[pulumi.Resource] = [cluster]
        self.model_store_class: str | None = None  # static hostPath PV over MODEL_STORE_NODE_PATH
        self.image_repository: pulumi.Output[str] | None = None  # images go in with `kind load`
        self.image_push_environment: dict[str, str] = {}
        self.node_provisioning: NodeProvisioning | None = None  # kind's nodes are the nodes there are
        self._has_gpu_nodes = config.kind.gpu_workers > 0
        self.register_outputs({"cluster_name": self.cluster_name, "kubeconfig": self.kubeconfig})

    def wait_for_gpus(
        self, name: str, *, timeout_seconds: int = 600, opts: pulumi.ResourceOptions | None = None
    ) -> pulumi.Resource | None:
        """A step that succeeds once every GPU node advertises the ``nvidia.com/gpu`` Kueue's quota
        counts on it (give it the GPU stack in ``opts.depends_on``); None without GPU workers. Real or
        simulated, the capacity comes from a device plugin: it is there only once that plugin runs."""
        if not self._has_gpu_nodes:
            return None
        return command.local.Command(
            name,
            create=_WAIT_FOR_GPUS,
            interpreter=["/bin/bash", "-c"],
            environment={
                "KUBECONFIG_DATA": self.kubeconfig,
                "GPU_SELECTOR": f"{POOL_LABEL}={self.gpu_pool.labels[POOL_LABEL]}",
                "GPU_RESOURCE": GPU_RESOURCE,
                "EXPECTED_GPUS": str(self.gpu_pool.gpus_per_node),
                "TIMEOUT_SECONDS": str(timeout_seconds),
            },
            triggers=[self.identity],
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )

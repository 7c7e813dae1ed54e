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
from .pools import GPU_RESOURCE, POOL_LABEL, NodePool, node_pools
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

# Kubernetes' documented way to advertise an extended resource: patch the node *status*.
_SIMULATE_GPUS = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
nodes="$(kubectl --kubeconfig "$kc" get nodes -l "$GPU_SELECTOR" -o name)"
if [ -z "$nodes" ]; then
  echo "no node is labelled $GPU_SELECTOR: no GPU capacity to simulate (the kind config's GPU workers" \
       "lost their labels?); recreate the cluster with pulumi up --replace on its kind command" >&2
  exit 1
fi
for node in $nodes; do
  kubectl --kubeconfig "$kc" patch "$node" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$GPUS\"}]" >&2
  echo "$node: $GPUS simulated $GPU_RESOURCE"
done
"""

# Real GPUs: Helm's --wait counts a DaemonSet ready at desired - maxUnavailable, so a device plugin
# crash-looping on a one-node GPU pool passes it. Wait instead until every GPU node advertises
# nvidia.com/gpu, before anything that needs a GPU is created.
_WAIT_FOR_GPUS = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
deadline=$((SECONDS + TIMEOUT_SECONDS))
while :; do
  missing=""
  for node in $(kubectl --kubeconfig "$kc" get nodes -l "$GPU_SELECTOR" -o name); do
    gpus="$(kubectl --kubeconfig "$kc" get "$node" -o "jsonpath={.status.allocatable.nvidia\.com/gpu}")"
    [ "${gpus:-0}" -gt 0 ] 2>/dev/null || missing="$missing ${node#node/}"
  done
  nodes="$(kubectl --kubeconfig "$kc" get nodes -l "$GPU_SELECTOR" -o name | wc -l)"
  if [ "$nodes" -gt 0 ] && [ -z "$missing" ]; then echo "$nodes GPU nodes advertise $GPU_RESOURCE"; exit 0; fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "after ${TIMEOUT_SECONDS}s these GPU nodes still advertise no $GPU_RESOURCE:" \
         "${missing:- (no node labelled $GPU_SELECTOR)}. Check the device plugin:" \
         "kubectl -n gpu-system logs daemonset/nvidia-device-plugin" >&2
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
        self.gpus_need_device_plugin = not config.kind.simulate_gpus and config.kind.gpu_workers > 0
        if config.kind.simulate_gpus and config.kind.gpu_workers > 0:
            simulated = command.local.Command(
                f"{name}-simulated-gpus",
                create=_SIMULATE_GPUS,
                interpreter=["/bin/bash", "-c"],
                environment={
                    "KUBECONFIG_DATA": self.kubeconfig,
                    "GPU_SELECTOR": f"{POOL_LABEL}={self.gpu_pool.labels[POOL_LABEL]}",
                    # What the device plugin would advertise: each GPU times the time-slicing
                    # replicas, so Kueue's quota and the simulated capacity stay equal.
                    "GPUS": str(self.gpu_pool.gpus_per_node),
                    "GPU_RESOURCE": GPU_RESOURCE,
                },
                # A new cluster (new identity) has no simulated capacity yet.
                triggers=[self.identity, self.gpu_pool.gpus_per_node],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
            )
            self.ready.append(simulated)
        self.register_outputs({"cluster_name": self.cluster_name, "kubeconfig": self.kubeconfig})

    def wait_for_gpus(
        self, name: str, *, timeout_seconds: int = 600, opts: pulumi.ResourceOptions | None = None
    ) -> pulumi.Resource | None:
        """With real GPUs: a step that succeeds once every GPU node advertises ``nvidia.com/gpu``
        (give it the device plugin in ``opts.depends_on``). None with simulated or no GPUs."""
        if not self.gpus_need_device_plugin:
            return None
        return command.local.Command(
            name,
            create=_WAIT_FOR_GPUS,
            interpreter=["/bin/bash", "-c"],
            environment={
                "KUBECONFIG_DATA": self.kubeconfig,
                "GPU_SELECTOR": f"{POOL_LABEL}={self.gpu_pool.labels[POOL_LABEL]}",
                "GPU_RESOURCE": GPU_RESOURCE,
                "TIMEOUT_SECONDS": str(timeout_seconds),
            },
            triggers=[self.identity],
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )

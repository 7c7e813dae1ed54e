"""What the stack as a whole says: its namespaces, its workloads and its node pools.

Stack rules need facts no single resource carries: which namespaces are ML namespaces (labelled
``mlplatform.io/ml-namespace=true``), which the stack labels PSA ``privileged``, and which node pools
exist. Pools come from the kind cluster configuration the stack hands to ``kind create cluster``
(a Command's ``KIND_CONFIG`` environment variable), from Node objects, or from EKS node groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .model import Resource, as_list, as_map, get_path, k8s_kind, namespace_of
from .platform import EKS_NODE_GROUP, HELM_TYPES
from .pods import PodTemplate, pod_templates

__all__ = [
    "ML_NAMESPACE_LABEL",
    "NOT_KNOWN",
    "PSA_ENFORCE_LABEL",
    "NodePool",
    "StackContext",
    "Taint",
    "Workload",
    "tolerates",
]

ML_NAMESPACE_LABEL = "mlplatform.io/ml-namespace"
PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
KIND_CONFIG_ENV = "KIND_CONFIG"
NOT_KNOWN: Any = object()  # what ``StackContext.value`` returns for a value known only after the update
_EKS_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # Kubernetes spelling

    @property
    def repels(self) -> bool:
        """Taints that keep an untolerating pod off the node (PreferNoSchedule only discourages)."""
        return self.effect in ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class NodePool:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...] = ()
    source: str = ""

    @property
    def is_gpu(self) -> bool:
        return any(t.key == "nvidia.com/gpu" for t in self.taints)

    def admits(self, node_selector: Mapping[str, Any], tolerations: Sequence[Any]) -> bool:
        """A pod with this selector and these tolerations can be scheduled here."""
        if any(self.labels.get(k) != v for k, v in node_selector.items()):
            return False
        return all(tolerates(tolerations, t) for t in self.taints if t.repels)

    def describe(self) -> str:
        taints = ", ".join(f"{t.key}={t.value}:{t.effect}" for t in self.taints) or "no taints"
        return f"{self.name} (labels {dict(self.labels)}, {taints})"


def tolerates(tolerations: Sequence[Any], taint: Taint) -> bool:
    """Kubernetes toleration matching: key (or empty key with Exists), value unless Exists, effect if set."""
    for toleration in tolerations:
        tol = as_map(toleration)
        operator = tol.get("operator") or "Equal"
        key = tol.get("key") or ""
        if key and key != taint.key:
            continue
        if not key and operator != "Exists":
            continue
        if operator == "Equal" and (tol.get("value") or "") != taint.value:
            continue
        if tol.get("effect") and tol.get("effect") != taint.effect:
            continue
        return True
    return False


@dataclass(frozen=True)
class Workload:
    resource: Resource
    namespace: str
    template: PodTemplate


def _parse_taint_flag(flag: str) -> Taint | None:
    """``key=value:Effect`` or ``key:Effect`` as kubelet's --register-with-taints spells them."""
    key_value, _, effect = flag.strip().rpartition(":")
    if not key_value or not effect:
        return None
    key, _, value = key_value.partition("=")
    return Taint(key, value, effect)


def _kubeadm_taints(patches: Iterable[Any]) -> list[Taint]:
    taints: list[Taint] = []
    for patch in patches:
        doc = as_map(yaml.safe_load(patch) if isinstance(patch, str) else patch)
        registration = as_map(doc.get("nodeRegistration"))
        for taint in as_list(registration.get("taints")):
            taint = as_map(taint)
            taints.append(Taint(str(taint.get("key", "")), str(taint.get("value", "")), str(taint.get("effect", ""))))
        args = registration.get("kubeletExtraArgs")
        # kubeadm v1beta3 spells extra args as a map, v1beta4 as a list of {name, value}.
        pairs = (
            args.items()
            if isinstance(args, Mapping)
            else ((a.get("name"), a.get("value")) for a in map(as_map, as_list(args)))
        )
        for name, value in pairs:
            if name == "register-with-taints" and isinstance(value, str):
                taints += [t for t in map(_parse_taint_flag, value.split(",")) if t is not None]
    return taints


def _kind_pools(resource: Resource) -> list[NodePool]:
    raw = get_path(resource.props, "environment", KIND_CONFIG_ENV)
    if not isinstance(raw, str):
        return []
    pools: dict[tuple[Any, ...], NodePool] = {}
    for node in as_list(as_map(yaml.safe_load(raw)).get("nodes")):
        node = as_map(node)
        labels = {str(k): str(v) for k, v in as_map(node.get("labels")).items()}
        taints = tuple(_kubeadm_taints(as_list(node.get("kubeadmConfigPatches"))))
        if node.get("role") == "control-plane":
            # kind taints its control plane whenever the cluster has workers.
            taints += (Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),)
        key = (tuple(sorted(labels.items())), taints)
        name = f"kind {node.get('role', 'node')} {labels}" if labels else f"kind {node.get('role', 'node')}"
        pools.setdefault(key, NodePool(name, labels, taints, source=resource.urn))
    return list(pools.values())


def _eks_pool(resource: Resource) -> NodePool:
    labels = {str(k): str(v) for k, v in as_map(resource.props.get("labels")).items()}
    taints = tuple(
        Taint(
            str(t.get("key", "")),
            str(t.get("value") or ""),
            _EKS_EFFECTS.get(str(t.get("effect")), str(t.get("effect"))),
        )
        for t in map(as_map, as_list(resource.props.get("taints")))
    )
    return NodePool(f"EKS node group {resource.name}", labels, taints, source=resource.urn)


def _node_pool(resource: Resource) -> NodePool:
    labels = {str(k): str(v) for k, v in as_map(get_path(resource.props, "metadata", "labels")).items()}
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
        for t in map(as_map, as_list(get_path(resource.props, "spec", "taints")))
    )
    return NodePool(f"node {resource.name}", labels, taints, source=resource.urn)


@dataclass
class StackContext:
    resources: Sequence[Resource]
    namespaces: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> labels
    namespace_urns: dict[str, str] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    pools: list[NodePool] = field(default_factory=list)
    # What reading a value unknown during preview raises (the SDK's UnknownValueError: pack.py
    # passes it in, so rules stay SDK-free); ``value`` records each such error in ``pending``.
    unknown_errors: tuple[type[Exception], ...] = ()
    pending: list[Exception] = field(default_factory=list)

    @classmethod
    def of(cls, resources: Sequence[Resource], unknown_errors: tuple[type[Exception], ...] = ()) -> StackContext:
        ctx = cls(resources, unknown_errors=unknown_errors)
        for resource in resources:
            group_kind = k8s_kind(resource.type)
            if group_kind == ("", "Namespace"):
                name = get_path(resource.props, "metadata", "name") or resource.name
                ctx.namespaces[str(name)] = as_map(get_path(resource.props, "metadata", "labels"))
                ctx.namespace_urns[str(name)] = resource.urn
            elif group_kind in (("", "Node"), ("", "NodePatch")):
                ctx.pools.append(_node_pool(resource))
            elif resource.type == EKS_NODE_GROUP:
                ctx.pools.append(_eks_pool(resource))
            elif resource.type.startswith("command:"):
                ctx.pools += _kind_pools(resource)
            # One workload per pod template: a JobSet contributes one per replicated job.
            for template in pod_templates(resource):
                ctx.workloads.append(Workload(resource, namespace_of(resource.props), template))
        return ctx

    def labels(self, namespace: str) -> Mapping[str, Any]:
        return self.namespaces.get(namespace, {})

    def value(self, mapping: Mapping[str, Any], key: str) -> Any:
        """``mapping.get(key)``, or ``NOT_KNOWN`` (the error kept in ``pending``) when the engine knows it
        only after the update: a rule can judge everything else and skip just what depends on it."""
        try:
            return mapping.get(key)
        except self.unknown_errors as err:
            self.pending.append(err)
            return NOT_KNOWN

    @property
    def ml_namespaces(self) -> list[str]:
        return [n for n, labels in self.namespaces.items() if labels.get(ML_NAMESPACE_LABEL) == "true"]

    def is_privileged(self, namespace: str) -> bool:
        return self.labels(namespace).get(PSA_ENFORCE_LABEL) == "privileged"

    def of_kind(self, group: str, kind: str, namespace: str | None = None) -> list[Resource]:
        return [
            r
            for r in self.resources
            if k8s_kind(r.type) == (group, kind) and (namespace is None or namespace_of(r.props) == namespace)
        ]

    def namespaces_running_workloads(self) -> set[str]:
        """Namespaces where the stack runs pods: its workloads' and its Helm releases' namespaces."""
        used = {w.namespace for w in self.workloads}
        used |= {str(r.props.get("namespace") or "default") for r in self.resources if r.type in HELM_TYPES}
        return used

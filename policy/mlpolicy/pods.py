"""Workload kinds and where each keeps its pod template."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .model import Resource, as_list, as_map, get_path, k8s_kind

__all__ = ["WORKLOAD_KINDS", "PodTemplate", "containers", "pod_template", "workload_kind"]

# (group, kind) -> path from the object to its pod template (metadata + spec); () = the object is the pod.
WORKLOAD_KINDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True)
class PodTemplate:
    """A workload's pod: its metadata (labels, annotations) and its spec."""

    kind: str
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]


def workload_kind(resource: Resource) -> str | None:
    """The workload kind (``Deployment``...) of ``resource``, or None if it runs no pods itself."""
    group_kind = k8s_kind(resource.type)
    return group_kind[1] if group_kind in WORKLOAD_KINDS else None


def pod_template(resource: Resource) -> PodTemplate | None:
    group_kind = k8s_kind(resource.type)
    if group_kind not in WORKLOAD_KINDS:
        return None
    path = WORKLOAD_KINDS[group_kind]
    template = get_path(resource.props, *path) if path else resource.props
    return PodTemplate(group_kind[1], as_map(get_path(template, "metadata")), as_map(get_path(template, "spec")))


def containers(spec: Mapping[str, Any], *, include_ephemeral: bool = True) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field, container) for every container of a pod spec: init, regular and ephemeral."""
    fields = (
        ("initContainers", "containers", "ephemeralContainers")
        if include_ephemeral
        else (
            "initContainers",
            "containers",
        )
    )
    for name in fields:
        for container in as_list(spec.get(name)):
            yield name, as_map(container)

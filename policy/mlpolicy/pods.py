"""Workload kinds and where each keeps its pod template."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .model import Resource, as_list, as_map, get_path, k8s_kind

__all__ = ["JOBSET", "WORKLOAD_KINDS", "PodTemplate", "containers", "pod_template", "pod_templates", "workload_kind"]

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
# A JobSet has one pod template per replicated job: spec.replicatedJobs[*].template.spec.template.
JOBSET = ("jobset.x-k8s.io", "JobSet")


@dataclass(frozen=True)
class PodTemplate:
    """A workload's pod: its metadata (labels, annotations) and its spec."""

    kind: str
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    # Which of the resource's pod templates: "" when it has one, "replicatedJobs[workers]" in a JobSet.
    part: str = ""


def workload_kind(resource: Resource) -> str | None:
    """The workload kind (``Deployment``...) of ``resource``, or None if it runs no pods itself."""
    group_kind = k8s_kind(resource.type)
    return group_kind[1] if group_kind in WORKLOAD_KINDS or group_kind == JOBSET else None


def pod_template(resource: Resource) -> PodTemplate | None:
    """The pod template of a kind that has exactly one (None for a JobSet: see ``pod_templates``)."""
    group_kind = k8s_kind(resource.type)
    if group_kind not in WORKLOAD_KINDS:
        return None
    path = WORKLOAD_KINDS[group_kind]
    template = get_path(resource.props, *path) if path else resource.props
    return PodTemplate(group_kind[1], as_map(get_path(template, "metadata")), as_map(get_path(template, "spec")))


def pod_templates(resource: Resource) -> list[PodTemplate]:
    """Every pod template of ``resource``: one for the built-in workload kinds, one per replicated
    job for a JobSet, none for anything else."""
    if k8s_kind(resource.type) != JOBSET:
        template = pod_template(resource)
        return [] if template is None else [template]
    out = []
    for index, replicated in enumerate(as_list(get_path(resource.props, "spec", "replicatedJobs"))):
        name = as_map(replicated).get("name") or index
        template = get_path(replicated, "template", "spec", "template")
        out.append(
            PodTemplate(
                JOBSET[1],
                as_map(get_path(template, "metadata")),
                as_map(get_path(template, "spec")),
                f"replicatedJobs[{name}]",
            )
        )
    return out


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

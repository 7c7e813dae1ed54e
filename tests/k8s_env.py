"""What Kubernetes does to a pod between its manifest and its process, for the two tiers that run
what the pods run (``tests/test_contract.py`` as processes, ``tests/container_tier.py`` as
containers through ``tests/podrun.py``), so both give a pod the same labels, environment and
arguments:

- the labels a JobSet's controller and the Job controller put on the pods they create, and the
  ``JOB_COMPLETION_INDEX`` variable the Job controller adds to an Indexed Job's containers;
- the environment the kubelet resolves (literal values with ``$(VAR)`` references to earlier
  variables, ``fieldRef`` values from the pod's metadata);
- ``$(VAR)`` expansion of ``command`` and ``args`` from that environment;
- the order a JobSet starts its replicated jobs in (``dependsOn``).

Each rule follows the upstream source named beside it. Pure functions; no files, no processes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMPLETION_INDEX_ENV",
    "COMPLETION_INDEX_KEY",
    "JOBSET_NAME_LABEL",
    "RESTARTS_LABEL",
    "EnvError",
    "Step",
    "container_env",
    "expand",
    "expand_command",
    "indexed_pod",
    "jobset_pod_metadata",
    "jobset_steps",
]

# k8s.io/api batch/v1: the pod label and annotation holding an Indexed Job pod's index, and the
# variable the Job controller adds (pkg/controller/job/indexed_job_utils.go).
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# sigs.k8s.io/jobset api/jobset/v1alpha2 and pkg/controllers (labelAndAnnotateObject), v0.12.0.
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
REPLICATED_JOB_REPLICAS_LABEL = "jobset.sigs.k8s.io/replicatedjob-replicas"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
RESTARTS_LABEL = "jobset.sigs.k8s.io/restart-attempt"

_OPERATOR, _OPENER, _CLOSER = "$", "(", ")"


class EnvError(ValueError):
    """An environment variable whose value the kubelet takes from somewhere these tiers do not have."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (third_party/forked/golang/expansion/expand.go).

    ``$(VAR)`` becomes the variable's value; an unknown ``$(VAR)`` stays as written; ``$$`` is an
    escaped ``$``; a ``$`` before anything else, an unclosed ``$(`` and a trailing ``$`` stay.
    """
    out: list[str] = []
    checkpoint, cursor = 0, 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == _OPERATOR:  # escaped: "$$" -> "$"
                out.append(_OPERATOR)
                advance = 1
            elif rest[0] == _OPENER:
                close = rest.find(_CLOSER, 1)
                if close == -1:  # incomplete reference: "$(" stays, scanning goes on after it
                    out.append(_OPERATOR + _OPENER)
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(variables.get(name, f"$({name})"))
                    advance = close + 1
            else:  # not an expression: "$x" stays
                out.append(_OPERATOR + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


def _field(path: str, pod: Mapping[str, Any]) -> str:
    """A ``fieldRef`` as the kubelet reads it from the pod (pkg/fieldpath: a missing key is "")."""
    metadata = pod.get("metadata") or {}
    match = _SUBSCRIPT.match(path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.name", "metadata.namespace"):
        return str(metadata.get(path.split(".", 1)[1], ""))
    if path == "spec.serviceAccountName":
        return str((pod.get("spec") or {}).get("serviceAccountName", "default"))
    raise EnvError(f"fieldRef {path!r} (only metadata.labels/annotations['...'], metadata.name/namespace)")


def container_env(container: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (kubelet_pods.go
    makeEnvironmentVariables): in order, a literal value expanded against the variables before
    it, a ``fieldRef`` read from the pod. Service links are not modelled (no Services here)."""
    if container.get("envFrom"):
        raise EnvError("envFrom (ConfigMaps and Secrets are not available here)")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry["name"]
        source = entry.get("valueFrom")
        if entry.get("value"):
            env[name] = expand(str(entry["value"]), env)
        elif source is None:
            env[name] = ""
        elif "fieldRef" in source:
            try:
                env[name] = _field(source["fieldRef"]["fieldPath"], pod)
            except EnvError as err:
                raise EnvError(f"env[{name}]: {err}") from err
        else:
            kinds = sorted(source)
            raise EnvError(f"env[{name}]: valueFrom {kinds} is not available here (only fieldRef)")
    return env


def expand_command(container: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """``command`` and ``args`` after the kubelet's ``$(VAR)`` expansion from the container's
    environment (kubecontainer.ExpandContainerCommandAndArgs); None where the manifest has none."""
    command, args = container.get("command"), container.get("args")
    return (
        [expand(str(c), env) for c in command] if command else None,
        [expand(str(a), env) for a in args] if args is not None else None,
    )


def indexed_pod(job_spec: Mapping[str, Any], pod: Mapping[str, Any], index: int) -> dict[str, Any]:
    """A pod of an Indexed Job as the Job controller creates it: the index in a label and an
    annotation, and ``JOB_COMPLETION_INDEX`` appended to every container that lacks it."""
    completions = int(job_spec.get("completions") or 1)
    if not 0 <= index < completions:
        raise ValueError(f"completion index {index} is outside 0..{completions - 1}")
    metadata = dict(pod.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), COMPLETION_INDEX_KEY: str(index)}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), COMPLETION_INDEX_KEY: str(index)}
    spec = dict(pod.get("spec") or {})
    # Since PodIndexLabel (beta 1.28, GA 1.32) the variable reads the label, not the annotation.
    field_path = f"metadata.labels['{COMPLETION_INDEX_KEY}']"
    index_env = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}
    containers = []
    for c in spec.get("containers") or []:
        env = list(c.get("env") or [])
        if not any(e["name"] == COMPLETION_INDEX_ENV for e in env):
            env.append(index_env)
        containers.append({**c, "env": env})
    spec["containers"] = containers
    return {"metadata": metadata, "spec": spec}


def jobset_pod_metadata(
    jobset: Mapping[str, Any], replicated_job: Mapping[str, Any], *, job_index: int = 0, restarts: int = 0
) -> dict[str, Any]:
    """The metadata of a pod of one of the JobSet's Jobs: the template's labels and annotations
    plus the JobSet's (on the Job and its pods alike) and the Job controller's ``job-name``."""
    meta = jobset["metadata"]
    # placement.GenJobName: <jobset>-<replicated job>-<job index>
    job_name = f"{meta['name']}-{replicated_job['name']}-{job_index}"
    template = replicated_job["template"]["spec"]["template"].get("metadata") or {}
    added = {
        JOBSET_NAME_LABEL: meta["name"],
        REPLICATED_JOB_LABEL: replicated_job["name"],
        REPLICATED_JOB_REPLICAS_LABEL: str(replicated_job.get("replicas", 1)),
        JOB_INDEX_LABEL: str(job_index),
        RESTARTS_LABEL: str(restarts),
    }
    return {
        "namespace": meta.get("namespace", "default"),
        "labels": {**(template.get("labels") or {}), **added, JOB_NAME_LABEL: job_name},
        "annotations": {**(template.get("annotations") or {}), **added},
    }


@dataclass(frozen=True)
class Step:
    """One replicated job of a JobSet, with what it waits for before its Jobs are created."""

    name: str
    pods: int  # completions of each Job (the pods that must succeed)
    indexed: bool
    after: str | None  # the replicated job it depends on
    after_status: str | None  # Complete: once that one has succeeded; Ready: once its pods run


def jobset_steps(jobset: Mapping[str, Any]) -> list[Step]:
    """The replicated jobs in the order the JobSet creates them (depends_on.go: a replicated job
    is created once the one it depends on is Ready or Complete; the first has no dependency)."""
    steps = []
    for rj in jobset["spec"]["replicatedJobs"]:
        if int(rj.get("replicas", 1)) != 1:
            raise ValueError(f"replicated job {rj['name']}: only replicas 1 is modelled, got {rj.get('replicas')}")
        job = rj["template"]["spec"]
        depends: Sequence[Mapping[str, str]] = rj.get("dependsOn") or []
        if len(depends) > 1:
            raise ValueError(f"replicated job {rj['name']}: JobSet allows one dependsOn item, got {len(depends)}")
        after = depends[0] if depends else None
        steps.append(
            Step(
                name=rj["name"],
                pods=int(job.get("completions") or 1),
                indexed=job.get("completionMode") == "Indexed",
                after=after["name"] if after else None,
                after_status=after["status"] if after else None,
            )
        )
    return steps

"""A training run as a Kueue-queued batch Job.

What ``pulumi up`` means for a training run: the Job's name carries a hash of everything that
defines the run (image content, command, resources, volumes, queue), so
- a plain ``up`` with unchanged inputs changes nothing, whether the Job is running, finished or
  failed;
- changed training inputs name a new Job: Pulumi creates it (a new run) and deletes the old
  one, instead of updating a finished Job (its pod template is immutable anyway);
- the Job stays after it finishes (no ``ttlSecondsAfterFinished``): it is the record of the run
  this stack deployed, and ``pulumi up --refresh`` finds it and changes nothing. A TTL would let
  the Job disappear under Pulumi, and the next refresh would recreate it: an unasked-for retrain.
No field is set that a controller takes over: Kueue's webhook suspends a queue-labelled Job on
create and un-suspends it on admission, so ``spec.suspend`` is Kueue's, never ours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi

from mlplatform.kueue import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL
from mlplatform.objects import apply, child_options, labels_for

from .pod import EmptyDir, Mount, container_security, env_list, pod_security, resources, volumes_and_mounts

__all__ = ["TrainingJob", "TrainingSpec", "job_labels", "job_spec", "run_name", "training_job_manifest"]

# A Job's name goes into its pods' `batch.kubernetes.io/job-name` label: at most 63 characters.
_MAX_JOB_NAME = 63
_RUN_HASH_LENGTH = 8


@dataclass(frozen=True)
class TrainingSpec:
    """What to run, where it queues, and what it may use."""

    name: str
    namespace: str
    image: str | pulumi.Output[str]  # an Output when the image is built by the stack
    command: Sequence[str]
    args: Sequence[str] = ()
    queue: str = "default"  # the namespace's LocalQueue
    env: Mapping[str, str] = field(default_factory=dict)
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0  # > 0: Kueue admits it on the GPU flavor, which adds the toleration and node selection
    priority_class: str | None = None  # a Kueue WorkloadPriorityClass
    volumes: Sequence[Mount | EmptyDir] = ()
    service_account: str = "default"
    backoff_limit: int = 2  # pod retries before the Job fails; the workload must be idempotent
    active_deadline_seconds: int = 3600
    # None: the finished Job stays (see the module docstring); scheduled runs set one instead.
    ttl_seconds_after_finished: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # What the image *is* (its content tag) when ``image`` is an Output: the run's name hashes it,
    # so new code is a new run. Not needed when ``image`` is a plain (pinned) string.
    image_version: str = ""


def job_labels(spec: TrainingSpec) -> dict[str, str]:
    labels = labels_for("training", **{"app.kubernetes.io/name": spec.name}, **spec.labels)
    labels[QUEUE_NAME_LABEL] = spec.queue
    if spec.priority_class:
        labels[PRIORITY_CLASS_LABEL] = spec.priority_class
    return labels


def _image_identity(spec: TrainingSpec) -> str:
    if isinstance(spec.image, str):
        return spec.image
    if not spec.image_version:
        raise ValueError(f"TrainingSpec {spec.name}: a built image (an Output) needs image_version to name the run")
    return f"built:{spec.image_version}"


def run_name(spec: TrainingSpec) -> str:
    """``<name>-<hash>``: the hash of the whole run definition, so a change is a new Job."""
    identity = job_spec(replace(spec, image=_image_identity(spec)))
    canonical = json.dumps({"namespace": spec.namespace, "labels": job_labels(spec), "spec": identity}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:_RUN_HASH_LENGTH]
    name = f"{spec.name}-{digest}"
    if len(name) > _MAX_JOB_NAME:
        raise ValueError(
            f"TrainingSpec name {spec.name!r} is too long: at most {_MAX_JOB_NAME - _RUN_HASH_LENGTH - 1} characters"
        )
    return name


def job_spec(spec: TrainingSpec) -> dict[str, Any]:
    """The Job ``spec``, without ``suspend``: Kueue's webhook suspends a queued Job on create and
    owns the field from then on (a manifest value would conflict with it on every later apply)."""
    pod_volumes, mounts = volumes_and_mounts(spec.volumes)
    container = {
        "name": "train",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(spec.command),
        "args": list(spec.args),
        "env": env_list(spec.env),
        "resources": resources(spec.cpu, spec.memory, gpus=spec.gpus),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    ttl = spec.ttl_seconds_after_finished
    cleanup = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        **cleanup,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": {k: v for k, v in job_labels(spec).items() if k != QUEUE_NAME_LABEL}},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": spec.service_account,
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [container],
                "volumes": pod_volumes,
            },
        },
    }


def training_job_manifest(spec: TrainingSpec) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": run_name(spec), "namespace": spec.namespace, "labels": job_labels(spec)},
        "spec": job_spec(spec),
    }


class TrainingJob(pulumi.ComponentResource):
    """One training run, queued through Kueue.

    Guarantees: the Job carries ``kueue.x-k8s.io/queue-name``, so Kueue suspends it on create and
    it runs only once admitted against the team's queue; its name is ``<name>-<hash of the run>``
    (``job_name``), so an unchanged run is left alone and a changed one is a new Job; every
    container runs under the restricted profile with a read-only root filesystem, writing only to
    its declared volumes; requests equal limits (GPU limit == request); retries and deadline are
    bounded.
    """

    def __init__(self, name: str, spec: TrainingSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:TrainingJob", name, None, opts)
        self.job = apply(
            f"{name}-job",
            training_job_manifest(spec),
            child_options(
                opts,
                self,
                # A queued Job may wait for quota before it runs; Pulumi waits for it to finish.
                custom_timeouts=pulumi.CustomTimeouts(create=f"{spec.active_deadline_seconds // 60 + 10}m"),
            ),
        )
        self.job_name = pulumi.Output.from_input(run_name(spec))
        self.register_outputs({"job_name": self.job_name})

"""A training run as a Kueue-queued batch Job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from mlplatform.kueue import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL
from mlplatform.objects import apply, child_options, labels_for

from .pod import EmptyDir, Mount, container_security, env_list, pod_security, resources, volumes_and_mounts

__all__ = ["TrainingJob", "TrainingSpec", "job_labels", "job_spec", "training_job_manifest"]


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
    ttl_seconds_after_finished: int = 86400  # finished Jobs are garbage-collected a day later
    labels: Mapping[str, str] = field(default_factory=dict)


def job_labels(spec: TrainingSpec) -> dict[str, str]:
    labels = labels_for("training", **{"app.kubernetes.io/name": spec.name}, **spec.labels)
    labels[QUEUE_NAME_LABEL] = spec.queue
    if spec.priority_class:
        labels[PRIORITY_CLASS_LABEL] = spec.priority_class
    return labels


def job_spec(spec: TrainingSpec) -> dict[str, Any]:
    """The Job ``spec``: created suspended (Kueue's webhook would suspend it anyway; saying so
    ourselves avoids a permanent diff), Kueue un-suspends it on admission."""
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
    return {
        "suspend": True,
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
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
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": job_labels(spec)},
        "spec": job_spec(spec),
    }


class TrainingJob(pulumi.ComponentResource):
    """One training run, queued through Kueue.

    Guarantees: the Job carries ``kueue.x-k8s.io/queue-name`` and starts suspended, so it runs only
    once Kueue admits it against the team's queue; every container runs under the restricted
    profile with a read-only root filesystem, writing only to its declared volumes; requests equal
    limits (GPU limit == request); retries, deadline and cleanup are bounded.
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
        self.job_name = pulumi.Output.from_input(spec.name)
        self.register_outputs({"job_name": self.job_name})

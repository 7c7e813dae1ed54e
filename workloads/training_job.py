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
import pulumi_command as command

from mlplatform.jobset import JOBSET_API_VERSION
from mlplatform.kueue import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL
from mlplatform.objects import apply, child_options, labels_for

from .pod import EmptyDir, Mount, container_security, env_list, pod_security, resources, volumes_and_mounts

__all__ = [
    "DistributedSteps",
    "TrainingJob",
    "TrainingSpec",
    "job_labels",
    "job_spec",
    "jobset_manifest",
    "jobset_spec",
    "run_name",
    "training_job_manifest",
    "training_manifest",
]

JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
# The finish step's time after the workers' deadline: merge, select, evaluate, register.
FINISH_ALLOWANCE_SECONDS = 1800

# A Job's name goes into its pods' `batch.kubernetes.io/job-name` label: at most 63 characters.
_MAX_JOB_NAME = 63
_RUN_HASH_LENGTH = 8


@dataclass(frozen=True)
class DistributedSteps:
    """How a run with ``workers > 1`` splits: prepare once, N workers, then finish once."""

    worker_args: Sequence[str]  # every worker; its index is in JOB_COMPLETION_INDEX (0 .. workers-1)
    finish_args: Sequence[str]  # once every worker runs: wait for and merge their output, evaluate, register
    prepare_args: Sequence[str] = ()  # once, before the workers start (e.g. the data they all read); () = none
    max_restarts: int = 2  # a failed pod restarts the whole set this often, then the run fails


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
    # More than one: a JobSet of ``workers`` pods running ``steps``, admitted by Kueue as one
    # workload; ``gpus`` is then per worker. One: a batch Job running ``args``.
    workers: int = 1
    steps: DistributedSteps | None = None


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
    """``<name>-<hash>``: the hash of the whole run definition, so a change is a new run."""
    identity = replace(spec, image=_image_identity(spec))
    body = jobset_spec(identity) if identity.workers > 1 else job_spec(identity)
    canonical = json.dumps({"namespace": spec.namespace, "labels": job_labels(spec), "spec": body}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:_RUN_HASH_LENGTH]
    name = f"{spec.name}-{digest}"
    if len(name) > _MAX_JOB_NAME:
        raise ValueError(
            f"TrainingSpec name {spec.name!r} is too long: at most {_MAX_JOB_NAME - _RUN_HASH_LENGTH - 1} characters"
        )
    return name


def _pod_template(
    spec: TrainingSpec, args: Sequence[str], *, gpus: int, extra_env: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The pod of one step: the run's one container, restricted, writing only to its volumes."""
    pod_volumes, mounts = volumes_and_mounts(spec.volumes)
    container = {
        "name": "train",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(spec.command),
        "args": list(args),
        "env": [*env_list(spec.env), *extra_env],
        "resources": resources(spec.cpu, spec.memory, gpus=gpus),
        "securityContext": container_security(),
        "volumeMounts": mounts,
        # A failed step's last log lines land in its pod's status, where `kubectl describe` shows them.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "metadata": {"labels": {k: v for k, v in job_labels(spec).items() if k != QUEUE_NAME_LABEL}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": spec.service_account,
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": pod_volumes,
        },
    }


def job_spec(spec: TrainingSpec) -> dict[str, Any]:
    """The Job ``spec``, without ``suspend``: Kueue's webhook suspends a queued Job on create and
    owns the field from then on (a manifest value would conflict with it on every later apply)."""
    ttl = spec.ttl_seconds_after_finished
    cleanup = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        **cleanup,
        "completions": 1,
        "parallelism": 1,
        "template": _pod_template(spec, spec.args, gpus=spec.gpus),
    }


def training_job_manifest(spec: TrainingSpec) -> dict[str, Any]:
    if spec.workers > 1:
        raise ValueError(f"TrainingSpec {spec.name}: {spec.workers} workers run as a JobSet (training_manifest)")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": run_name(spec), "namespace": spec.namespace, "labels": job_labels(spec)},
        "spec": job_spec(spec),
    }


def _run_name_env() -> dict[str, Any]:
    """What each pod of a JobSet knows about its run: the run's name (to share a directory keyed by
    it). A fresh dict per container: a shared one would be dumped as YAML anchors in the launcher's
    template."""
    return {"name": "RUN_NAME", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOBSET_NAME_LABEL}']"}}}


def _replicated_job(
    spec: TrainingSpec,
    name: str,
    args: Sequence[str],
    *,
    pods: int,
    gpus: int,
    after: dict[str, str] | None,
    deadline_seconds: int,
) -> dict[str, Any]:
    job: dict[str, Any] = {
        # No pod retries inside a step: a failure restarts the whole set (failurePolicy), which
        # resumes from what finished steps wrote.
        "backoffLimit": 0,
        "activeDeadlineSeconds": deadline_seconds,
        "completions": pods,
        "parallelism": pods,
        "template": _pod_template(spec, args, gpus=gpus, extra_env=[_run_name_env()]),
    }
    if pods > 1:
        job["completionMode"] = "Indexed"  # each pod gets JOB_COMPLETION_INDEX
    replicated: dict[str, Any] = {"name": name, "replicas": 1, "template": {"spec": job}}
    if after is not None:
        replicated["dependsOn"] = [after]
    return replicated


def jobset_spec(spec: TrainingSpec) -> dict[str, Any]:
    """The JobSet ``spec``: [prepare] -> workers -> finish, without ``suspend`` (Kueue's).

    The finish step starts once the workers *run* (dependsOn Ready), not once they complete, and
    waits for their output itself: Kueue 0.19 counts a JobSet's pods ready only when every
    replicated job has ready or succeeded Jobs (``JobSet.PodsReady`` in its jobset controller), so
    a step created only after the workers complete would keep the set "not ready" for the whole
    training and ``waitForPodsReady`` would evict it when its timeout runs out. The prepare step
    is short (it completes before the workers start, as they read what it wrote).
    """
    steps = spec.steps
    if steps is None or spec.workers < 2:
        raise ValueError(f"TrainingSpec {spec.name}: a JobSet needs workers > 1 and their steps")
    deadline = spec.active_deadline_seconds
    jobs: list[dict[str, Any]] = []
    if steps.prepare_args:
        jobs.append(
            _replicated_job(spec, "prepare", steps.prepare_args, pods=1, gpus=0, after=None, deadline_seconds=deadline)
        )
    workers_after = {"name": "prepare", "status": "Complete"} if jobs else None
    jobs.append(
        _replicated_job(
            spec,
            "workers",
            steps.worker_args,
            pods=spec.workers,
            gpus=spec.gpus,
            after=workers_after,
            deadline_seconds=deadline,
        )
    )
    # finish waits for the workers, then merges: its deadline must outlast theirs.
    jobs.append(
        _replicated_job(
            spec,
            "finish",
            steps.finish_args,
            pods=1,
            gpus=0,
            after={"name": "workers", "status": "Ready"},
            deadline_seconds=deadline + FINISH_ALLOWANCE_SECONDS,
        )
    )
    return {
        "failurePolicy": {"maxRestarts": steps.max_restarts},
        # Workers share files, not a network: no headless Service for pod DNS names.
        "network": {"enableDNSHostnames": False},
        "replicatedJobs": jobs,
    }


def jobset_manifest(spec: TrainingSpec) -> dict[str, Any]:
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": "JobSet",
        "metadata": {
            "name": run_name(spec),
            "namespace": spec.namespace,
            "labels": job_labels(spec),
            # Pulumi's generic await can only wait for Completed (a failed run would hold `up` until
            # its timeout): the TrainingJob's await step watches for Completed and Failed instead.
            "annotations": {"pulumi.com/skipAwait": "true"},
        },
        "spec": jobset_spec(spec),
    }


def training_manifest(spec: TrainingSpec) -> dict[str, Any]:
    """The run as Kubernetes sees it: a Job for one worker, a JobSet for more."""
    return jobset_manifest(spec) if spec.workers > 1 else training_job_manifest(spec)


# Waits for a JobSet run to finish, failing fast: Completed -> 0; Failed, or its Kueue workload
# deactivated (evicted too often), -> 1 with the reason. Needs kubectl, as the cluster's setup does.
AWAIT_RUN = r"""set -euo pipefail
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kc"
k() { kubectl --kubeconfig "$kc" --namespace "$NAMESPACE" "$@"; }
condition() { k get jobset "$RUN" -o "jsonpath={.status.conditions[?(@.type==\"$1\")].$2}" 2>/dev/null || true; }
deadline=$((SECONDS + TIMEOUT_SECONDS))
while :; do
  if [ "$(condition Completed status)" = True ]; then echo "$RUN completed"; exit 0; fi
  if [ "$(condition Failed status)" = True ]; then
    echo "training run $RUN failed: $(condition Failed message). See kubectl -n $NAMESPACE describe jobset $RUN" \
         "and its pods' status. A new run starts when its inputs change (or pulumi up --replace on the JobSet)." >&2
    exit 1
  fi
  owned="{range .items[?(@.metadata.ownerReferences[0].name==\"$RUN\")]}{.spec.active}{end}"
  active="$(k get workloads -o "jsonpath=$owned" 2>/dev/null || true)"
  if [ "$active" = false ]; then
    echo "training run $RUN was deactivated by Kueue (its pods never all ran within waitForPodsReady, too often):" \
         "kubectl -n $NAMESPACE describe workloads; check the queue's quota and the nodes" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "training run $RUN did not finish within ${TIMEOUT_SECONDS}s: kubectl -n $NAMESPACE get workloads,jobsets" >&2
    exit 1
  fi
  sleep 10
done
"""


class TrainingJob(pulumi.ComponentResource):
    """One training run, queued through Kueue: a batch Job, or with ``workers > 1`` a JobSet.

    Guarantees: the Job or JobSet carries ``kueue.x-k8s.io/queue-name``, so Kueue suspends it on
    create and it runs only once admitted against the team's queue; a JobSet is admitted as one
    workload (quota for all its pods, or none), and if its pods are not all running within Kueue's
    ``waitForPodsReady`` timeout the whole set is evicted and requeued; a failed pod restarts the
    set at most ``max_restarts`` times, then the run fails. Its name is ``<name>-<hash of the run>``
    (``job_name``), so an unchanged run is left alone and a changed one is a new run; every
    container runs under the restricted profile with a read-only root filesystem, writing only to
    its declared volumes; requests equal limits (GPU limit == request); retries and deadline are
    bounded; Pulumi waits for the run to finish.
    """

    def __init__(
        self,
        name: str,
        spec: TrainingSpec,
        opts: pulumi.ResourceOptions | None = None,
        *,
        kubeconfig: pulumi.Input[str] | None = None,
        cluster_identity: pulumi.Input[str] | None = None,
    ) -> None:
        super().__init__("mlplatform:workloads:TrainingJob", name, None, opts)
        manifest = training_manifest(spec)
        # A queued run may wait for quota before it runs; Pulumi waits for it to finish.
        timeout = pulumi.CustomTimeouts(create=f"{spec.active_deadline_seconds // 60 + 10}m")
        self.job = apply(
            f"{name}-{manifest['kind'].lower()}",
            manifest,
            child_options(opts, self, custom_timeouts=None if spec.workers > 1 else timeout),
        )
        self.job_name = pulumi.Output.from_input(run_name(spec))
        if spec.workers > 1:
            if kubeconfig is None:
                raise ValueError(f"TrainingJob {name}: a JobSet run needs the cluster's kubeconfig to be awaited")
            steps = spec.steps
            restarts = steps.max_restarts if steps is not None else 0
            # Every attempt of the set may use a worker's deadline plus the finish step's allowance.
            budget = (restarts + 1) * (spec.active_deadline_seconds + FINISH_ALLOWANCE_SECONDS) + 600
            command.local.Command(
                f"{name}-await",
                create=AWAIT_RUN,
                interpreter=["/bin/bash", "-c"],
                environment={
                    "KUBECONFIG_DATA": kubeconfig,
                    "NAMESPACE": spec.namespace,
                    "RUN": run_name(spec),
                    "TIMEOUT_SECONDS": str(budget),
                },
                # A new run (new name) or a new cluster is awaited again; nothing else re-runs it.
                triggers=[run_name(spec), *([cluster_identity] if cluster_identity is not None else [])],
                opts=child_options(opts, self, depends_on=[self.job]),
            )
        self.register_outputs({"job_name": self.job_name})

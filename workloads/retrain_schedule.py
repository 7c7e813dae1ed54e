"""Periodic retraining, queued through Kueue like any training run.

One worker: a CronJob whose Jobs carry the queue label (Kueue admits each Job). More workers: a
Kubernetes CronJob cannot create a JobSet, so the CronJob runs a *launcher*: a kubectl pod whose
service account may do exactly one thing, create JobSets in its own namespace, and which creates
the run's JobSet (queue label included) from a ConfigMap. The policy pack verifies that pattern
(``ml-service-account-least-privilege`` and the ``kueue-queue-label`` exemption for launchers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pulumi
import yaml

from mlplatform.jobset import JOBSET_API_VERSION
from mlplatform.objects import MANAGED_BY, apply, child_options, labels_for

from .pod import container_security, pod_security, resources
from .training_job import TrainingSpec, job_labels, job_spec, jobset_manifest

__all__ = [
    "KUBECTL_IMAGE",
    "LAUNCHES_LABEL",
    "RetrainSchedule",
    "RetrainSpec",
    "launcher_manifests",
    "retrain_cronjob_manifest",
    "retrain_manifests",
]

# The launcher's only tool. Tag of the Kubernetes release the clusters run (registry.k8s.io publishes
# kubectl images per release); pinned, never latest.
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.34.0"
LAUNCHES_LABEL = "mlplatform.io/launches"
_TEMPLATE_KEY = "jobset.yaml"
# A finished scheduled run stays this long for a look at its pods, then goes (before the next run).
LAUNCHED_TTL_SECONDS = 3600
_TEMPLATE_PATH = "/launch"
# kind forwards the API to the control plane's 6443; EKS endpoints answer on 443.
_API_PORTS = (443, 6443)


@dataclass(frozen=True)
class RetrainSpec:
    training: TrainingSpec
    schedule: str = "0 3 * * *"
    time_zone: str = "Etc/UTC"
    starting_deadline_seconds: int = 3600  # a missed run (cluster down) still starts within the hour
    history: int = 3


def _cronjob(spec: RetrainSpec, labels: dict[str, str], job_template: dict[str, Any]) -> dict[str, Any]:
    training = spec.training
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": training.name, "namespace": training.namespace, "labels": labels},
        "spec": {
            "schedule": spec.schedule,
            "timeZone": spec.time_zone,
            # Never two retrainings at once: they would race to promote. (For a launcher this covers
            # only the launch; the launched run's fixed name covers the run: see launched_jobset.)
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": spec.starting_deadline_seconds,
            "successfulJobsHistoryLimit": spec.history,
            "failedJobsHistoryLimit": spec.history,
            "jobTemplate": job_template,
        },
    }


def retrain_cronjob_manifest(spec: RetrainSpec) -> dict[str, Any]:
    """One worker: each scheduled Job is itself the queued training run."""
    training = spec.training
    if training.workers > 1:
        raise ValueError(f"RetrainSpec {training.name}: {training.workers} workers need a launcher (retrain_manifests)")
    labels = job_labels(training)
    # The queue label goes on each Job, where Kueue looks for it.
    return _cronjob(spec, labels, {"metadata": {"labels": labels}, "spec": job_spec(training)})


def launched_jobset(training: TrainingSpec, ttl_seconds: int = LAUNCHED_TTL_SECONDS) -> dict[str, Any]:
    """The JobSet each scheduled run creates: the training run, under one fixed name.

    The CronJob's ``Forbid`` covers only the launcher (done in seconds), not the run it starts: a
    fixed name makes ``kubectl create`` refuse a second run while one exists (the launcher then
    fails, visibly, with AlreadyExists), and ``ttlSecondsAfterFinished`` removes a finished run
    (its Jobs, pods and Kueue workload) so the next one can start. A failed run's scratch stays on
    the model store, under the same name: the next run resumes from its shards.
    """
    manifest = jobset_manifest(training)  # built afresh: ours to change
    manifest["metadata"]["name"] = training.name
    manifest["metadata"].pop("annotations", None)  # Pulumi's await annotation: nothing awaits a scheduled run
    manifest["spec"]["ttlSecondsAfterFinished"] = ttl_seconds
    return manifest


def launched_jobset_yaml(training: TrainingSpec) -> str | pulumi.Output[str]:
    """``launched_jobset`` as the launcher reads it; an Output while the image is being built."""
    if isinstance(training.image, str):
        return yaml.safe_dump(launched_jobset(training), sort_keys=False)
    return training.image.apply(
        lambda image: yaml.safe_dump(launched_jobset(replace(training, image=image)), sort_keys=False)
    )


def launcher_manifests(spec: RetrainSpec) -> list[dict[str, Any]]:
    """More workers: the launcher's ServiceAccount, Role, RoleBinding, ConfigMap, NetworkPolicy and CronJob."""
    training = spec.training
    namespace, name = training.namespace, f"{training.name}-launcher"
    labels = labels_for("training-launcher", **{"app.kubernetes.io/name": name, LAUNCHES_LABEL: "JobSet"})
    meta = {"namespace": namespace, "labels": labels}
    pod_labels = {"app.kubernetes.io/name": name, LAUNCHES_LABEL: "JobSet"}
    group = JOBSET_API_VERSION.split("/")[0]
    container = {
        "name": "launch",
        "image": KUBECTL_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kubectl", "create", "--filename", f"{_TEMPLATE_PATH}/{_TEMPLATE_KEY}", "--output", "name"],
        "env": [{"name": "HOME", "value": "/tmp"}],  # kubectl's cache; the root filesystem is read-only
        "resources": resources("50m", "64Mi", cpu_limit="200m", memory_limit="128Mi"),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "template", "mountPath": _TEMPLATE_PATH, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "metadata": {"labels": {**MANAGED_BY, **pod_labels}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": name,
            # The one pod in an ML namespace with API credentials: it may only create JobSets here.
            "automountServiceAccountToken": True,
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": [
                {"name": "template", "configMap": {"name": name}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }
    job = {"backoffLimit": 2, "activeDeadlineSeconds": 600, "template": pod}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, **meta},
         "automountServiceAccountToken": False},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, **meta},
            "rules": [{"apiGroups": [group], "resources": ["jobsets"], "verbs": ["create"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, **meta},
            "data": {_TEMPLATE_KEY: launched_jobset_yaml(training)},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{name}-to-api", **meta},
            "spec": {
                # The namespace denies all egress but DNS; the API server's address differs per
                # cluster (and is NATed), so the launcher may reach the API ports, nothing else.
                "podSelector": {"matchLabels": pod_labels},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": port} for port in _API_PORTS]}],
            },
        },
        _cronjob(spec, labels, {"metadata": {"labels": labels}, "spec": job}),
    ]  # fmt: skip


def retrain_manifests(spec: RetrainSpec) -> list[dict[str, Any]]:
    """Everything a schedule needs: one CronJob, or the launcher and its CronJob."""
    return launcher_manifests(spec) if spec.training.workers > 1 else [retrain_cronjob_manifest(spec)]


class RetrainSchedule(pulumi.ComponentResource):
    """Retrains on a schedule. Guarantees: each run is Kueue-queued (Kueue suspends it until
    admitted) with the TrainingJob's pod template (same restricted profile); scheduled Jobs never
    overlap; the last ``history`` runs of each outcome are kept; with workers, the only pod holding
    API credentials is the launcher, whose service account can create JobSets in its namespace and
    nothing else."""

    def __init__(self, name: str, spec: RetrainSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:RetrainSchedule", name, None, opts)
        created: list[pulumi.Resource] = []
        for manifest in retrain_manifests(spec):
            kind = manifest["kind"]
            suffix = kind.lower() if kind == "CronJob" else f"launcher-{kind.lower()}"
            # The CronJob comes last: it may fire only once its rights and template exist.
            created.append(apply(f"{name}-{suffix}", manifest, child_options(opts, self, depends_on=list(created))))
        self.cronjob = created[-1]
        self.schedule = pulumi.Output.from_input(spec.schedule)
        self.register_outputs({"schedule": self.schedule})

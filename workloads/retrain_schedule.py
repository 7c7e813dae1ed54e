"""Periodic retraining: a CronJob whose Jobs queue through Kueue like any training run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from mlplatform.objects import apply, child_options

from .training_job import TrainingSpec, job_labels, job_spec

__all__ = ["RetrainSchedule", "RetrainSpec", "retrain_cronjob_manifest"]


@dataclass(frozen=True)
class RetrainSpec:
    training: TrainingSpec
    schedule: str = "0 3 * * *"
    time_zone: str = "Etc/UTC"
    starting_deadline_seconds: int = 3600  # a missed run (cluster down) still starts within the hour
    history: int = 3


def retrain_cronjob_manifest(spec: RetrainSpec) -> dict[str, Any]:
    training = spec.training
    labels = job_labels(training)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": training.name, "namespace": training.namespace, "labels": labels},
        "spec": {
            "schedule": spec.schedule,
            "timeZone": spec.time_zone,
            # Never two retrainings at once: they would race to promote.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": spec.starting_deadline_seconds,
            "successfulJobsHistoryLimit": spec.history,
            "failedJobsHistoryLimit": spec.history,
            # The queue label goes on each Job, where Kueue looks for it.
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec(training)},
        },
    }


class RetrainSchedule(pulumi.ComponentResource):
    """Retrains on a schedule. Guarantees: each Job is Kueue-queued (Kueue suspends it until
    admitted), runs are never concurrent, the last ``history`` runs of each outcome are kept, and
    the pod template is the TrainingJob's (same restricted profile)."""

    def __init__(self, name: str, spec: RetrainSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:RetrainSchedule", name, None, opts)
        self.cronjob = apply(f"{name}-cronjob", retrain_cronjob_manifest(spec), child_options(opts, self))
        self.schedule = pulumi.Output.from_input(spec.schedule)
        self.register_outputs({"schedule": self.schedule})

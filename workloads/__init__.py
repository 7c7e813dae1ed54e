"""Reusable ML workload components: training jobs, retraining schedules, inference services,
the model store they share, and container images for them.

Each component takes a frozen spec, builds its manifests with a pure function (so tests and the
render command see exactly what is applied) and registers them with the caller's provider.
"""

from .image import ContainerImage, ContainerImageArgs, content_tag
from .inference_service import InferenceService, InferenceSpec, inference_manifests
from .model_store import ModelStore, ModelStoreArgs, model_store_manifests
from .pod import EmptyDir, Mount
from .retrain_schedule import RetrainSchedule, RetrainSpec, retrain_cronjob_manifest
from .training_job import TrainingJob, TrainingSpec, training_job_manifest

__all__ = [
    "ContainerImage",
    "ContainerImageArgs",
    "EmptyDir",
    "InferenceService",
    "InferenceSpec",
    "ModelStore",
    "ModelStoreArgs",
    "Mount",
    "RetrainSchedule",
    "RetrainSpec",
    "TrainingJob",
    "TrainingSpec",
    "content_tag",
    "inference_manifests",
    "model_store_manifests",
    "retrain_cronjob_manifest",
    "training_job_manifest",
]

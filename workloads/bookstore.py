"""The Bookstore recommender on the platform: train -> evaluate -> register -> promote as a queued
Job, a nightly retrain, and the serving stack.

This is the one module that knows the recommender's command line, ports, probe paths and
writable paths (its side of the contract is ``recommender/contract.py``); a test runs the
rendered containers' commands against the real package to prove both sides agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi

from mlplatform.cluster.kind import MODEL_STORE_NODE_PATH

from .bookstore_monitoring import dashboard, requests_per_second_metric, serving_rules
from .image import ContainerImage, ContainerImageArgs
from .inference_service import Client, InferenceService, InferenceSpec
from .model_store import ModelStore, ModelStoreArgs
from .pod import EmptyDir
from .retrain_schedule import RetrainSchedule, RetrainSpec
from .training_job import DistributedSteps, TrainingJob, TrainingSpec

if TYPE_CHECKING:
    from mlplatform.program import Platform

__all__ = ["Bookstore", "deploy_bookstore", "distributed_steps", "pipeline_args", "serve_args"]

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ("python", "-m", "recommender")
MODEL = "bookstore"
ALIAS = "production"
PORT = 8080
READY_PATH, LIVE_PATH, METRICS_PATH = "/ready", "/live", "/metrics"
REGISTRY_PATH = "/models"  # the model store claim
WORKDIR_PATH = "/work"  # scratch: generated data and the artifact before registration
TMP_PATH = "/tmp"
CLIENT_LABEL = "mlplatform.io/recommender-client"
# A distributed run's pods share its data and shards on the model store, one directory per run
# (RUN_NAME: the JobSet's name, set in every pod), beside the registry's models.
RUN_DIR = f"{REGISTRY_PATH}/.runs/$(RUN_NAME)"
# The finish step starts with the workers and waits this long for their shards (a worker's
# deadline is the run's activeDeadlineSeconds; after it the set has failed anyway).
SHARD_WAIT_SECONDS = 3600
# One serving core answers ~10k lookups/s (docs/benchmarks.md); a pod requests a quarter core.
TARGET_RPS_PER_POD = 500.0


def pipeline_args(
    *, seed: int = 42, customers: int = 20_000, books: int = 5_000, orders: int = 200_000, ease_memory_mib: int = 1024
) -> list[str]:
    """generate -> train -> evaluate (gate) -> register -> promote; idempotent for a retried pod."""
    return [
        "pipeline",
        "--workdir", WORKDIR_PATH,
        "--registry", REGISTRY_PATH,
        "--model", MODEL,
        "--alias", ALIAS,
        "--seed", str(seed),
        "--customers", str(customers),
        "--books", str(books),
        "--orders", str(orders),
        "--k", "20",
        "--ease-memory-mib", str(ease_memory_mib),
        "--min-lift", "0.1",
    ]  # fmt: skip


def distributed_steps(
    workers: int,
    *,
    seed: int = 42,
    customers: int = 20_000,
    books: int = 5_000,
    orders: int = 200_000,
    ease_memory_mib: int = 1024,
) -> DistributedSteps:
    """The pipeline split across ``workers``: generate once, train one shard each, then finish
    (merge -> select -> evaluate (gate) -> register -> promote). Every step is idempotent: a
    restarted set regenerates the same data and skips shards already written."""
    data = f"{RUN_DIR}/data"
    shared = [
        "--orders", f"{data}/orders.csv",
        "--catalog", f"{data}/catalog.csv",
        "--shards-dir", f"{RUN_DIR}/shards",
        "--shards", str(workers),
        "--k", "20",
        "--ease-memory-mib", str(ease_memory_mib),  # part of the plan: workers and finish must agree
    ]  # fmt: skip
    prepare = [
        "generate",
        "--out", data,
        "--seed", str(seed),
        "--customers", str(customers),
        "--books", str(books),
        "--orders", str(orders),
    ]  # fmt: skip
    finish = [
        "finish",
        *shared,
        "--out", f"{WORKDIR_PATH}/artifact",
        "--registry", REGISTRY_PATH,
        "--model", MODEL,
        "--alias", ALIAS,
        "--min-lift", "0.1",
        "--wait-for-shards", str(SHARD_WAIT_SECONDS),
        "--cleanup-dir", RUN_DIR,  # the run's data and shards, once its model is promoted
    ]  # fmt: skip
    # One thread per worker: the workers are the parallelism (and their CPU request is 1).
    return DistributedSteps(worker_args=["train", *shared, "--threads", "1"], finish_args=finish, prepare_args=prepare)


def serve_args() -> list[str]:
    return [
        "serve",
        "--registry", REGISTRY_PATH,
        "--model", MODEL,
        "--alias", ALIAS,
        "--host", "0.0.0.0",
        "--port", str(PORT),
    ]  # fmt: skip


@dataclass
class Bookstore:
    image: ContainerImage
    store: ModelStore
    training: TrainingJob
    retrain: RetrainSchedule
    service: InferenceService


def deploy_bookstore(platform: Platform) -> Bookstore:
    """Register the recommender's workloads in its team namespace."""
    config = platform.config
    rec = config.recommender
    team = platform.namespaces[rec.team]
    namespace = rec.team
    opts = pulumi.ResourceOptions.merge(platform.k8s_opts(), pulumi.ResourceOptions(depends_on=[team]))

    cluster = platform.cluster
    image = ContainerImage(
        "bookstore-image",
        ContainerImageArgs(
            name="bookstore-recommender",
            context=ROOT / "recommender",
            dockerfile=ROOT / "recommender" / "Dockerfile",
            kind_cluster=config.cluster_name if cluster.image_repository is None else None,
            cluster_identity=cluster.identity,
            repository=cluster.image_repository,
            prebuilt=rec.image,
            push_environment=cluster.image_push_environment,
        ),
        opts=pulumi.ResourceOptions(depends_on=list(cluster.ready)),
    )
    store = ModelStore(
        "bookstore-models",
        ModelStoreArgs(
            namespace=namespace,
            storage_class=cluster.model_store_class,
            node_path=MODEL_STORE_NODE_PATH if cluster.model_store_class is None else None,
        ),
        opts=opts,
    )
    scratch = [EmptyDir("work", WORKDIR_PATH, "2Gi"), EmptyDir("tmp", TMP_PATH, "1Gi")]
    training = TrainingSpec(
        name="bookstore-train",
        namespace=namespace,
        image=image.image_ref,
        image_version=image.tag,
        command=COMMAND,
        args=pipeline_args(ease_memory_mib=rec.ease_memory_mib),
        workers=rec.training_workers,
        steps=distributed_steps(rec.training_workers, ease_memory_mib=rec.ease_memory_mib)
        if rec.training_workers > 1
        else None,
        queue=team.local_queue_name_value,
        cpu=rec.training_cpu,
        memory=rec.training_memory,
        gpus=rec.training_gpus,
        priority_class="production",
        volumes=[store.mount(REGISTRY_PATH), *scratch],
    )
    after_store = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[store]))
    train_job = TrainingJob(
        "bookstore-train", training, opts=after_store, kubeconfig=cluster.kubeconfig, cluster_identity=cluster.identity
    )
    retrain = RetrainSchedule(
        "bookstore-retrain",
        RetrainSpec(training=replace(training, name="bookstore-retrain"), schedule=rec.retrain_schedule),
        opts=after_store,
    )
    scale_metric = None
    if platform.monitoring is not None:
        # Users feel latency, not CPU: scale on requests/s per pod (prometheus-adapter). The target
        # leaves each replica headroom; a cold replica takes its model-load time to join.
        scale_metric = requests_per_second_metric(TARGET_RPS_PER_POD)
    service = InferenceService(
        "bookstore-recommender",
        InferenceSpec(
            name="bookstore-recommender",
            namespace=namespace,
            image=image.image_ref,
            command=COMMAND,
            args=serve_args(),
            port=PORT,
            ready_path=READY_PATH,
            live_path=LIVE_PATH,
            min_replicas=rec.min_replicas,
            max_replicas=rec.max_replicas,
            volumes=[store.mount(REGISTRY_PATH, read_only=True), EmptyDir("tmp", TMP_PATH, "256Mi")],
            clients=[Client(pods={CLIENT_LABEL: "true"})],
            scale_metric=scale_metric,
            version=image.tag,
            annotations={"mlplatform.io/model": f"{MODEL}@{ALIAS}"},
        ),
        # Serve once the first model is promoted, so the rollout's readiness wait is meaningful.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[train_job])),
    )
    if platform.monitoring is not None:
        platform.monitoring.scrape(
            team,
            "bookstore-recommender",
            {"app.kubernetes.io/name": "bookstore-recommender"},
            port_name="http",
            container_port=PORT,
            path=METRICS_PATH,
            rules=serving_rules(namespace, "bookstore-recommender"),
            # Not `opts`: the Prometheus NetworkPolicy is a child of the team namespace, and a
            # child that depends on its own parent is a cycle.
            opts=platform.k8s_opts(),
        )
        platform.monitoring.add_dashboard("recommender", dashboard())
    pulumi.export("recommenderImage", image.image_ref)
    pulumi.export(
        "recommenderPortForward",
        f"kubectl --namespace {namespace} port-forward service/bookstore-recommender {PORT}:{PORT}",
    )
    pulumi.export("recommenderQuery", f"curl -s 'http://localhost:{PORT}/v1/books/<book_id>/also-bought?k=5'")
    pulumi.export("trainingJob", f"kubectl --namespace {namespace} get workloads,jobsets,jobs")
    return Bookstore(image, store, train_job, retrain, service)

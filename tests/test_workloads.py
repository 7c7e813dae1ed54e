"""Workload components: each guarantee asserted on the pure manifests and on the wired dev stack."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.capture import FAKE_KUBECONFIG, Capture
from mlplatform.cluster.kind import MODEL_STORE_NODE_PATH
from tests.validation import SchemaError, validate_manifest
from workloads import (
    EmptyDir,
    InferenceSpec,
    ModelStoreArgs,
    RetrainSpec,
    TrainingSpec,
    content_tag,
    inference_manifests,
    model_store_manifests,
    retrain_cronjob_manifest,
    training_job_manifest,
)
from workloads.inference_service import Client
from workloads.pod import Mount
from workloads.retrain_schedule import retrain_manifests
from workloads.training_job import DistributedSteps, training_manifest

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

TRAINING = TrainingSpec(
    name="train",
    namespace="team",
    image="img:1",
    command=["python", "-m", "x"],
    args=["run"],
    volumes=[Mount("store", "/models", "model-store"), EmptyDir("tmp", "/tmp")],
)


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def assert_restricted(manifest: dict[str, Any]) -> None:
    pod = pod_spec(manifest)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not any("hostPath" in v for v in pod.get("volumes", []))
    for container in pod["containers"]:
        assert container["securityContext"] == RESTRICTED_CONTAINER
        # Writable paths are exactly the declared volumes (the root filesystem is read-only).
        assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in pod["volumes"]}
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert set(requests) == set(limits) >= {"cpu", "memory"}


def test_training_job_is_queued_restricted_and_leaves_suspend_to_kueue() -> None:
    job = training_job_manifest(TRAINING)
    validate_manifest(job)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    # Kueue's webhook suspends it and Kueue owns the field from then on: ours would conflict.
    assert "suspend" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 2
    # The finished Job stays as the record of the deployed run: a refresh must not find it gone.
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and "ttlSecondsAfterFinished" not in job["spec"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert_restricted(job)
    assert "nvidia.com/gpu" not in pod_spec(job)["containers"][0]["resources"]["requests"]


def test_gpu_training_job_requests_whole_gpus_with_limit_equal_to_request() -> None:
    job = training_job_manifest(replace(TRAINING, gpus=2, priority_class="production"))
    validate_manifest(job)
    res = pod_spec(job)["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "2"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "production"


def test_retrain_schedule_never_overlaps_and_queues_every_job() -> None:
    cron = retrain_cronjob_manifest(RetrainSpec(training=TRAINING, schedule="15 2 * * *"))
    validate_manifest(cron)
    assert cron["spec"]["schedule"] == "15 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    template = cron["spec"]["jobTemplate"]
    assert template["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    assert "suspend" not in template["spec"]
    assert template["spec"] == training_job_manifest(TRAINING)["spec"]
    assert_restricted(cron)


SERVING = InferenceSpec(
    name="svc",
    namespace="team",
    image="img:1",
    command=["python", "-m", "x"],
    args=["serve"],
    volumes=[Mount("store", "/models", "model-store", read_only=True), EmptyDir("tmp", "/tmp")],
    clients=[Client(pods={"role": "frontend"})],
    version="abc123",
)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_inference_service_objects_and_their_guarantees() -> None:
    objects = inference_manifests(SERVING)
    for o in objects:
        validate_manifest(o)
    kinds = by_kind(objects)
    assert set(kinds) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    deployment = kinds["Deployment"]
    assert "replicas" not in deployment["spec"]  # owned by the HPA
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "abc123"
    assert_restricted(deployment)
    (container,) = pod_spec(deployment)["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 600
    assert pod_spec(deployment)["serviceAccountName"] == "svc"
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    service = kinds["Service"]
    assert (
        service["spec"]["type"] == "ClusterIP"
        and service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    )
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"protocol": "TCP", "port": 8080}]}
    ]


def test_inference_service_can_scale_on_a_custom_metric() -> None:
    metric = {
        "type": "Pods",
        "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "100"}},
    }
    hpa = by_kind(inference_manifests(replace(SERVING, scale_metric=metric)))["HorizontalPodAutoscaler"]
    validate_manifest(hpa)
    assert hpa["spec"]["metrics"] == [metric]


def test_model_store_on_kind_is_a_static_rwx_volume_bound_to_its_claim() -> None:
    pv, pvc = model_store_manifests(ModelStoreArgs(namespace="team", node_path=MODEL_STORE_NODE_PATH))
    for o in (pv, pvc):
        validate_manifest(o)
    assert pv["spec"]["hostPath"] == {"path": f"{MODEL_STORE_NODE_PATH}/team", "type": "Directory"}
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["claimRef"] == {"namespace": "team", "name": "model-store"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] and pvc["spec"]["storageClassName"] == ""


def test_model_store_in_the_cloud_is_a_claim_on_a_storage_class() -> None:
    (pvc,) = model_store_manifests(ModelStoreArgs(namespace="team", storage_class="efs-models"))
    validate_manifest(pvc)
    assert pvc["spec"]["storageClassName"] == "efs-models" and "volumeName" not in pvc["spec"]
    with pytest.raises(ValueError, match="exactly one"):
        ModelStoreArgs(namespace="team")


def test_content_tag_follows_what_the_build_sees(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "app.py").write_text("print(1)\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_app.py").write_text("x = 1\n")
    (tmp_path / ".dockerignore").write_text("# not in the image\ntests\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    tag = content_tag(tmp_path, dockerfile)
    assert len(tag) == 12
    (tmp_path / "tests" / "test_app.py").write_text("x = 2\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "app.pyc").write_bytes(b"\0")
    assert content_tag(tmp_path, dockerfile) == tag
    (tmp_path / "pkg" / "app.py").write_text("print(2)\n")
    assert content_tag(tmp_path, dockerfile) != tag


def test_dev_stack_wires_the_recommender_loop(dev_one_worker: Capture) -> None:
    dev = dev_one_worker
    job, deployment = dev.named("bookstore-train-job"), dev.named("bookstore-recommender-deployment")
    build = dev.named("bookstore-image-build")
    image = build.props["environment"]["IMAGE"]
    name, tag = image.split(":")
    assert name == "bookstore-recommender" and len(tag) == 12
    for r in (job, deployment, dev.named("bookstore-retrain-cronjob")):
        (container,) = pod_spec(r.manifest())["containers"]
        assert container["image"] == image
        assert_restricted(r.manifest())
    assert deployment.manifest()["metadata"]["labels"]["app.kubernetes.io/version"] == tag
    # Loaded again whenever the image or the cluster changes (a replaced cluster has empty nodes).
    identity = hashlib.sha256(FAKE_KUBECONFIG.encode()).hexdigest()[:16]  # what the kind command printed
    assert "kind load docker-image" in build.props["create"] and build.props["triggers"] == [image, identity]
    # Serving starts after training finished; training after its model store and the image exist.
    assert job.urn in deployment.dependencies
    assert dev.named("bookstore-models-claim").urn in job.dependencies
    assert build.urn in job.dependencies and build.urn in deployment.dependencies
    assert dev.named("bookstore-train-job").manifest()["metadata"]["namespace"] == "bookstore-ml"


def test_dev_stack_trains_with_two_sharded_workers_and_retrains_through_a_launcher(dev: Capture) -> None:
    jobset, deployment = dev.named("bookstore-train-jobset"), dev.named("bookstore-recommender-deployment")
    manifest = jobset.manifest()
    jobs = replicated(manifest)
    assert jobs["workers"]["template"]["spec"]["completions"] == 2
    args = {n: j["template"]["spec"]["template"]["spec"]["containers"][0]["args"] for n, j in jobs.items()}
    assert args["prepare"][0] == "generate" and args["workers"][0] == "train" and args["finish"][0] == "finish"
    assert args["workers"][args["workers"].index("--shards") + 1] == "2"
    assert "--wait-for-shards" in args["finish"]  # it starts with the workers (dependsOn Ready)
    # Every step reads and writes one directory per run on the shared model store.
    assert all(any("/models/.runs/$(RUN_NAME)" in a for a in step) for step in args.values())
    # Serving waits for the run: the await step, which fails fast when the run fails.
    wait = dev.named("bookstore-train-await")
    assert jobset.urn in wait.dependencies and wait.urn in deployment.dependencies
    assert wait.props["environment"]["RUN"] == manifest["metadata"]["name"]
    assert manifest["metadata"]["name"] in wait.props["triggers"]
    validate_manifest(manifest)
    launcher = dev.named("bookstore-retrain-cronjob").manifest()
    assert pod_spec(launcher)["serviceAccountName"] == "bookstore-retrain-launcher"
    launched = yaml.safe_load(dev.named("bookstore-retrain-launcher-configmap").manifest()["data"]["jobset.yaml"])
    # The same run every night: same steps, same containers (only the names and labels differ).
    nightly = {
        j["name"]: j["template"]["spec"]["template"]["spec"]["containers"] for j in launched["spec"]["replicatedJobs"]
    }
    assert nightly == {n: j["template"]["spec"]["template"]["spec"]["containers"] for n, j in jobs.items()}


def test_with_monitoring_the_recommender_is_scraped_and_scales_on_requests() -> None:
    from mlplatform.capture import capture_stack

    capture = capture_stack("dev", {"monitoring": True})
    (hpa,) = capture.kind("HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "recommender_requests_per_second"
    # (the simulated GPUs' exporter, in gpu-operator, has a ServiceMonitor too)
    (monitor,) = [m for m in capture.kind("ServiceMonitor") if m["metadata"]["namespace"] == "bookstore-ml"]
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "bookstore-recommender"}
    policies = {p["metadata"]["name"]: p for p in capture.kind("NetworkPolicy")}
    ingress = policies["allow-prometheus-bookstore-recommender"]["spec"]["ingress"]
    assert ingress[0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_without_monitoring_the_recommender_scales_on_cpu(dev: Capture) -> None:
    (hpa,) = dev.kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert dev.kind("ServiceMonitor") == []


# --- Distributed runs: a JobSet admitted whole ------------------------------------------------

DISTRIBUTED = replace(
    TRAINING,
    workers=3,
    gpus=1,
    priority_class="production",
    steps=DistributedSteps(worker_args=["train", "--shards", "3"], finish_args=["finish"], prepare_args=["generate"]),
)


def replicated(jobset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in jobset["spec"]["replicatedJobs"]}


def test_one_worker_stays_a_batch_job_and_more_become_a_jobset() -> None:
    assert training_manifest(TRAINING)["kind"] == "Job"
    jobset = training_manifest(DISTRIBUTED)
    assert (jobset["apiVersion"], jobset["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    with pytest.raises(ValueError, match="JobSet"):
        training_job_manifest(DISTRIBUTED)
    with pytest.raises(ValueError, match="steps"):
        training_manifest(replace(DISTRIBUTED, steps=None))


def test_jobset_runs_prepare_then_n_indexed_workers_then_finish() -> None:
    jobset = training_manifest(DISTRIBUTED)
    validate_manifest(jobset)  # the vendored JobSet CRD, its CEL rules and the webhook's name checks
    jobs = replicated(jobset)
    assert list(jobs) == ["prepare", "workers", "finish"]
    workers = jobs["workers"]["template"]["spec"]
    assert (workers["completions"], workers["parallelism"], workers["completionMode"]) == (3, 3, "Indexed")
    assert "dependsOn" not in jobs["prepare"]
    assert jobs["workers"]["dependsOn"] == [{"name": "prepare", "status": "Complete"}]
    # Started once the workers run (not complete): Kueue 0.19 counts the set ready only when every
    # step has a ready Job, so a later step would keep it unready and get it evicted.
    assert jobs["finish"]["dependsOn"] == [{"name": "workers", "status": "Ready"}]
    args = {name: j["template"]["spec"]["template"]["spec"]["containers"][0]["args"] for name, j in jobs.items()}
    assert args == {"prepare": ["generate"], "workers": ["train", "--shards", "3"], "finish": ["finish"]}


def test_jobset_is_queued_bounded_and_restricted_in_every_pod() -> None:
    jobset = training_manifest(DISTRIBUTED)
    labels = jobset["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "default" and labels["kueue.x-k8s.io/priority-class"] == "production"
    assert "suspend" not in jobset["spec"] and "ttlSecondsAfterFinished" not in jobset["spec"]  # Kueue's; kept
    assert jobset["spec"]["failurePolicy"] == {"maxRestarts": 2}
    # Pulumi's generic await cannot fail fast on Failed: the TrainingJob's own await step does.
    assert jobset["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    for name, job in replicated(jobset).items():
        spec = job["template"]["spec"]
        assert spec["backoffLimit"] == 0  # a failure restarts the set
        # finish waits for the workers, then merges: its deadline outlasts theirs.
        assert spec["activeDeadlineSeconds"] == (3600 + 1800 if name == "finish" else 3600), name
        assert_restricted({"kind": "Job", "spec": spec})
        (container,) = spec["template"]["spec"]["containers"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == ("1" if name == "workers" else None), name  # GPUs per worker, none elsewhere
        run_env = next(e for e in container["env"] if e["name"] == "RUN_NAME")
        assert run_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['jobset.sigs.k8s.io/jobset-name']"


def test_jobset_validation_catches_a_first_step_that_depends_on_another() -> None:
    # The CEL rules are only worth something if they fail: JobSet refuses dependsOn on the first step.
    jobset = training_manifest(DISTRIBUTED)
    jobs = jobset["spec"]["replicatedJobs"]
    jobs[0], jobs[1] = jobs[1], jobs[0]
    with pytest.raises(SchemaError, match=r"(?i)depend"):
        validate_manifest(jobset)


def test_a_distributed_retrain_is_a_launcher_that_may_only_create_jobsets() -> None:
    objects = retrain_manifests(RetrainSpec(training=replace(DISTRIBUTED, name="retrain")))
    kinds = by_kind(objects)
    assert list(kinds) == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "NetworkPolicy", "CronJob"]
    for o in objects:
        validate_manifest(o)
    assert kinds["Role"]["rules"] == [{"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["create"]}]
    assert kinds["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "retrain-launcher", "namespace": "team"}
    ]
    cron = kinds["CronJob"]
    pod = pod_spec(cron)
    assert pod["serviceAccountName"] == "retrain-launcher" and pod["automountServiceAccountToken"] is True
    assert "kueue.x-k8s.io/queue-name" not in cron["spec"]["jobTemplate"]["metadata"]["labels"]  # it queues nothing
    assert pod["containers"][0]["image"].startswith("registry.k8s.io/kubectl:v1.34")
    launched = yaml.safe_load(kinds["ConfigMap"]["data"]["jobset.yaml"])
    # One fixed name: a second run cannot start while one exists (kubectl create refuses it), and a
    # finished run is removed after an hour so the next one can.
    assert launched["metadata"]["name"] == "retrain" and launched["spec"]["ttlSecondsAfterFinished"] == 3600
    assert launched["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    run = training_manifest(replace(DISTRIBUTED, name="retrain"))["spec"]
    assert launched["spec"] == {**run, "ttlSecondsAfterFinished": 3600}
    validate_manifest(launched)
    egress = kinds["NetworkPolicy"]["spec"]["egress"]
    assert [p["port"] for p in egress[0]["ports"]] == [443, 6443] and "to" not in egress[0]

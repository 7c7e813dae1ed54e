"""Day 2: what the program registers must survive a second `up`, a refresh, a replaced cluster
and a destroy. Each test stands for a defect seen on a real API server or in the provider's
source (../shared/NOTES.md, "What the real API server and the provider do on day 2")."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.capture import FAKE_KUBECONFIG, REPO_ROOT, Capture, capture_stack
from mlplatform.config import default_model_store_path
from mlplatform.kueue import QUEUE_NAME_LABEL
from tests.stacks import EKS_FROM_HERE
from workloads.training_job import TrainingSpec, run_name, training_job_manifest


@pytest.fixture(scope="module")
def eks() -> Capture:
    return capture_stack("eks", EKS_FROM_HERE)


@pytest.fixture(scope="module")
def dev_with_monitoring() -> Capture:
    return capture_stack("dev", {"monitoring": True})


# --- Fields a controller takes over after creation: never in a manifest -----------------------


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _queued(m: dict[str, Any]) -> bool:
    return QUEUE_NAME_LABEL in (_get(m, "metadata.labels") or {})


def _scaled_by_hpa(objects: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    targets = {
        (h["metadata"].get("namespace"), h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        for h in objects
        if h["kind"] == "HorizontalPodAutoscaler"
    }
    return lambda m: (m["metadata"].get("namespace"), m["kind"], m["metadata"]["name"]) in targets


@dataclass(frozen=True)
class Owned:
    """``path`` of objects matching ``applies`` belongs to ``owner`` once the object exists."""

    what: str
    applies: Callable[[dict[str, Any]], bool]
    path: str
    owner: str


def owned_fields(objects: list[dict[str, Any]]) -> list[Owned]:
    """The table: extend it whenever a controller is found taking over a field."""
    hpa = _scaled_by_hpa(objects)
    every: Callable[[dict[str, Any]], bool] = lambda m: True  # noqa: E731
    return [
        Owned("queue-labelled Job", lambda m: m["kind"] == "Job" and _queued(m), "spec.suspend", "Kueue"),
        Owned("queue-labelled JobSet", lambda m: m["kind"] == "JobSet" and _queued(m), "spec.suspend", "Kueue"),
        Owned(
            "CronJob of queued Jobs",
            lambda m: m["kind"] == "CronJob" and _queued(m["spec"]["jobTemplate"]),
            "spec.jobTemplate.spec.suspend",
            "Kueue (on each Job the CronJob creates)",
        ),
        Owned("Job", lambda m: m["kind"] == "Job", "spec.selector", "the Job controller"),
        Owned("Deployment under an HPA", lambda m: m["kind"] == "Deployment" and hpa(m), "spec.replicas", "the HPA"),
        Owned("Service", lambda m: m["kind"] == "Service", "spec.clusterIP", "the API server"),
        Owned("Service", lambda m: m["kind"] == "Service", "spec.clusterIPs", "the API server"),
        Owned("Namespace", lambda m: m["kind"] == "Namespace", "spec.finalizers", "the namespace controller"),
        Owned("PersistentVolume", lambda m: m["kind"] == "PersistentVolume", "spec.claimRef.uid", "the PV binder"),
        Owned("any object", every, "metadata.ownerReferences", "garbage collection and controllers"),
        Owned("any object", every, "metadata.finalizers", "controllers"),
        Owned("any object", every, "status", "controllers"),
    ]


def controller_owned_violations(objects: list[dict[str, Any]]) -> list[str]:
    return [
        f"{m['kind']} {m['metadata'].get('namespace', '')}/{m['metadata']['name']}: {rule.path} belongs to {rule.owner}"
        for m in objects
        for rule in owned_fields(objects)
        if rule.applies(m) and _get(m, rule.path) is not None
    ]


def _stacks(dev: Capture, eks: Capture, dev_with_monitoring: Capture) -> Iterator[Capture]:
    yield from (dev, eks, dev_with_monitoring)


def test_no_rendered_object_sets_a_field_its_controller_owns(
    dev: Capture, eks: Capture, dev_with_monitoring: Capture
) -> None:
    for stack in _stacks(dev, eks, dev_with_monitoring):
        objects = stack.kubernetes_objects()
        kinds = {m["kind"] for m in objects}
        assert {"CronJob", "Deployment", "HorizontalPodAutoscaler", "Service"} <= kinds, stack.stack
        assert kinds & {"Job", "JobSet"}, stack.stack
        assert controller_owned_violations(objects) == [], stack.stack


def test_the_table_catches_each_field_it_lists(dev: Capture) -> None:
    # The check above is only worth something if it fails on the defects it stands for.
    objects = dev.kubernetes_objects()
    job = next(m for m in objects if m["kind"] == "JobSet")
    deployment = next(m for m in objects if m["kind"] == "Deployment")
    bad_job = {**job, "spec": {**job["spec"], "suspend": True}}
    bad_deployment = {**deployment, "spec": {**deployment["spec"], "replicas": 2}}
    found = controller_owned_violations([*objects, bad_job, bad_deployment])
    assert any("spec.suspend belongs to Kueue" in v for v in found)
    assert any("spec.replicas belongs to the HPA" in v for v in found)


# --- 1. Training runs: unchanged inputs change nothing, changed inputs are a new Job ------------

SPEC = TrainingSpec(name="train", namespace="team", image="img:1", command=["python", "-m", "x"], args=["run"])


def test_a_training_jobs_name_is_the_hash_of_its_run() -> None:
    assert run_name(SPEC) == run_name(replace(SPEC)) == training_job_manifest(SPEC)["metadata"]["name"]
    assert run_name(SPEC).startswith("train-") and len(run_name(SPEC)) == len("train-") + 8
    changes = [
        replace(SPEC, image="img:2"),
        replace(SPEC, args=["run", "--seed", "7"]),
        replace(SPEC, cpu="2"),
        replace(SPEC, gpus=1),
        replace(SPEC, queue="other"),
        replace(SPEC, priority_class="production"),
    ]
    names = {run_name(s) for s in changes}
    assert run_name(SPEC) not in names and len(names) == len(changes)


def test_a_built_image_names_the_run_by_its_content_tag() -> None:
    import pulumi

    built = replace(SPEC, image=pulumi.Output.from_input("repo/img:abc"), image_version="abc")
    assert run_name(built) != run_name(replace(built, image_version="def"))
    with pytest.raises(ValueError, match="image_version"):
        run_name(replace(built, image_version=""))
    with pytest.raises(ValueError, match="too long"):
        run_name(replace(SPEC, name="t" * 60))


def test_the_stack_names_the_same_run_the_same_and_a_changed_one_anew(dev: Capture) -> None:
    first = dev.named("bookstore-train-jobset").manifest()["metadata"]["name"]
    again = capture_stack("dev").named("bookstore-train-jobset").manifest()["metadata"]["name"]
    more_memory = capture_stack("dev", {"recommenderTrainingMemory": "3Gi"})
    changed = more_memory.named("bookstore-train-jobset").manifest()["metadata"]["name"]
    assert first == again  # a second `up` with nothing changed: same name, no replacement
    assert changed != first and changed.startswith("bookstore-train-")
    # The nightly CronJob keeps its name: it is updated in place, its Jobs are its own.
    assert more_memory.named("bookstore-retrain-cronjob").manifest()["metadata"]["name"] == "bookstore-retrain"


# --- 2, 4. Providers: configured after access exists; never drop state on an unreachable API ---


def test_no_kubernetes_provider_drops_objects_when_the_api_is_unreachable(dev: Capture, eks: Capture) -> None:
    for stack in (dev, eks):
        providers = stack.of_type("pulumi:providers:kubernetes")
        assert providers, stack.stack
        for provider in providers:
            assert "deleteUnreachable" not in provider.props, stack.stack


# --- 3. A replaced kind cluster gets the image loaded again -------------------------------------


def test_the_image_load_follows_the_clusters_identity(dev: Capture) -> None:
    build = dev.named("bookstore-image-build").props
    kubeconfig_hash = hashlib.sha256(FAKE_KUBECONFIG.encode()).hexdigest()[:16]
    assert kubeconfig_hash in build["triggers"]  # a new cluster, a new CA, a new kubeconfig: load again
    cluster = dev.named("ml-platform-kind")
    assert cluster.urn in dev.named("bookstore-image-build").dependencies


# --- 5. The kind model store lives where reboots keep it, and is re-made on every run ----------


def test_the_model_store_defaults_to_a_persistent_per_user_directory() -> None:
    assert default_model_store_path({"HOME": "/home/ada"}) == "/home/ada/.local/share/ml-platform/models"
    assert default_model_store_path({"HOME": "/home/ada", "XDG_DATA_HOME": "/data"}) == "/data/ml-platform/models"
    assert not default_model_store_path().startswith("/tmp")


def test_every_run_makes_the_store_directories_before_the_cluster_mounts_them(dev: Capture) -> None:
    (call,) = [args for token, args in dev.invokes if token == "command:local:run"]
    assert call["environment"] == {"MODEL_STORE": default_model_store_path(), "TEAMS": "bookstore-ml"}
    cluster = dev.named("ml-platform-kind").props
    assert cluster["environment"]["MODEL_STORE"] == default_model_store_path()  # the invoke's answer
    # An invoke, not a resource: nothing in the state, so a second `up` stays a no-op.
    assert not [r for r in dev.resources if "model-store-dirs" in r.name]


# --- 6. Real GPUs: nothing that needs them before they are advertised ---------------------------


@pytest.mark.parametrize("simulate", [True, False])
def test_workloads_wait_until_gpu_nodes_advertise_what_the_quota_counts(simulate: bool) -> None:
    # Real or simulated, a device plugin advertises the GPUs: nothing that needs one starts before.
    stack = capture_stack("dev", {"kindSimulateGpus": simulate, "gpuTimeSlicingReplicas": 3})
    wait = stack.named("ml-platform-gpus-advertised")
    device_plugin = stack.named("fake-gpu-operator" if simulate else "nvidia-device-plugin")
    assert device_plugin.urn in wait.dependencies
    assert wait.urn in stack.named("bookstore-train-jobset").dependencies
    assert wait.props["environment"]["GPU_RESOURCE"] == "nvidia.com/gpu"
    (flavor,) = [f for q in stack.kind("ClusterQueue") for g in q["spec"]["resourceGroups"] for f in g["flavors"]
                 if f["name"] == "gpu"]  # fmt: skip
    kind_nodes = yaml.safe_load(stack.named("ml-platform-kind").props["environment"]["KIND_CONFIG"])["nodes"]
    nodes = len([n for n in kind_nodes if n.get("labels", {}).get("mlplatform.io/pool") == "gpu"])
    per_node = int(wait.props["environment"]["EXPECTED_GPUS"])
    assert per_node * nodes == flavor["resources"][0]["nominalQuota"] == 6  # 1 node x 2 GPUs x 3 replicas
    no_gpus = capture_stack("dev", {"kindGpuWorkers": 0, "teams": ["bookstore-ml gpus=0"]})
    assert not [r for r in no_gpus.resources if r.name.endswith("gpus-advertised")]


# --- 7. EKS: pods pull the pushed image by digest -----------------------------------------------


def test_eks_pods_reference_the_built_image_by_digest(eks: Capture, dev: Capture) -> None:
    def images(stack: Capture) -> set[str]:
        found = set()
        for m in stack.kubernetes_objects():
            spec = m.get("spec", {})
            if m["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            for c in spec.get("template", {}).get("spec", {}).get("containers", []):
                found.add(c["image"])
        return found

    built = {i for i in images(eks) if "/recommender" in i}
    assert built and all("@sha256:" in i for i in built), built
    # kind has no registry: the loaded image goes by its content tag.
    assert all("@" not in i for i in images(dev) if i.startswith("bookstore-recommender:"))


# --- Structure: the platform knows nothing of the apps -----------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_platform_imports_neither_the_workloads_nor_the_recommender() -> None:
    # capture.py runs the project's entry point (`stack`) under mocks: tooling, not the platform.
    modules = [p for p in (REPO_ROOT / "mlplatform").rglob("*.py") if p.name != "capture.py"]
    assert len(modules) > 10
    for path in modules:
        assert _imports(path) & {"workloads", "recommender", "stack"} == set(), path
    # And at run time, deploying the platform loads none of them.
    probe = "import sys, mlplatform.program, mlplatform.render; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "'workloads'" not in loaded.stdout and "'recommender'" not in loaded.stdout

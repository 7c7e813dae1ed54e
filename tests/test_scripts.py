"""The program's shell scripts (kind cluster, model store, GPU capacity, image build, EKS access),
run for real by bash against stub `kind`, `kubectl` and `docker` executables that record what they
were asked to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mlplatform.cluster import eks, kind
from mlplatform.cluster.pools import POOL_LABEL
from mlplatform.config import parse_config
from workloads import image, training_job

E2E_GPU_METRICS = (Path(__file__).resolve().parents[1] / "scripts" / "e2e_gpu_metrics.sh").read_text()
# The simulated exporter's exposition of one allocated and one free GPU (labels as status-exporter v0.2.0 sets them).
EXPORTED = (
    'DCGM_FI_DEV_GPU_UTIL{Hostname="nvidia-dcgm-exporter-a1b2c3",UUID="GPU-1",container="train",device="nvidia0",'
    'gpu="0",modelName="NVIDIA-A10G",namespace="bookstore-ml",pod="bookstore-train-1-workers-0-0-x"} 100\\n'
    'DCGM_FI_DEV_GPU_UTIL{Hostname="nvidia-dcgm-exporter-a1b2c3",UUID="GPU-2",container="",device="nvidia1",'
    'gpu="1",modelName="NVIDIA-A10G",namespace="",pod=""} 0\\n'
)

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $1 $2" in
  "kind get clusters") printf '%s\\n' $FAKE_CLUSTERS ;;
  "kind get kubeconfig") echo "kubeconfig-of-$4" ;;
  "kind create cluster") for a in "$@"; do if [ -f "$a" ]; then cp "$a" "$STUB_LOG.config"; fi; done ;;
  "kubectl --kubeconfig"*)
    case "$*" in
      *" get nodes "*) printf '%s\\n' $FAKE_NODES ;;
      *" get node/"*) printf '%s' "$FAKE_GPUS" ;;
      *" auth can-i "*) echo "$FAKE_CAN_I"; [ "$FAKE_CAN_I" = yes ] ;;
      *" get jobset "*Completed*status*) printf '%s' "$FAKE_COMPLETED" ;;
      *" get jobset "*Failed*status*) printf '%s' "$FAKE_FAILED" ;;
      *" get jobset "*Failed*message*) printf '%s' "$FAKE_FAILED_MESSAGE" ;;
      *" get workloads "*) printf '%s' "$FAKE_ACTIVE" ;;
      *" get pods "*) printf "$FAKE_PODS" ;;
      *" get --raw "*) printf "$FAKE_METRICS" ;;
    esac ;;
  "docker buildx version") [ -n "$FAKE_BUILDX" ] ;;
  "chmod"*) exit 1 ;;
esac
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl", "docker"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "calls.log")}


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)


def create_env(stubs: dict[str, str], tmp_path: Path, **fake: str) -> dict[str, str]:
    config = kind.kind_config(parse_config({}, stack="dev"))
    return {
        **stubs,
        "KIND_CLUSTER": "ml-platform",
        "KIND_CONFIG": yaml.safe_dump(config),
        "MODEL_STORE": str(tmp_path / "store"),
        "POOL_LABEL": POOL_LABEL,
        **fake,
    }


def test_create_makes_the_cluster_from_the_generated_config(stubs: dict[str, str], tmp_path: Path) -> None:
    done = run(kind._CREATE, create_env(stubs, tmp_path, FAKE_CLUSTERS="other"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kubeconfig-of-ml-platform"  # stdout is the kubeconfig, nothing else
    assert yaml.safe_load(Path(stubs["STUB_LOG"] + ".config").read_text())["nodes"][2]["labels"][POOL_LABEL] == "gpu"


@pytest.mark.parametrize("nodes", ["node/ml-platform-worker", ""])
def test_create_refuses_any_existing_cluster_of_that_name(stubs: dict[str, str], tmp_path: Path, nodes: str) -> None:
    # Create runs only when the state has no cluster: adopting one (even one this stack made
    # before its state was lost) would make every object fail with AlreadyExists.
    done = run(kind._CREATE, create_env(stubs, tmp_path, FAKE_CLUSTERS="ml-platform", FAKE_NODES=nodes))
    assert done.returncode == 1
    assert "already exists, but this stack's state does not record it" in done.stderr
    assert "kind delete cluster --name ml-platform" in done.stderr and "ml-platform:clusterName" in done.stderr
    assert "kind create" not in Path(stubs["STUB_LOG"]).read_text()


def test_update_keeps_the_cluster_and_rereads_its_kubeconfig(stubs: dict[str, str], tmp_path: Path) -> None:
    done = run(kind._UPDATE, create_env(stubs, tmp_path, FAKE_CLUSTERS="ml-platform"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kubeconfig-of-ml-platform"
    assert "kind create" not in Path(stubs["STUB_LOG"]).read_text()
    gone = run(kind._UPDATE, create_env(stubs, tmp_path, FAKE_CLUSTERS="other"))
    assert gone.returncode == 1 and "is gone" in gone.stderr and "--replace" in gone.stderr


def test_model_store_dirs_are_made_writable_for_every_team(tmp_path: Path) -> None:
    store = tmp_path / "data" / "models"  # made from nothing, as after a wiped home or a first run
    env = {"PATH": os.environ["PATH"], "MODEL_STORE": str(store), "TEAMS": "bookstore-ml search-ml"}
    done = run(kind._STORE_DIRS, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(store)  # the cluster's mount waits for this path
    for team in ("bookstore-ml", "search-ml"):
        assert (store / team).stat().st_mode & 0o777 == 0o777
    again = run(kind._STORE_DIRS, env)  # every run: idempotent
    assert again.returncode == 0, again.stderr


def test_a_store_directory_the_user_cannot_open_up_is_refused_with_the_fix(
    stubs: dict[str, str], tmp_path: Path
) -> None:
    (Path(stubs["PATH"].split(":")[0]) / "chmod").write_text(STUB)  # chmod fails, as on a root-owned dir
    (Path(stubs["PATH"].split(":")[0]) / "chmod").chmod(0o755)
    done = run(kind._STORE_DIRS, {**stubs, "MODEL_STORE": str(tmp_path / "models"), "TEAMS": "bookstore-ml"})
    assert done.returncode == 1
    assert "sudo chown -R" in done.stderr and "ml-platform:kindModelStorePath" in done.stderr


@pytest.mark.parametrize(
    ("nodes", "gpus", "ok"),
    [
        ("node/ml-platform-worker2 node/ml-platform-worker3", "4", True),
        ("node/ml-platform-worker2", "", False),  # no device plugin yet
        ("node/ml-platform-worker2", "0", False),
        ("node/ml-platform-worker2", "2", False),  # fewer than Kueue's quota counts on it
        ("node/ml-platform-worker2", "8", False),  # more: the quota would leave GPUs idle
        ("", "4", False),  # no GPU node at all
    ],
)
def test_gpu_wait_passes_only_when_every_gpu_node_advertises_what_the_quota_counts(
    stubs: dict[str, str], nodes: str, gpus: str, ok: bool
) -> None:
    env = {**stubs, "KUBECONFIG_DATA": "kc", "GPU_SELECTOR": f"{POOL_LABEL}=gpu", "GPU_RESOURCE": "nvidia.com/gpu",
           "EXPECTED_GPUS": "4", "TIMEOUT_SECONDS": "0", "FAKE_NODES": nodes, "FAKE_GPUS": gpus}  # fmt: skip
    done = run(kind._WAIT_FOR_GPUS, env)
    assert (done.returncode == 0) is ok, done.stderr
    if ok:
        assert done.stdout.strip() == "2 GPU nodes advertise 4 nvidia.com/gpu each"
    else:
        assert "the 4 nvidia.com/gpu each" in done.stderr and "device-plugin" in done.stderr
        assert (f"ml-platform-worker2={gpus or 0}" if nodes else f"no node labelled {POOL_LABEL}=gpu") in done.stderr


@pytest.mark.parametrize(
    ("pods", "found"),
    [
        ("bookstore-train-1-workers-0-0-x Running 1\\nbookstore-train-1-prepare-0-0-y Running \\n", True),
        ("bookstore-train-1-workers-0-0-x Pending 1\\n", False),  # not running (yet)
        ("bookstore-train-1-prepare-0-0-y Running \\n", False),  # running, but holds no GPU
        ("bookstore-train-1-workers-0-1-z Running 1\\n", False),  # holds a GPU the exporter does not show
    ],
)
def test_e2e_gpu_check_finds_the_series_of_a_running_training_pods_gpu(
    stubs: dict[str, str], tmp_path: Path, pods: str, found: bool
) -> None:
    out = tmp_path / "series.log"
    env = {**stubs, "TIMEOUT_SECONDS": "0", "FAKE_PODS": pods, "FAKE_METRICS": EXPORTED}
    done = subprocess.run(["bash", "-c", E2E_GPU_METRICS, "e2e_gpu_metrics.sh", str(out)], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert (done.returncode == 0) is found, done.stderr
    if found:
        assert (
            out.read_text().startswith("DCGM_FI_DEV_GPU_UTIL{")
            and 'pod="bookstore-train-1-workers-0-0-x"' in out.read_text()
        )
    else:
        assert (
            not out.exists() and "no DCGM_FI_DEV_GPU_UTIL series for the GPU of a running training pod" in done.stderr
        )
    log = Path(stubs["STUB_LOG"]).read_text()
    assert "-n bookstore-ml get pods -l app.kubernetes.io/name=bookstore-train" in log


@pytest.mark.parametrize("buildx", ["yes", ""])
def test_image_build_uses_buildx_when_present_and_the_legacy_builder_otherwise(
    stubs: dict[str, str], buildx: str
) -> None:
    env = {**stubs, "IMAGE": "rec:abc", "DOCKERFILE": "Dockerfile", "CONTEXT": ".", "KIND_CLUSTER": "ml-platform",
           "FAKE_BUILDX": buildx}  # fmt: skip
    done = run(image._BUILD_AND_LOAD, env)
    assert done.returncode == 0, done.stderr
    (build,) = [line for line in Path(stubs["STUB_LOG"]).read_text().splitlines() if line.startswith("docker build ")]
    # Attestation flags only where BuildKit understands them; the legacy builder writes none.
    assert ("--provenance=false --sbom=false" in build) is bool(buildx)
    assert done.stdout.strip() == "rec:abc"


def test_eks_provider_waits_until_the_deployer_is_let_in(stubs: dict[str, str]) -> None:
    env = {**stubs, "KUBECONFIG_DATA": "the-kubeconfig", "TIMEOUT_SECONDS": "0"}
    allowed = run(eks.WAIT_FOR_API, {**env, "FAKE_CAN_I": "yes"})
    assert allowed.returncode == 0 and allowed.stdout == "the-kubeconfig"  # what the provider is given
    refused = run(eks.WAIT_FOR_API, {**env, "FAKE_CAN_I": "error: You must be logged in to the server (Unauthorized)"})
    assert refused.returncode == 1 and refused.stdout == ""
    assert "Unauthorized" in refused.stderr and "eksPublicAccessCidrs" in refused.stderr


@pytest.mark.parametrize(
    ("state", "ok", "says"),
    [
        ({"FAKE_COMPLETED": "True"}, True, "completed"),
        ({"FAKE_FAILED": "True", "FAKE_FAILED_MESSAGE": "jobset failed due to reaching max number of restarts"},
         False, "failed: jobset failed due to reaching max number of restarts"),
        ({"FAKE_ACTIVE": "false"}, False, "deactivated by Kueue"),
        ({}, False, "did not finish within 0s"),
    ],
)  # fmt: skip
def test_a_jobset_run_is_awaited_and_a_failure_fails_fast(
    stubs: dict[str, str], state: dict[str, str], ok: bool, says: str
) -> None:
    # Pulumi's generic await would wait out its whole timeout on a failed JobSet: this step does not.
    env = {**stubs, "KUBECONFIG_DATA": "kc", "NAMESPACE": "team", "RUN": "train-1a2b3c4d", "TIMEOUT_SECONDS": "0",
           **state}  # fmt: skip
    done = run(training_job.AWAIT_RUN, env)
    assert (done.returncode == 0) is ok, done.stderr
    assert says in (done.stdout if ok else done.stderr)

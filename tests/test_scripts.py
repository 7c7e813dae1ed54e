"""The kind cluster's shell scripts, run for real by bash against stub `kind` and `kubectl`
executables that record what they were asked to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mlplatform.cluster import kind
from mlplatform.cluster.pools import POOL_LABEL
from mlplatform.config import parse_config

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $1 $2" in
  "kind get clusters") printf '%s\\n' $FAKE_CLUSTERS ;;
  "kind get kubeconfig") echo "kubeconfig-of-$4" ;;
  "kind create cluster") for a in "$@"; do if [ -f "$a" ]; then cp "$a" "$STUB_LOG.config"; fi; done ;;
  "kubectl --kubeconfig"*) case "$*" in *" get nodes "*) printf '%s\\n' $FAKE_NODES ;; esac ;;
esac
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl"):
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
    assert (tmp_path / "store").stat().st_mode & 0o777 == 0o777


def test_create_adopts_its_own_cluster_without_recreating_it(stubs: dict[str, str], tmp_path: Path) -> None:
    env = create_env(stubs, tmp_path, FAKE_CLUSTERS="ml-platform", FAKE_NODES="node/ml-platform-worker")
    done = run(kind._CREATE, env)
    assert done.returncode == 0, done.stderr
    assert "kind create" not in Path(stubs["STUB_LOG"]).read_text()
    assert done.stdout.strip() == "kubeconfig-of-ml-platform"


def test_create_refuses_a_same_named_cluster_it_did_not_make(stubs: dict[str, str], tmp_path: Path) -> None:
    done = run(kind._CREATE, create_env(stubs, tmp_path, FAKE_CLUSTERS="ml-platform", FAKE_NODES=""))
    assert done.returncode == 1
    assert "exists but was not created by this stack" in done.stderr
    assert "kind delete cluster --name ml-platform" in done.stderr


def test_simulated_gpus_patch_the_status_of_each_gpu_node(stubs: dict[str, str]) -> None:
    env = {
        **stubs,
        "KUBECONFIG_DATA": "kc",
        "GPU_SELECTOR": f"{POOL_LABEL}=gpu",
        "GPUS": "2",
        "GPU_RESOURCE": "nvidia.com/gpu",
        "FAKE_NODES": "node/ml-platform-worker2 node/ml-platform-worker3",
    }
    done = run(kind._SIMULATE_GPUS, env)
    assert done.returncode == 0, done.stderr
    patches = [line for line in Path(stubs["STUB_LOG"]).read_text().splitlines() if " patch " in line]
    assert len(patches) == 2
    for line, node in zip(patches, ("worker2", "worker3"), strict=True):
        assert f"node/ml-platform-{node} --subresource=status --type=json" in line
        assert '"path":"/status/capacity/nvidia.com~1gpu","value":"2"' in line
    assert f"get nodes -l {POOL_LABEL}=gpu -o name" in Path(stubs["STUB_LOG"]).read_text()


def test_model_store_dirs_are_made_writable_for_every_team(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "MODEL_STORE": str(tmp_path), "TEAMS": "bookstore-ml search-ml"}
    done = run(kind._STORE_DIRS, env)
    assert done.returncode == 0, done.stderr
    for team in ("bookstore-ml", "search-ml"):
        assert (tmp_path / team).stat().st_mode & 0o777 == 0o777

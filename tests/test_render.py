"""The render command: what a reviewer sees without a cluster, the same bytes on every run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import render
from mlplatform.capture import REPO_ROOT, Capture, CapturedResource, capture_stack
from mlplatform.config import ConfigError
from tests.stacks import EKS_FROM_HERE
from tests.validation import validate_manifest

RENDER_TIMEOUT_S = 120


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path: two renders are equal iff these are."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def render_in_subprocess(out: Path, hash_seed: str, *argv: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-m", "mlplatform.render", "--out", str(out), *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_render_writes_every_object_release_and_resource(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    out = tmp_path / "dev"
    manifests = [yaml.safe_load(p.read_text()) for p in sorted((out / "kubernetes").glob("*.yaml"))]
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "ClusterQueue", "JobSet", "CronJob", "Deployment", "HorizontalPodAutoscaler"} <= kinds
    for manifest in manifests:
        validate_manifest(manifest)  # what the reviewer reads is what validates
    releases = {p.stem: yaml.safe_load(p.read_text()) for p in (out / "helm").glob("*.yaml")}
    assert releases["kueue"]["chart"] == "oci://registry.k8s.io/kueue/charts/kueue"
    assert releases["kueue"]["version"] == "0.19.2"
    simulator = releases["fake-gpu-operator"]
    assert (simulator["chart"], simulator["version"]) == (
        "oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator",
        "0.2.0",
    )
    others = yaml.safe_load((out / "resources.yaml").read_text())
    assert "command:local:Command" in {r["type"] for r in others}
    assert f"{len(manifests)} Kubernetes objects, {len(releases)} Helm releases" in capsys.readouterr().out


def test_render_never_writes_a_secret(tmp_path: Path) -> None:
    render.main(["--stack", "dev", "--out", str(tmp_path)])
    text = "".join(p.read_text() for p in (tmp_path / "dev").rglob("*.yaml"))
    assert "mock-token" not in text  # the (mock) kubeconfig's credential
    others = yaml.safe_load((tmp_path / "dev" / "resources.yaml").read_text())
    wait = next(r for r in others if r["name"].endswith("gpus-advertised"))
    assert wait["inputs"]["environment"]["KUBECONFIG_DATA"] == "[secret]"


def test_render_replaces_a_previous_render(tmp_path: Path) -> None:
    stale = tmp_path / "dev" / "kubernetes" / "999-stale.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: Stale\n")
    render.main(["--stack", "dev", "--out", str(tmp_path)])
    assert not stale.exists()


def test_bad_stack_config_is_a_clear_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(stack: str, overrides: object) -> None:
        raise ConfigError(["ml-platform:kindCpuWorkers = -1 is not allowed: an integer >= 1"])

    monkeypatch.setattr(render, "capture_stack", broken)
    assert render.main(["--stack", "dev", "--out", str(tmp_path)]) == 2
    assert "Pulumi.dev.yaml: invalid stack configuration" in capsys.readouterr().err


def test_unknown_stack_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        render.main(["--stack", "prod"])
    assert exit_info.value.code == 2
    assert "unknown stack 'prod': expected one of dev, eks" in capsys.readouterr().err


def test_eks_renders_once_an_address_is_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--stack", "eks", "--out", str(tmp_path)]) == 2
    assert "eksPublicAccessCidrs = [] is not allowed" in capsys.readouterr().err
    argv = ["--stack", "eks", "--out", str(tmp_path), "--set", 'eksPublicAccessCidrs=["203.0.113.7/32"]']
    assert render.main(argv) == 0
    others = yaml.safe_load((tmp_path / "eks" / "resources.yaml").read_text())
    (cluster,) = [r for r in others if r["type"] == "aws:eks/cluster:Cluster"]
    assert cluster["inputs"]["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.7/32"]


def test_a_malformed_set_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        render.main(["--stack", "dev", "--set", "kindGpuWorkers"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_file_names_come_from_identity_not_registration_order(tmp_path: Path) -> None:
    render.main(["--stack", "dev", "--out", str(tmp_path)])
    paths = sorted((tmp_path / "dev" / "kubernetes").glob("*.yaml"))
    assert len(paths) > 10
    for path in paths:
        manifest = yaml.safe_load(path.read_text())
        assert path.name == render.object_file_name(manifest)
        kind, scope, _ = path.name.split(".", 2)
        assert kind == manifest["kind"].lower()
        assert scope == manifest["metadata"].get("namespace", render.CLUSTER_SCOPE)
    assert not [p.name for p in paths if p.name[0].isdigit()], "no sequence numbers"
    names = [p.name for p in paths]
    assert "resourcequota.bookstore-ml.team-quota.yaml" in names
    assert "namespace._cluster.bookstore-ml.yaml" in names  # cluster-scoped


def test_two_renders_in_one_process_are_byte_identical(tmp_path: Path) -> None:
    assert render.main(["--stack", "dev", "--out", str(tmp_path / "a")]) == 0
    assert render.main(["--stack", "dev", "--out", str(tmp_path / "b")]) == 0
    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert len(first) > 20 and first == second


def test_two_processes_with_different_hash_seeds_render_identical_bytes(tmp_path: Path) -> None:
    # The eks stack is the largest; a different PYTHONHASHSEED reorders anything that depends on
    # set or dict-of-hash iteration, and a new process re-decodes the wire Structs.
    argv = ["--stack", "eks", "--set", f"eksPublicAccessCidrs={EKS_FROM_HERE['eksPublicAccessCidrs']}"]
    render_in_subprocess(tmp_path / "a", "1", *argv)
    render_in_subprocess(tmp_path / "b", "2", *argv)
    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert len(first) > 30
    assert sorted(first) == sorted(second)
    assert [p for p in first if first[p] != second[p]] == []


def _resource(name: str, kind: str, inputs: Mapping[str, Any], type_: str = "") -> CapturedResource:
    return CapturedResource(type_ or f"kubernetes:core/v1:{kind}", name, f"urn:{name}", "", True, dict(inputs))


def test_neither_registration_order_nor_key_order_reaches_the_output(tmp_path: Path) -> None:
    quota = {
        "kind": "ResourceQuota",
        "apiVersion": "v1",
        "spec": {"hard": {"requests.cpu": "8", "pods": "10"}},
        "metadata": {"namespace": "team-a", "name": "team-quota", "labels": {"b": "2", "a": "1"}},
    }
    reordered = {
        "metadata": {"labels": {"a": "1", "b": "2"}, "name": "team-quota", "namespace": "team-a"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "8"}},
        "apiVersion": "v1",
        "kind": "ResourceQuota",
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    command = {"create": "echo hi", "environment": {"Z": "1", "A": "2"}}
    one = Capture(
        "s",
        [
            _resource("ns", "Namespace", namespace),
            _resource("q", "ResourceQuota", quota),
            _resource("b-cmd", "", command, "command:local:Command"),
            _resource("a-cmd", "", command, "command:local:Command"),
        ],
    )
    two = Capture(
        "s",
        [
            _resource("a-cmd", "", command, "command:local:Command"),
            _resource("q", "ResourceQuota", reordered),
            _resource("ns", "Namespace", namespace),
            _resource("b-cmd", "", command, "command:local:Command"),
        ],
    )
    render.write_capture(one, tmp_path / "one")
    render.write_capture(two, tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    text = (tmp_path / "one" / "s" / "kubernetes" / "resourcequota.team-a.team-quota.yaml").read_text()
    assert text.startswith("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: team-quota\n  namespace: team-a\n")
    assert text.index("pods:") < text.index("requests.cpu:")  # the rest sorted
    others = yaml.safe_load((tmp_path / "one" / "s" / "resources.yaml").read_text())
    assert [r["name"] for r in others] == ["a-cmd", "b-cmd"]


def test_lists_keep_their_order_and_shared_values_are_not_aliased() -> None:
    shared = {"hostPath": "/data"}
    text = render.dump_yaml({"args": ["--b", "--a"], "mounts": [shared, shared]})
    assert text.index("--b") < text.index("--a")
    assert "&" not in text and "*" not in text


def test_two_objects_with_one_identity_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    twice = Capture("s", [_resource("first", "Namespace", namespace), _resource("second", "Namespace", namespace)])
    with pytest.raises(render.RenderError, match="'second' and resource 'first' would both be written"):
        render.write_capture(twice, tmp_path)
    monkeypatch.setattr(render, "capture_stack", lambda stack, overrides: Capture(stack, twice.resources))
    assert render.main(["--stack", "dev", "--out", str(tmp_path)]) == 2
    assert "namespace._cluster.team-a.yaml" in capsys.readouterr().err


def test_a_config_change_changes_only_the_files_of_the_objects_it_changes(tmp_path: Path) -> None:
    render.write_capture(capture_stack("dev"), tmp_path / "base")
    render.write_capture(capture_stack("dev", {"teamGpuQuota": 4}), tmp_path / "head")
    base, head = tree(tmp_path / "base"), tree(tmp_path / "head")
    assert sorted(base) == sorted(head)
    assert [p for p in base if base[p] != head[p]] == ["dev/kubernetes/resourcequota.bookstore-ml.team-quota.yaml"]

"""The render command: what a reviewer sees without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplatform import render
from mlplatform.config import ConfigError
from tests.validation import has_schema, validate_manifest


def test_render_writes_every_object_release_and_resource(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    out = tmp_path / "dev"
    manifests = [yaml.safe_load(p.read_text()) for p in sorted((out / "kubernetes").glob("*.yaml"))]
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "ClusterQueue", "Job", "CronJob", "Deployment", "HorizontalPodAutoscaler"} <= kinds
    for manifest in filter(has_schema, manifests):
        validate_manifest(manifest)  # what the reviewer reads is what validates
    releases = {p.stem: yaml.safe_load(p.read_text()) for p in (out / "helm").glob("*.yaml")}
    assert releases["kueue"]["chart"] == "oci://registry.k8s.io/kueue/charts/kueue"
    assert releases["kueue"]["version"] == "0.19.2"
    assert releases["nvidia-device-plugin"]["repository"] == "https://nvidia.github.io/k8s-device-plugin"
    others = yaml.safe_load((out / "resources.yaml").read_text())
    assert "command:local:Command" in {r["type"] for r in others}
    assert f"{len(manifests)} Kubernetes objects, {len(releases)} Helm releases" in capsys.readouterr().out


def test_render_never_writes_a_secret(tmp_path: Path) -> None:
    render.main(["--stack", "dev", "--out", str(tmp_path)])
    text = "".join(p.read_text() for p in (tmp_path / "dev").rglob("*.yaml"))
    assert "mock-token" not in text  # the (mock) kubeconfig's credential
    others = yaml.safe_load((tmp_path / "dev" / "resources.yaml").read_text())
    simulated = next(r for r in others if r["name"].endswith("simulated-gpus"))
    assert simulated["inputs"]["environment"]["KUBECONFIG_DATA"] == "[secret]"


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

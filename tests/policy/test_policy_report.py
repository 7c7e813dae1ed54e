"""The policy pack's verdict for the pull-request comment: the real pack process on a captured stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.capture import Capture, CapturedResource

from . import report
from .builders import container, pod_spec, workload
from .packproc import Diagnostic


def test_markdown_puts_the_verdict_first_and_mandatory_findings_before_advisory() -> None:
    found = [
        Diagnostic("container-requests-limits", "advisory", "urn:pulumi:dev::p::kubernetes:batch/v1:Job::train", "a"),
        Diagnostic("image-pinned", "mandatory", "urn:pulumi:dev::p::kubernetes:apps/v1:Deployment::web", "use <tag>"),
    ]
    text = report.markdown("dev", found)
    assert text.splitlines()[0] == "**Policy pack on `dev`: ❌ 1 mandatory violation** (1 advisory)"
    assert text.index("`image-pinned` on `web`: use &lt;tag&gt;") < text.index("`container-requests-limits` on `train`")
    assert report.markdown("eks", []) == "**Policy pack on `eks`: ✅ no mandatory violations**\n"
    many = [Diagnostic("r", "advisory", "", f"finding {i}") for i in range(report.INLINE_DIAGNOSTICS + 1)]
    assert "<details><summary>11 findings</summary>" in report.markdown("dev", many)
    assert "on `(the whole stack)`" in report.markdown("dev", many)


def test_the_dev_stack_passes(tmp_path: Path) -> None:
    out = tmp_path / "policy.md"
    assert report.main(["--stack", "dev", "--output", str(out)]) == 0
    assert out.read_text().startswith("**Policy pack on `dev`: ✅ no mandatory violations**")


def test_a_mandatory_violation_fails_and_is_named(
    dev: Capture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    privileged = container()
    privileged["securityContext"]["privileged"] = True
    broken = workload("Deployment", "broken-privileged", spec=pod_spec(privileged))
    planted = CapturedResource(broken.type, broken.name, broken.urn, "", True, dict(broken.props))
    monkeypatch.setattr(report, "capture_stack", lambda stack, overrides: Capture(stack, [*dev.resources, planted]))
    assert report.main(["--stack", "dev"]) == 1
    out = capsys.readouterr().out
    assert "❌ 1 mandatory violation" in out
    assert "- **mandatory** `pod-security-restricted` on `broken-privileged`:" in out


def test_a_stack_that_cannot_be_captured_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--stack", "eks"]) == 2  # Pulumi.eks.yaml leaves the API's CIDRs to each user
    err = capsys.readouterr().err
    assert err.startswith("error: Pulumi.eks.yaml: ") and "eksPublicAccessCidrs" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        report.main(["--stack", "dev", "--set", "teamGpuQuota"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["--stack", "prod"])
    assert "unknown stack 'prod'" in capsys.readouterr().err

"""scripts/pr_report.sh: the pull-request comment, built offline from a base and a head checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlplatform.capture import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "pr_report.sh"
MARKER = "<!-- ml-platform:pull-request-report -->"


def run(base: Path, out: Path, *, python_head: str = sys.executable) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON_HEAD": python_head, "PYTHON_BASE": sys.executable, "STACKS": "dev"}
    return subprocess.run(
        ["bash", str(SCRIPT), str(base), str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_same_base_and_head_is_no_change_and_a_passing_pack(tmp_path: Path) -> None:
    out = tmp_path / "comment.md"
    done = run(REPO_ROOT, out)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.splitlines()[0] == MARKER  # the workflow finds and updates its one comment by this
    assert "**Desired state: no changes** (dev)" in text
    assert "### Upgrade plan" not in text  # only when a version changes
    assert "**Policy pack on `dev`: ✅ no mandatory violations**" in text
    assert text.index("### Desired-state diff") < text.index("### Policy pack")


def test_a_base_that_does_not_render_is_said_not_failed(tmp_path: Path) -> None:
    out = tmp_path / "comment.md"
    done = run(tmp_path, out)  # an empty directory: no program to render
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "The base branch could not be rendered for stack `dev`, so it is not compared" in text
    assert "### Desired-state diff" not in text and "✅ no mandatory violations" in text


def test_a_head_that_does_not_render_fails_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "comment.md"
    false = shutil.which("false")
    assert false
    done = run(REPO_ROOT, out, python_head=false)
    assert done.returncode == 1
    text = out.read_text()
    assert "**The pull request does not render stack `dev`:**" in text
    assert "**The policy pack could not judge stack `dev`:**" in text


def test_usage(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "usage: bash scripts/pr_report.sh BASE_CHECKOUT OUT_FILE" in done.stderr
    done = run(tmp_path / "missing", tmp_path / "out.md")
    assert done.returncode == 2 and "base checkout" in done.stderr and "does not exist" in done.stderr


def test_a_version_change_adds_the_upgrade_plan_beside_the_diff(tmp_path: Path) -> None:
    # The base: this commit with Kueue one patch release back (chart and image).
    base = tmp_path / "base"
    base.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    pins = base / "mlplatform" / "versions.py"
    text = pins.read_text()
    older = text.replace('version="0.19.2", crds=KUEUE_CRDS', 'version="0.19.1", crds=KUEUE_CRDS').replace(
        'kueue_image=("registry.k8s.io/kueue/kueue", "v0.19.2")',
        'kueue_image=("registry.k8s.io/kueue/kueue", "v0.19.1")',
    )
    assert older.count("0.19.1") == 2
    pins.write_text(older)
    out = tmp_path / "comment.md"
    done = run(base, out)
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert report.index("### Desired-state diff") < report.index("### Upgrade plan") < report.index("### Policy pack")
    assert "Helm release kueue-system/kueue: oci://registry.k8s.io/kueue/charts/kueue 0.19.1 -> 0.19.2" in report
    assert "image controllerManager.manager.image.tag: v0.19.1 -> v0.19.2" in report
    assert "CRDs: templated, kept current by the Helm release" in report


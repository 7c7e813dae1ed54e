"""The GitHub workflows, validated offline: they parse, pin every action to a commit SHA with its
version in a comment, run only files that exist here, and name objects the dev stack creates."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import versions
from mlplatform.capture import REPO_ROOT, Capture

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s*#\s*v\d+(\.\d+){0,2}\b")
FILE_TOKEN = re.compile(r"^(?:\./)?[\w.-]+(?:/[\w.-]+)*\.(?:sh|py|txt|ya?ml|json|toml|cfg)$")
K8S_REF = re.compile(r"^(job|deployment|svc|service)/([a-z0-9-]+)$")
KINDS = {"job": "Job", "deployment": "Deployment", "svc": "Service", "service": "Service"}


def load(path: Path) -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def run_tokens(doc: dict[str, Any]) -> list[list[str]]:
    """Each line of each ``run:`` script, split as the shell would (comments dropped)."""
    lines = []
    for step in steps(doc):
        for line in str(step.get("run", "")).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(shlex.split(line, comments=True))
    return lines


def pr_workflow() -> dict[str, Any]:
    return load(REPO_ROOT / ".github" / "workflows" / "pull-request.yml")


def test_there_are_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["pull-request.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_parses_with_bounded_jobs_on_pinned_runners(path: Path) -> None:
    doc = load(path)
    assert doc["on"] and doc["jobs"], f"{path.name}: needs triggers and jobs"
    for name, job in doc["jobs"].items():
        assert not str(job["runs-on"]).endswith("-latest"), f"{path.name}:{name}: pin the runner image"
        assert 0 < int(job["timeout-minutes"]) <= 90, f"{path.name}:{name}: bound the job's time"
        assert job["steps"], f"{path.name}:{name}: no steps"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_sha_with_its_version(path: Path) -> None:
    uses = [m for m in map(USES.match, path.read_text().splitlines()) if m]
    assert uses, f"{path.name}: no actions at all?"
    for match in uses:
        ref = match["ref"]
        if ref.startswith("./"):
            assert (REPO_ROOT / ref).exists(), f"{path.name}: local action {ref} does not exist"
            continue
        assert PINNED.match(ref), f"{path.name}: pin {ref} to a full commit SHA"
        assert VERSION_COMMENT.match(match["comment"]), f"{path.name}: say which version {ref} is (# vX.Y.Z)"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_commands_reference_files_that_exist(path: Path) -> None:
    doc = load(path)
    referenced = set()
    for tokens in run_tokens(doc):
        for i, token in enumerate(tokens):
            after_flag = i > 0 and tokens[i - 1] in ("bash", "sh", "python", "-r", "--policy-pack")
            # Skip variables, absolute paths, flags and the outputs the job itself writes.
            skip = token.startswith(("$", "/", "-", "~")) or token.endswith((".json", ".log"))
            if (FILE_TOKEN.match(token) or after_flag) and not skip:
                referenced.add(token)
    for step in steps(doc):
        for key in ("policyPacks", "work-dir"):
            if key in step.get("with", {}):
                referenced.add(str(step["with"][key]))
    missing = sorted(r for r in referenced if not (REPO_ROOT / r).exists())
    assert not missing, f"{path.name}: run commands reference files that do not exist: {missing}"
    assert "scripts/test.sh" in referenced and "policy" in referenced


def test_pr_workflow_tests_previews_with_the_pack_and_comments() -> None:
    doc = pr_workflow()
    assert "pull_request" in doc["on"]
    assert ["bash", "scripts/test.sh"] in run_tokens({"jobs": {"tests": doc["jobs"]["tests"]}})
    [preview] = [s for s in doc["jobs"]["preview"]["steps"] if s.get("with", {}).get("command") == "preview"]
    assert preview["with"]["stack-name"] == "dev" and preview["with"]["policyPacks"] == "policy"
    assert preview["with"]["comment-on-pr"] is True
    assert "continue-on-error" not in preview, "a mandatory violation must fail the check"
    assert (REPO_ROOT / "policy" / "PulumiPolicy.yaml").exists()


def test_pinned_tool_versions_match_the_repository() -> None:
    doc = pr_workflow()
    pulumi_pin = re.search(r"^pulumi==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert pulumi_pin
    for step in steps(doc):
        with_ = step.get("with", {})
        if "pulumi-version" in with_:
            assert str(with_["pulumi-version"]) == pulumi_pin[1], "CLI and SDK versions must match"
        if str(step.get("uses", "")).startswith("helm/kind-action@"):
            assert with_["version"] == versions.KIND_VERSION


def _real_urn(mock_urn: str) -> str:
    """Mocks put the root stack's type in its children's type chain; the engine does not."""
    return mock_urn.replace("::pulumi:pulumi:Stack$", "::")


def test_targeted_urns_and_named_objects_exist_in_the_dev_stack(dev: Capture) -> None:
    doc = pr_workflow()
    urns = {_real_urn(r.urn) for r in dev.resources}
    targets = [t for s in steps(doc) for t in str(s.get("with", {}).get("target", "")).split()]
    assert targets, "the preview job creates the cluster with a targeted up"
    assert not [t for t in targets if t not in urns], f"targets not in the dev stack: {sorted(urns)[:5]}..."
    objects = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in dev.kubernetes_objects()}
    named = 0
    for tokens in run_tokens(doc):
        if "-n" in tokens:
            namespace = tokens[tokens.index("-n") + 1]
            for token in tokens:
                match = K8S_REF.match(token)
                if match:
                    named += 1
                    assert (KINDS[match[1]], namespace, match[2]) in objects, f"{token} in {namespace} is not in dev"
    assert named >= 3  # the training Job, the serving Deployment and its Service

"""The GitHub workflows, validated offline: they parse, pin every action to a commit SHA with its
version in a comment, run only files that exist here, name objects the dev stack creates, run the
whole lifecycle on kind in order (with an upgrade from the previous release's versions while the
recommender is polled), and post one comment with the desired-state diff."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from mlplatform import versions
from mlplatform.capture import REPO_ROOT, Capture, capture_stack, plain
from mlplatform.preview_check import Step

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s*#\s*v\d+(\.\d+){0,2}\b")
FILE_TOKEN = re.compile(r"^(?:\./)?[\w.-]+(?:/[\w.-]+)*\.(?:sh|py|txt|ya?ml|json|toml|cfg)$")
K8S_REF = re.compile(r"^(job|deployment|svc|service|resourcequota)/([a-z0-9-]+)$")
KINDS = {
    "job": "Job",
    "deployment": "Deployment",
    "svc": "Service",
    "service": "Service",
    "resourcequota": "ResourceQuota",
}
MARKER = "<!-- ml-platform:pull-request-report -->"


def load(path: Path) -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def job_steps(name: str) -> list[dict[str, Any]]:
    return list(pr_workflow()["jobs"][name]["steps"])


def step_lines(step: dict[str, Any]) -> list[list[str]]:
    return run_tokens({"jobs": {"one": {"steps": [step]}}})


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


def test_pr_workflow_tests_and_previews_with_the_pack() -> None:
    doc = pr_workflow()
    assert "pull_request" in doc["on"]
    assert ["bash", "scripts/test.sh"] in run_tokens({"jobs": {"tests": doc["jobs"]["tests"]}})
    [preview] = [s for s in doc["jobs"]["preview"]["steps"] if s.get("with", {}).get("command") == "preview"]
    assert preview["with"]["stack-name"] == "dev" and preview["with"]["policyPacks"] == "policy"
    assert "continue-on-error" not in preview, "a mandatory violation must fail the check"
    assert (REPO_ROOT / "policy" / "PulumiPolicy.yaml").exists()


def test_only_the_diff_job_comments_and_it_updates_one_comment() -> None:
    doc = pr_workflow()
    # A preview against a throwaway cluster shows every resource as a create: it must not comment.
    assert not [s for s in steps(doc) if s.get("with", {}).get("comment-on-pr") not in (None, False)]
    writers = [name for name, job in doc["jobs"].items() if "write" in (job.get("permissions") or {}).values()]
    assert writers == ["diff"] and doc["permissions"] == {"contents": "read"}
    commenting = [s for s in job_steps("diff") if "gh api" in str(s.get("run", ""))]
    assert len(commenting) == 1, "one step posts or updates the one comment"
    [comment] = commenting
    assert comment["env"]["MARKER"] == MARKER
    lines = step_lines(comment)
    assert any("PATCH" in t and any(a.startswith("repos/$REPO/issues/comments/") for a in t) for t in lines)
    assert any("POST" in t and "repos/$REPO/issues/$PR/comments" in t for t in lines)
    assert "github-actions[bot]" in comment["run"], "never edit someone else's comment that quotes the marker"
    # The comment body is what scripts/pr_report.sh wrote, and that starts with the same marker.
    assert f"marker='{MARKER}'" in (REPO_ROOT / "scripts" / "pr_report.sh").read_text()


def test_the_diff_job_renders_the_base_and_the_head_without_a_cluster() -> None:
    diff = job_steps("diff")
    checkouts = [s for s in diff if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert [c.get("with", {}).get("path") for c in checkouts] == [None, ".base"]
    assert checkouts[1]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert all(c["with"]["persist-credentials"] is False for c in checkouts), "the job runs the pull request's code"
    [report] = [s for s in diff if s.get("id") == "report"]
    assert step_lines(report) == [["bash", "scripts/pr_report.sh", ".base", "$RUNNER_TEMP/pr-report.md"]]
    assert report["continue-on-error"] is True
    [fail] = [s for s in diff if s.get("if") == "steps.report.outcome == 'failure'"]
    assert diff.index(fail) == len(diff) - 1 and "exit 1" in fail["run"], "post the comment, then fail"
    assert not [
        s for s in diff if "kind-action" in str(s.get("uses", "")) or "pulumi/actions" in str(s.get("uses", ""))
    ]
    [base_venv] = [s for s in diff if s.get("working-directory") == ".base"]
    assert "-r requirements.txt" in base_venv["run"], "the base renders with its own pinned requirements"


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
            # kubectl within the server's minor (the action's default is 1.31 against a 1.34 cluster).
            assert re.fullmatch(rf"v{re.escape(versions.KUBERNETES_VERSION)}\.\d+", str(with_["kubectl_version"]))


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
    assert named >= 3  # the serving Deployment, its Service, the team quota
    assert not [t for tokens in run_tokens(doc) for t in tokens if t.startswith("job/")], (
        "the training Job's name is derived from its spec's hash: select it by label"
    )


def test_label_selectors_select_objects_of_the_dev_stack(dev: Capture) -> None:
    selected = 0
    for tokens in run_tokens(pr_workflow()):
        if "-l" not in tokens or "-n" not in tokens:
            continue
        namespace, selector = tokens[tokens.index("-n") + 1], tokens[tokens.index("-l") + 1]
        wanted = dict(pair.split("=", 1) for pair in selector.split(","))
        kinds = {"job": "Job", "jobset": "JobSet", "pods": "Pod"}
        kind = next((kinds[t] for t in tokens if t in kinds), None)
        matches = [
            m
            for m in dev.kubernetes_objects()
            if m["metadata"].get("namespace") == namespace
            and (kind is None or m["kind"] == kind)
            and wanted.items() <= (m["metadata"].get("labels") or {}).items()
        ]
        assert matches, f"-l {selector} in {namespace} selects nothing in the dev stack"
        selected += 1
    assert selected >= 1  # the training run (a JobSet on dev), waited for by label


# The lifecycle, in order: each entry must match a run line after the previous one's.
LIFECYCLE: list[tuple[str, Any]] = [
    ("up", lambda t: t[:2] == ["pulumi", "up"] and "--refresh" not in t),
    ("training complete", lambda t: t[:1] == ["kubectl"] and "--for=condition=Completed" in t and "jobset" in t),
    ("serving ready", lambda t: t[:1] == ["kubectl"] and "rollout" in t and "status" in t),
    ("one recommendation", lambda t: "curl" in t),
    ("a second preview plans nothing", lambda t: t[:2] == ["pulumi", "preview"] and "--expect-no-changes" in t),
    (
        "up --refresh changes nothing",
        lambda t: t[:2] == ["pulumi", "up"] and {"--refresh", "--expect-no-changes"} <= set(t),
    ),
    ("one team quota changed", lambda t: t[:3] == ["pulumi", "config", "set"] and "ml-platform:teamGpuQuota" in t),
    ("its preview as JSON", lambda t: t[:2] == ["pulumi", "preview"] and "--json" in t),
    ("exactly one update", lambda t: "mlplatform.preview_check" in t and "--expect" in t),
    ("the second up", lambda t: t[:2] == ["pulumi", "up"] and "--refresh" not in t),
    ("the quota is live", lambda t: "resourcequota/team-quota" in t),
    ("destroy", lambda t: t[:2] == ["pulumi", "destroy"]),
    ("no state", lambda t: t[:3] == ["pulumi", "stack", "rm"]),
    ("no kind cluster", lambda t: {"kind", "get", "clusters"} <= set(t)),
    ("no stack left", lambda t: t[:3] == ["pulumi", "stack", "ls"]),
]


def lifecycle_lines() -> list[list[str]]:
    """The e2e job's run lines, without conditional steps (diagnostics, clean-up after a failure)."""
    return [tokens for step in job_steps("e2e") if "if" not in step for tokens in step_lines(step)]


def test_e2e_runs_the_whole_lifecycle_in_order() -> None:
    lines = lifecycle_lines()
    position = -1
    for what, matches in LIFECYCLE:
        later = [i for i, tokens in enumerate(lines) if i > position and matches(tokens)]
        assert later, f"the e2e job does not run '{what}' after the step before it"
        position = later[0]
    e2e = job_steps("e2e")
    assert not [s for s in e2e if "continue-on-error" in s], "every lifecycle step must be able to fail the job"
    assert e2e[-1]["if"] == "failure() || cancelled()" and "kind delete cluster" in e2e[-1]["run"]


def test_the_lifecycle_quota_change_changes_only_the_resource_it_expects() -> None:
    lines = lifecycle_lines()
    [config_set] = [t for t in lines if t[:3] == ["pulumi", "config", "set"] and "ml-platform:teamGpuQuota" in t]
    key, value = config_set[3], config_set[4]
    [check] = [t for t in lines if "mlplatform.preview_check" in t]
    expectations = [check[i + 1] for i, token in enumerate(check) if token == "--expect"]
    assert len(expectations) == 1
    before = {r.urn: (r.type, r.name, plain(r.inputs)) for r in capture_stack("dev").resources}
    after = {r.urn: (r.type, r.name, plain(r.inputs)) for r in capture_stack("dev", {key: value}).resources}
    assert before.keys() == after.keys(), "a quota change must not add or remove resources"
    changed = [after[urn] for urn in after if after[urn] != before[urn]]
    assert [(type_, name) for type_, name, _ in changed] == [("kubernetes:core/v1:ResourceQuota", "bookstore-ml-quota")]
    type_, name, inputs = changed[0]
    assert Step("update", type_, name).matches(expectations[0])
    assert inputs["spec"]["hard"]["requests.nvidia.com/gpu"] == value  # what the workflow then reads back live


def _config_set(key: str, value: str) -> Any:
    return lambda t: t[:3] == ["pulumi", "config", "set"] and t[3:5] == [key, value]


# The upgrade leg, in order: the stack first comes up at the previous release's versions, then one
# `up` moves it to the current ones while the recommender is polled, then nothing is left to change.
UPGRADE: list[tuple[str, Any]] = [
    ("the previous release's versions", _config_set("componentVersions", "previous")),
    ("up at them", lambda t: t[:2] == ["pulumi", "up"] and "--refresh" not in t),
    ("serving ready", lambda t: t[:1] == ["kubectl"] and "rollout" in t and "status" in t),
    ("a loopback port-forward to the recommender", lambda t: "port-forward" in t and "--address" in t),
    ("the poller, in the background", lambda t: "scripts/poll_service.py" in t and t[-1] == "&"),
    ("its pid", lambda t: t == ["poller=$!"]),
    ("the current versions", _config_set("componentVersions", "current")),
    ("up at them", lambda t: t[:2] == ["pulumi", "up"] and "--refresh" not in t),
    ("the poller told to stop", lambda t: t[:1] == ["touch"]),
    ("the poller's verdict", lambda t: t == ["wait", "$poller"]),
    ("a preview that plans nothing", lambda t: t[:2] == ["pulumi", "preview"] and "--expect-no-changes" in t),
]


def test_e2e_upgrades_from_the_previous_release_with_the_recommender_polled_throughout() -> None:
    lines = lifecycle_lines()
    position, found = -1, {}
    for what, matches in UPGRADE:
        later = [i for i, tokens in enumerate(lines) if i > position and matches(tokens)]
        assert later, f"the e2e job does not run '{what}' after the step before it"
        position = found[what] = later[0]
    # Nothing else moves the versions back and forth.
    moves = [t for t in lines if t[:4] == ["pulumi", "config", "set", "componentVersions"]]
    assert [t[4] for t in moves] == ["previous", "current"]
    assert "--policy-pack" in lines[found["up at them"]], "the upgrade is checked by the policy pack too"


def test_the_upgrade_poller_is_bounded_and_polls_the_recommender_over_the_loopback() -> None:
    lines = lifecycle_lines()
    [forward] = [t for t in lines if "port-forward" in t and "--address" in t]
    [poller] = [t for t in lines if "scripts/poll_service.py" in t]
    [curl] = [t for t in lines if t[:1] == ["curl"] or "curl" in t[:3]]
    assert forward[forward.index("--address") + 1] == "127.0.0.1"
    assert forward[forward.index("-n") + 1] == "bookstore-ml" and "svc/bookstore-recommender" in forward
    local_port = next(t for t in forward if re.fullmatch(r"\d+:\d+;?", t)).split(":")[0]
    [url] = [urlparse(t) for t in poller if t.startswith("http")]
    assert (url.hostname, str(url.port)) == ("127.0.0.1", local_port), "poll through the forward, loopback only"
    # The same request step 3 proved answers, on the serving Service's port.
    [asked] = [urlparse("http://" + t) for t in curl if t.startswith("localhost:")]
    assert (url.path, url.query) == (asked.path, asked.query)
    assert forward[-1] == "&" and poller[-1] == "&", "both run beside the upgrade, not before it"
    # Restarted when it dies: under the step's `bash -e` a failing command would end the loop.
    assert forward[0] == "(while" and "||" in forward and "done)" in forward

    def option(name: str) -> str:
        return poller[poller.index(name) + 1]

    assert int(option("--max-requests")) > 0 and 0 < float(option("--max-seconds")) <= 60 * 60
    # The poll must outlast the upgrade yet end within the job's own time limit.
    assert float(option("--max-seconds")) < 60 * int(pr_workflow()["jobs"]["e2e"]["timeout-minutes"])
    [touch] = [t for t in lines if t[:1] == ["touch"]]
    assert touch[1:] == [option("--stop-file")]

"""The desired-state diff: two renders compared object by object, for a pull-request comment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import render_diff
from mlplatform.capture import REPO_ROOT, Capture, CapturedResource, capture_stack
from mlplatform.render import write_capture
from mlplatform.render_diff import ABSENT, Change, diff_renders, diff_values, main

QUOTA = "ResourceQuota bookstore-ml/team-quota"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("base")
    write_capture(capture_stack("dev"), out)
    return out


def render_with(tmp_path: Path, overrides: Mapping[str, Any]) -> Path:
    out = tmp_path / "head"
    write_capture(capture_stack("dev", overrides), out)
    return out


def labels(path_base: Path, path_head: Path) -> dict[str, list[str]]:
    (diff,) = diff_renders(path_base, path_head)
    found: dict[str, list[str]] = {}
    for obj in diff.objects:
        found.setdefault(obj.status, []).append(obj.label)
    return found


def test_identical_renders_have_no_changes(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_capture(capture_stack("dev"), tmp_path)
    assert main([str(base), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "**Desired state: no changes** (dev)" in out
    assert "changed**" not in out and "<details>" not in out


def test_a_team_quota_change_is_one_path_of_one_object(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = render_with(tmp_path, {"teamGpuQuota": 4})
    (diff,) = diff_renders(base, head)
    assert [(o.status, o.label) for o in diff.objects] == [("changed", QUOTA)]
    assert diff.objects[0].changes == (Change("spec.hard.requests.nvidia.com/gpu", "2", "4"),)
    assert main([str(base), str(head)]) == 1
    out = capsys.readouterr().out
    assert "**Desired state: 1 changed, 0 added, 0 removed**" in out
    assert "- `spec.hard.requests.nvidia.com/gpu`: `'2'` → `'4'`" in out
    assert "ClusterQueue" not in out and "Helm release" not in out and "command:local" not in out


def _changed_in_files(base: Path, head: Path) -> set[str]:
    """Labels of the objects whose rendered content differs, read without the diff tool."""
    changed = set()
    for path in sorted((base / "dev").glob("*/*.yaml")):
        old, new = (
            yaml.safe_load(path.read_text()),
            yaml.safe_load((head / "dev" / path.relative_to(base / "dev")).read_text()),
        )
        if old != new:
            if path.parent.name == "helm":
                changed.add(f"Helm release {old['namespace']}/{old['release']}")
            else:
                meta = old["metadata"]
                scope = f"{meta['namespace']}/" if meta.get("namespace") else ""
                changed.add(f"{old['kind']} {scope}{meta['name']}")
    others = {(r["type"], r["name"]): r for r in yaml.safe_load((base / "dev" / "resources.yaml").read_text())}
    for row in yaml.safe_load((head / "dev" / "resources.yaml").read_text()):
        if others[(row["type"], row["name"])] != row:
            changed.add(f"{row['type']} {row['name']}")
    return changed


@pytest.mark.parametrize(
    "overrides",
    [{"gpuTimeSlicingReplicas": 4}, {"kindGpuWorkers": 2}, {"recommenderMaxReplicas": 6}],
    ids=lambda o: next(iter(o)),
)
def test_exactly_the_objects_that_differ_are_shown_changed(
    base: Path, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    head = render_with(tmp_path, overrides)
    (diff,) = diff_renders(base, head)
    assert {o.status for o in diff.objects} == {"changed"}
    assert {o.label for o in diff.objects} == _changed_in_files(base, head) != set()
    assert all(o.changes for o in diff.objects)


def test_helm_values_show_their_changed_paths(base: Path, tmp_path: Path) -> None:
    # Simulated GPUs (dev): time-slicing is more simulated devices per node.
    (simulated,) = diff_renders(base, render_with(tmp_path, {"gpuTimeSlicingReplicas": 4}))
    [simulator] = [o for o in simulated.objects if o.label == "Helm release gpu-operator/fake-gpu-operator"]
    assert [(c.path, c.old, c.new) for c in simulator.changes] == [("values.topology.nodePools.gpu.gpuCount", 2, 8)]
    # Real GPUs: the device plugin's time-slicing config.
    real_base = tmp_path / "real-base"
    write_capture(capture_stack("dev", {"kindSimulateGpus": False}), real_base)
    head = render_with(tmp_path, {"gpuTimeSlicingReplicas": 4, "kindSimulateGpus": False})
    (diff,) = diff_renders(real_base, head)
    [plugin] = [o for o in diff.objects if o.label == "Helm release gpu-system/nvidia-device-plugin"]
    assert [c.path for c in plugin.changes] == ["values.config.default", "values.config.map.default"]
    assert plugin.changes[1].old is ABSENT and "replicas: 4" in plugin.changes[1].new
    queues = [o for o in diff.objects if o.label.startswith("ClusterQueue ")]
    assert any(
        c.path.endswith("flavors[gpu].resources[nvidia.com/gpu].nominalQuota") for q in queues for c in q.changes
    )
    out = render_diff.markdown([diff])
    # The embedded time-slicing config is a line diff, inside a collapsed block.
    assert "<details><summary><b>changed</b> <code>Helm release gpu-system/nvidia-device-plugin</code>" in out
    assert "```diff\n  @@ -0,0 +1,6 @@\n  +version: v1\n" in out


def test_a_new_team_adds_its_objects_and_removing_it_removes_them(base: Path, tmp_path: Path) -> None:
    head = render_with(tmp_path, {"teams": ["bookstore-ml", "search-ml"]})
    forward, backward = labels(base, head), labels(head, base)
    added = forward["added"]
    assert {"Namespace search-ml", "ResourceQuota search-ml/team-quota", "LocalQueue search-ml/default"} <= set(added)
    assert all("search-ml" in label for label in added), added
    assert "removed" not in forward
    assert backward["removed"] == added
    assert "added" not in backward


def test_output_order_is_stable_and_grouped(base: Path, tmp_path: Path) -> None:
    head = render_with(tmp_path, {"teams": ["bookstore-ml", "search-ml"], "teamGpuQuota": 4})
    first = render_diff.markdown(diff_renders(base, head))
    assert first == render_diff.markdown(diff_renders(base, head))
    assert first.index("**changed**") < first.index("<b>added</b>")
    added = [line for line in first.splitlines() if "<b>added</b>" in line]
    assert added == sorted(added, key=lambda line: line.split("<code>")[1])


def _job(name: str, seed: str) -> dict[str, Any]:
    container = {"name": "train", "image": "bookstore-recommender:1", "args": ["pipeline", "--seed", seed]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": {"app.kubernetes.io/name": "bookstore-train"}},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def write_objects(root: Path, *manifests: dict[str, Any]) -> Path:
    resources = [
        CapturedResource(f"kubernetes:{m['apiVersion']}:{m['kind']}", m["metadata"]["name"], "", "", True, m)
        for m in manifests
    ]
    write_capture(Capture("dev", resources), root)
    return root


def test_a_job_renamed_after_its_spec_hash_is_shown_as_replaced(tmp_path: Path) -> None:
    old = write_objects(tmp_path / "a", _job("bookstore-train-1a2b3c4d", "42"))
    new = write_objects(tmp_path / "b", _job("bookstore-train-5e6f7a8b", "43"))
    (diff,) = diff_renders(old, new)
    [replaced] = diff.objects
    assert replaced.status == "replaced"
    assert replaced.old_label == "Job ml/bookstore-train-1a2b3c4d"
    assert replaced.label == "Job ml/bookstore-train-5e6f7a8b"
    assert [c.path for c in replaced.changes] == ["metadata.name", "spec.template.spec.containers[train].args[2]"]
    assert "**replaced** `Job ml/bookstore-train-5e6f7a8b` (was `Job ml/bookstore-train-1a2b3c4d`)" in (
        render_diff.markdown([diff])
    )


def test_two_candidates_for_one_rename_stay_added_and_removed(tmp_path: Path) -> None:
    old = write_objects(tmp_path / "a", _job("train-a", "1"))
    new = write_objects(tmp_path / "b", _job("train-b", "1"), _job("train-c", "1"))
    assert labels(old, new) == {"added": ["Job ml/train-b", "Job ml/train-c"], "removed": ["Job ml/train-a"]}


def test_values_compare_by_type_and_named_items_by_name() -> None:
    assert diff_values({"a": "2"}, {"a": 2}) == [Change("a", "2", 2)]
    assert diff_values({"a": True}, {"a": 1}) == [Change("a", True, 1)]
    assert diff_values({"a": {"b": 1}}, {"a": {"b": 1}}) == []
    old = {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}
    new = {"containers": [{"name": "b", "image": "y:2"}, {"name": "a", "image": "x:1"}]}
    assert diff_values(old, new) == [
        Change("containers[b].image", "y:1", "y:2"),
        Change("containers (order)", ["a", "b"], ["b", "a"]),
    ]
    # An argument inserted: the list is shown whole rather than as every index after it shifting.
    assert diff_values({"args": ["a", "c"]}, {"args": ["a", "b", "c"]}) == [Change("args", ["a", "c"], ["a", "b", "c"])]
    # A new mapping is listed by its leaves; an empty one stays one change.
    assert diff_values({}, {"config": {"map": {"k": "v"}, "name": "n"}}) == [
        Change("config.map.k", ABSENT, "v"),
        Change("config.name", ABSENT, "n"),
    ]
    assert diff_values({"x": {}}, {}) == [Change("x", {}, ABSENT)]


def test_a_render_from_an_older_render_command_compares_by_content(base: Path, tmp_path: Path) -> None:
    # Older renders numbered their files by registration order and kept the wire key order.
    old = tmp_path / "old"
    shutil.copytree(base, old)
    for i, path in enumerate(sorted((old / "dev" / "kubernetes").glob("*.yaml"), reverse=True)):
        manifest = yaml.safe_load(path.read_text())
        path.unlink()
        scrambled = dict(reversed(list(manifest.items())))
        (path.parent / f"{i:03d}-{manifest['kind']}.yaml").write_text(yaml.safe_dump(scrambled, sort_keys=False))
    assert main([str(old), str(base)]) == 0


def test_two_stack_directories_compare_whatever_their_names(base: Path, tmp_path: Path) -> None:
    head = render_with(tmp_path, {"teamGpuQuota": 4})
    shutil.move(head / "dev", tmp_path / "dev-head")
    (diff,) = diff_renders(base / "dev", tmp_path / "dev-head")
    assert diff.stack == "dev-head" and [o.label for o in diff.objects] == [QUOTA]


def test_a_long_diff_is_shortened_to_fit_a_comment(base: Path, tmp_path: Path) -> None:
    head = render_with(tmp_path, {"teams": ["bookstore-ml", "search-ml", "vision-ml"]})
    full = render_diff.markdown(diff_renders(base, head))
    short = render_diff.markdown(diff_renders(base, head), max_chars=2500)
    assert len(short) <= 2500 < len(full)
    assert "left out to fit a comment" in short and "python -m mlplatform.render_diff" in short
    assert short.splitlines()[:3] == full.splitlines()[:3]  # the summary line always stays


def test_text_format_marks_each_object(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = render_with(tmp_path, {"teamGpuQuota": 4})
    assert main([str(base), str(head), "--format", "text"]) == 1
    out = capsys.readouterr().out
    assert f"~ {QUOTA}\n    spec.hard.requests.nvidia.com/gpu: '2' -> '4'\n" in out


def _render_dir(tmp_path: Path) -> Path:
    root = tmp_path / "render" / "dev"
    (root / "kubernetes").mkdir(parents=True)
    (root / "resources.yaml").write_text("[]\n")
    return tmp_path / "render"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist (make it with: python -m mlplatform.render --out"),
        (lambda p: p, "is not a render of python -m mlplatform.render"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is not a directory"),
    ],
    ids=["missing", "not-a-render", "a-file"],
)
def test_a_directory_that_is_not_a_render_is_a_clear_error(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, message: str
) -> None:
    (tmp_path / "unrelated.md").write_text("hello")
    assert main([str(base), str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: head ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("kubernetes/a.yaml", "kind: Job\nmetadata: {name: [unclosed\n", "not valid YAML (line 3, column 1)"),
        ("kubernetes/a.yaml", "kind: Job\nspec: {}\n", "not a Kubernetes object (needs kind and metadata.name)"),
        ("helm/a.yaml", "chart: kueue\n", "not a rendered Helm release"),
        ("resources.yaml", "type: x\n", "expected a list of resources (type, name, inputs), got dict"),
        ("resources.yaml", "- {type: x}\n", "item 0 is not a resource"),
        ("kubernetes/b.bin", "", ""),  # not a .yaml file: ignored
    ],
    ids=["yaml", "k8s-shape", "helm-shape", "resources-shape", "resources-item", "other-file"],
)
def test_a_bad_file_in_a_render_is_named_with_its_problem(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, content: str, message: str
) -> None:
    render = _render_dir(tmp_path)
    (render / "dev" / file).parent.mkdir(parents=True, exist_ok=True)
    (render / "dev" / file).write_text(content)
    code = main([str(render), str(render)])
    err = capsys.readouterr().err
    if not message:
        assert code == 0 and err == ""
        return
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: {render / 'dev' / file}: ") and message in err


def test_two_files_with_one_object_are_refused(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    quota = copy / "dev" / "kubernetes" / "resourcequota.bookstore-ml.team-quota.yaml"
    shutil.copy(quota, quota.with_name("copy.yaml"))
    assert main([str(base), str(copy)]) == 2
    assert f"{QUOTA} is in both" in capsys.readouterr().err


def test_the_command_line_exit_codes_and_output_file(base: Path, tmp_path: Path) -> None:
    head = render_with(tmp_path, {"teamGpuQuota": 4})

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlplatform.render_diff", *argv],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run(str(base), str(base)).returncode == 0
    changed = run(str(base), str(head), "--output", str(tmp_path / "diff.md"))
    assert changed.returncode == 1 and changed.stdout == ""
    assert QUOTA in (tmp_path / "diff.md").read_text()
    broken = run(str(base), str(tmp_path / "nowhere"))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr and "does not exist" in broken.stderr
    usage = run(str(base))
    assert usage.returncode == 2 and "the following arguments are required: head" in usage.stderr

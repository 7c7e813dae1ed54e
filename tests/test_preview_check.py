"""The preview check the lifecycle workflow relies on: exactly the expected steps, nothing else."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mlplatform.capture import Capture
from mlplatform.preview_check import PreviewError, Step, check, main, planned_changes

QUOTA_STEP = "update:kubernetes:core/v1:ResourceQuota"


def real_urn(mock_urn: str) -> str:
    """Mocks put the root stack's type in its children's type chain; the engine does not."""
    return mock_urn.replace("::pulumi:pulumi:Stack$", "::")


def preview_of(dev: Capture, ops: dict[str, str]) -> dict[str, Any]:
    """A ``pulumi preview --json`` document for the dev stack: ``ops`` by resource name, else same."""
    steps = [
        {"op": ops.get(r.name, "same"), "urn": real_urn(r.urn), "newState": {"type": r.type, "custom": r.custom}}
        for r in dev.resources
    ]
    summary = Counter(str(step["op"]) for step in steps)
    return {"config": {}, "steps": steps, "duration": 1_000_000, "changeSummary": dict(summary)}


def test_the_quota_step_names_the_team_quota_of_the_dev_stack(dev: Capture) -> None:
    preview = preview_of(dev, {"bookstore-ml-quota": "update"})
    assert planned_changes(preview) == [
        Step("update", "kubernetes:core/v1:ResourceQuota", "bookstore-ml-quota", planned_changes(preview)[0].urn)
    ]
    assert check(preview, [QUOTA_STEP]) == []
    assert check(preview, [QUOTA_STEP + "::bookstore-ml-quota"]) == []


def test_any_other_change_is_named(dev: Capture) -> None:
    preview = preview_of(dev, {"bookstore-ml-quota": "update", "ml-platform-kind": "replace"})
    [problem] = check(preview, [QUOTA_STEP])
    assert problem.startswith("unexpected replace:command:local:Command::ml-platform-kind (urn:pulumi:dev::")
    assert check(preview_of(dev, {}), [QUOTA_STEP]) == [f"expected {QUOTA_STEP}, but the preview plans no such step"]
    assert check(preview_of(dev, {}), []) == []  # no expectation: no change at all


def test_reads_and_sames_are_not_changes_and_the_summary_must_agree(dev: Capture) -> None:
    preview = preview_of(dev, {"bookstore-ml-quota": "read"})
    assert check(preview, []) == []
    preview = preview_of(dev, {"bookstore-ml-quota": "update"})
    preview["changeSummary"]["update"] = 2
    assert check(preview, [QUOTA_STEP]) == ["changeSummary counts {'update': 2} but the steps are {'update': 1}"]


def test_the_command_line(dev: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(preview_of(dev, {"bookstore-ml-quota": "update"})))
    assert main([str(path), "--expect", QUOTA_STEP]) == 0
    assert "as expected: update:kubernetes:core/v1:ResourceQuota::bookstore-ml-quota" in capsys.readouterr().out
    assert main([str(path)]) == 1
    assert "unexpected update:kubernetes:core/v1:ResourceQuota::bookstore-ml-quota" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "Expecting value"),
        ("[]", "not a JSON object"),
        ('{"config": {}}', "neither 'steps' nor 'changeSummary'"),
        ('{"steps": [{"op": "same"}]}', "steps[0] has no op and urn"),
        ('{"steps": [{"op": "update", "urn": "quota"}]}', "step URN 'quota' is not a Pulumi URN"),
        ('{"steps": [], "changeSummary": {"update": null}}', "int()"),
    ],
    ids=["empty", "list", "no-steps", "no-urn", "bad-urn", "bad-count"],
)
def test_unreadable_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "preview.json"
    path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and "Traceback" not in err


def test_a_missing_file_and_a_malformed_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "none.json")]) == 2
    assert "No such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "none.json"), "--expect", "update"])
    assert exit_info.value.code == 2
    assert "expected OP:TYPE" in capsys.readouterr().err


def test_planned_changes_rejects_a_non_list() -> None:
    with pytest.raises(PreviewError, match="'steps' is not a list"):
        planned_changes({"steps": {}})

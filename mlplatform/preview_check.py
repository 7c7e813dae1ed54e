"""Check that a ``pulumi preview --json`` plans exactly the changes you expect, and nothing else.

    pulumi preview --stack dev --json > preview.json
    python -m mlplatform.preview_check preview.json --expect 'update:kubernetes:core/v1:ResourceQuota'

Each ``--expect OP:TYPE`` (or ``OP:TYPE::NAME``, NAME being the Pulumi resource name) stands for one
step; without any, no change at all is expected. A step counts as a change unless its op is
``same`` or a read that changed nothing, as for the CLI's ``--expect-no-changes``. The summary's
counts (``changeSummary``) must agree with the steps. The pull-request workflow uses this to prove
that changing one team quota updates that ResourceQuota in place and touches nothing else.

Exit status: 0 as expected, 1 other changes (each listed), 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PreviewError", "Step", "check", "main", "planned_changes"]

# The ops `pulumi ... --expect-no-changes` does not count as changes (pkg/engine ResourceChanges.HasChanges).
NOT_CHANGES = frozenset({"same", "read", "discard", "read-replacement"})


class PreviewError(ValueError):
    """Not the JSON of ``pulumi preview --json``; the message says what is missing."""


@dataclass(frozen=True)
class Step:
    op: str
    type: str
    name: str
    urn: str = ""

    def matches(self, expectation: str) -> bool:
        op, _, rest = expectation.partition(":")
        type_, _, name = rest.partition("::")
        return self.op == op and self.type == type_ and (not name or self.name == name)

    def __str__(self) -> str:
        return f"{self.op}:{self.type}::{self.name}"


def _from_urn(urn: str) -> tuple[str, str]:
    """``urn:pulumi:<stack>::<project>::<parent$...$type>::<name>`` -> (type, name)."""
    parts = urn.split("::", 3)
    if len(parts) != 4 or not parts[0].startswith("urn:pulumi:"):
        raise PreviewError(f"step URN {urn!r} is not a Pulumi URN")
    return parts[2].rsplit("$", 1)[-1], parts[3]


def planned_changes(preview: Mapping[str, Any]) -> list[Step]:
    """Every step of the preview that changes something, in URN order."""
    steps = preview.get("steps")
    steps = [] if steps is None else steps  # omitted when empty
    if not isinstance(steps, list):
        raise PreviewError("'steps' is not a list: is this the output of pulumi preview --json?")
    changes = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("op"), str) or not isinstance(step.get("urn"), str):
            raise PreviewError(f"steps[{i}] has no op and urn: is this the output of pulumi preview --json?")
        if step["op"] not in NOT_CHANGES:
            changes.append(Step(step["op"], *_from_urn(step["urn"]), urn=step["urn"]))
    return sorted(changes, key=lambda s: (s.urn, s.op))


def check(preview: Mapping[str, Any], expected: Sequence[str]) -> list[str]:
    """Problems with ``preview`` against ``expected`` (``OP:TYPE[::NAME]`` per step); empty if none."""
    if "steps" not in preview and "changeSummary" not in preview:
        raise PreviewError("neither 'steps' nor 'changeSummary': is this the output of pulumi preview --json?")
    changes = planned_changes(preview)
    problems = []
    unmatched = list(changes)
    for expectation in expected:
        found = next((s for s in unmatched if s.matches(expectation)), None)
        if found is None:
            problems.append(f"expected {expectation}, but the preview plans no such step")
        else:
            unmatched.remove(found)
    problems += [f"unexpected {step} ({step.urn})" for step in unmatched]
    summary = preview.get("changeSummary") or {}
    if not isinstance(summary, dict):
        raise PreviewError("'changeSummary' is not a mapping of op -> count")
    counted = Counter({op: int(n) for op, n in summary.items() if op not in NOT_CHANGES and int(n)})
    stepped = Counter(step.op for step in changes)
    if counted != stepped:
        problems.append(f"changeSummary counts {dict(counted)} but the steps are {dict(stepped)}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform.preview_check",
        description="Fail unless a pulumi preview --json plans exactly the expected steps. "
        "Exit status: 0 as expected, 1 other changes, 2 unreadable input.",
    )
    parser.add_argument("preview", type=Path, help="the output of pulumi preview --json ('-' for standard input)")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="OP:TYPE[::NAME]",
        help="one expected step, e.g. update:kubernetes:core/v1:ResourceQuota (repeatable; none = no changes)",
    )
    args = parser.parse_args(argv)
    for expectation in args.expect:
        if ":" not in expectation.partition(":")[2]:
            parser.error(f"--expect {expectation!r}: expected OP:TYPE, e.g. update:kubernetes:core/v1:ResourceQuota")
    source = "standard input" if str(args.preview) == "-" else str(args.preview)
    try:
        raw = sys.stdin.read() if source == "standard input" else args.preview.read_text(encoding="utf-8")
        preview = json.loads(raw)
        if not isinstance(preview, dict):
            raise PreviewError("not a JSON object: is this the output of pulumi preview --json?")
        problems = check(preview, args.expect)
    except (OSError, ValueError, TypeError) as err:  # JSON, decoding and PreviewError are ValueErrors
        print(f"error: {source}: {err}", file=sys.stderr)
        return 2
    if problems:
        print(f"{source}: the preview does not plan exactly what was expected:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    planned = ", ".join(map(str, planned_changes(preview))) or "no changes"
    print(f"{source}: as expected: {planned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The policy pack's verdict on a stack, offline, as Markdown for the pull-request comment.

    python -m tests.policy.report --stack dev --output policy-dev.md
    python -m tests.policy.report --stack eks --set 'eksPublicAccessCidrs=["203.0.113.7/32"]'

Captures the stack under mocks (as ``python -m mlplatform.render`` does) and runs the real pack in
``policy/`` as its own process over gRPC, exactly as the Pulumi CLI does (``packproc.py``), with
every rule at its default level. Needs no cluster, cloud account or CLI, so it judges the eks
stack too. Needs ``pulumi-policy`` in this Python (``policy/requirements.txt``).

Exit status: 0 no mandatory violation, 1 mandatory violations (listed), 2 the stack could not be
captured or the pack could not run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from mlplatform.capture import capture_stack, known_stacks
from mlplatform.config import ConfigError
from mlplatform.render import parse_overrides

from .packproc import Diagnostic, pack_process

__all__ = ["main", "markdown"]

INLINE_DIAGNOSTICS = 10  # more than this and the list is collapsed
_LEVEL_ORDER = ("mandatory", "remediate", "advisory", "disabled")


def _resource(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "(the whole stack)"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(stack: str, diagnostics: Sequence[Diagnostic]) -> str:
    """A verdict line for ``stack``, then every diagnostic (mandatory first), collapsed if many."""
    counts = {level: sum(1 for d in diagnostics if d.level == level) for level in _LEVEL_ORDER}
    mandatory = counts["mandatory"]
    verdict = (
        f"❌ {mandatory} mandatory violation{'s' if mandatory != 1 else ''}"
        if mandatory
        else "✅ no mandatory violations"
    )
    others = ", ".join(f"{n} {level}" for level, n in counts.items() if n and level != "mandatory")
    lines = [f"**Policy pack on `{stack}`: {verdict}**" + (f" ({others})" if others else ""), ""]
    ordered = sorted(diagnostics, key=lambda d: (_LEVEL_ORDER.index(d.level), d.policy, _resource(d.urn), d.message))
    items = [
        f"- **{d.level}** `{d.policy}` on `{_resource(d.urn)}`: {_html(' '.join(d.message.split()))}" for d in ordered
    ]
    if len(items) > INLINE_DIAGNOSTICS:
        items = [f"<details><summary>{len(items)} findings</summary>", "", *items, "", "</details>"]
    return "\n".join([*lines, *items]).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.policy.report",
        description="Run the policy pack on a stack captured offline; Markdown verdict. "
        "Exit status: 0 no mandatory violation, 1 mandatory violations, 2 error.",
    )
    parser.add_argument("--stack", default="dev", help="stack name; reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    if args.stack not in known_stacks():
        parser.error(f"unknown stack {args.stack!r}: expected one of {', '.join(known_stacks())}")
    try:
        resources = capture_stack(args.stack, overrides).resources
    except ConfigError as err:
        print(f"error: Pulumi.{args.stack}.yaml: {err}", file=sys.stderr)
        return 2
    try:
        with pack_process(stack=args.stack) as pack:
            pack.configure()
            diagnostics = pack.analyze_all(resources)
    except (AssertionError, RuntimeError, TimeoutError, OSError, grpc.RpcError) as err:
        print(f"error: the policy pack in policy/ could not judge stack {args.stack!r}: {err}", file=sys.stderr)
        return 2
    report = markdown(args.stack, diagnostics)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)
    return 1 if any(d.level == "mandatory" for d in diagnostics) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare two renders object by object: what a change does to the desired state, with no cluster.

    python -m mlplatform.render --stack dev --out /tmp/base    # on the base branch
    python -m mlplatform.render --stack dev --out /tmp/head    # on your branch
    python -m mlplatform.render_diff /tmp/base /tmp/head       # Markdown for a pull-request comment

BASE and HEAD are each a render's output directory (holding ``<stack>/`` directories) or one
stack's directory (holding ``resources.yaml``). Objects are matched by identity read from the
files' content, not their names, so a render made by an older ``mlplatform.render`` compares too:
Kubernetes objects by API group, kind, namespace and name; Helm releases by namespace and release
name (chart, version, repository and every values path); other resources by type and Pulumi name.
An object whose name changed but whose kind, namespace and ``app.kubernetes.io/name`` label did
not (a training Job named after the hash of its spec) is shown as replaced, with its field changes.

Exit status: 0 no changes, 1 changes, 2 bad input (a missing or non-render directory, invalid
YAML, two objects with one identity), like ``diff`` and ``git diff --exit-code``. Secrets are
redacted by the render, so a changed secret value shows no change here.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .render import CLUSTER_SCOPE, dump_yaml, label

__all__ = [
    "ABSENT",
    "Change",
    "ObjectDiff",
    "RenderDiffError",
    "StackDiff",
    "diff_renders",
    "diff_values",
    "load_render",
    "main",
    "markdown",
    "pair_replacements",
    "read_yaml",
    "text",
]

NAME_LABEL = "app.kubernetes.io/name"
INLINE_CHANGES = 8  # more changed paths than this (or any multi-line value) go into a collapsed block
MAX_VALUE_CHARS = 160
DEFAULT_MAX_CHARS = 60_000  # a GitHub comment holds 65,536 characters
_CATEGORY_ORDER = {"kubernetes": 0, "helm": 1, "resource": 2}
_STATUS_ORDER = ("changed", "replaced", "added", "removed")


class RenderDiffError(ValueError):
    """A directory or file that is not a render this tool can read; the message names it and why."""


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class RenderedObject:
    key: tuple[str, ...]  # (category, ...identity), the match key between base and head
    label: str  # what a reviewer reads: "ResourceQuota bookstore-ml/team-quota"
    body: Any
    source: Path
    group_key: tuple[str, ...] | None = None  # what survives a rename, for pairing removed/added

    @property
    def sort_key(self) -> tuple[int, str, tuple[str, ...]]:
        """Kubernetes objects, then Helm releases, then the rest; by what the reviewer reads."""
        return _CATEGORY_ORDER[self.key[0]], self.label, self.key


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    @property
    def block(self) -> bool:
        """Shown as a line diff: a multi-line string (a script, an embedded config) or a long value."""
        return any(
            (isinstance(v, str) and "\n" in v) or len(_one_line(v)) > MAX_VALUE_CHARS for v in (self.old, self.new)
        )


@dataclass(frozen=True)
class ObjectDiff:
    status: str  # changed | replaced | added | removed
    label: str
    changes: tuple[Change, ...] = ()
    body: Any = None  # the whole object, for added ones
    old_label: str = ""  # for replaced ones


@dataclass
class StackDiff:
    stack: str
    objects: list[ObjectDiff] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.objects if o.status == status)


# ---- reading a render -------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    try:
        # libyaml's loader: a render holds megabytes of CRD schemas, which the pure-Python one reads slowly.
        return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RenderDiffError(f"{path}: not valid YAML{where}: {problem}") from err
    except UnicodeDecodeError as err:
        raise RenderDiffError(f"{path}: not a text file (UTF-8): {err.reason}") from err


def _kubernetes_object(path: Path) -> RenderedObject:
    manifest = read_yaml(path)
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    if not isinstance(meta, dict) or not manifest.get("kind") or not meta.get("name"):
        raise RenderDiffError(f"{path}: not a Kubernetes object (needs kind and metadata.name)")
    api_version = str(manifest.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    kind, name, namespace = str(manifest["kind"]), str(meta["name"]), str(meta.get("namespace") or "")
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    app = labels.get(NAME_LABEL) if labels else None
    group_key = ("kubernetes", group, kind, namespace or CLUSTER_SCOPE, str(app)) if app else None
    key = ("kubernetes", group, kind, namespace or CLUSTER_SCOPE, name)
    return RenderedObject(key, label(kind, namespace, name), manifest, path, group_key)


def _helm_release(path: Path) -> RenderedObject:
    release = read_yaml(path)
    if not isinstance(release, dict) or not release.get("release"):
        raise RenderDiffError(f"{path}: not a rendered Helm release (needs release, chart, version, values)")
    namespace, name = str(release.get("namespace") or ""), str(release["release"])
    return RenderedObject(("helm", namespace, name), label("Helm release", namespace, name), release, path)


def _other_resources(path: Path) -> Iterator[RenderedObject]:
    rows = read_yaml(path)
    if rows is None:
        return
    if not isinstance(rows, list):
        raise RenderDiffError(f"{path}: expected a list of resources (type, name, inputs), got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("type") or not row.get("name"):
            raise RenderDiffError(f"{path}: item {i} is not a resource (needs type, name and inputs)")
        resource_type, name = str(row["type"]), str(row["name"])
        yield RenderedObject(("resource", resource_type, name), f"{resource_type} {name}", row.get("inputs"), path)


def _stack_objects(root: Path) -> dict[tuple[str, ...], RenderedObject]:
    found: dict[tuple[str, ...], RenderedObject] = {}
    objects = [
        *(_kubernetes_object(p) for p in sorted((root / "kubernetes").glob("*.yaml"))),
        *(_helm_release(p) for p in sorted((root / "helm").glob("*.yaml"))),
        *_other_resources(root / "resources.yaml"),
    ]
    for obj in objects:
        if obj.key in found:
            raise RenderDiffError(f"{obj.label} is in both {found[obj.key].source} and {obj.source}")
        found[obj.key] = obj
    return found


def load_render(path: Path, role: str = "render") -> dict[str, dict[tuple[str, ...], RenderedObject]]:
    """Stack name -> its objects by identity, from a render directory or one stack's directory."""
    if not path.exists():
        raise RenderDiffError(f"{role} {path} does not exist (make it with: python -m mlplatform.render --out {path})")
    if not path.is_dir():
        raise RenderDiffError(f"{role} {path} is not a directory")
    if (path / "resources.yaml").is_file():
        return {path.name: _stack_objects(path)}
    stacks = sorted(p for p in path.iterdir() if (p / "resources.yaml").is_file())
    if not stacks:
        raise RenderDiffError(
            f"{role} {path} is not a render of python -m mlplatform.render: no resources.yaml in it "
            "or in a stack directory under it"
        )
    return {p.name: _stack_objects(p) for p in stacks}


# ---- comparing --------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down ('2' is not 2, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _names(items: list[Any]) -> list[str] | None:
    """Element names if every element is a mapping with a distinct string ``name`` (containers, env)."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if not items or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return [str(n) for n in names]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def diff_values(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every changed leaf between ``old`` and ``new`` as a dotted path (lists of named items by name)."""
    if _same(old, new):
        return []
    # A new or dropped mapping (a values section, a container): list its leaves.
    if isinstance(old, dict) and old and new is ABSENT:
        return diff_values(old, {}, path)
    if old is ABSENT and isinstance(new, dict) and new:
        return diff_values({}, new, path)
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            changes += diff_values(old.get(key, ABSENT), new.get(key, ABSENT), _join(path, str(key)))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        old_names, new_names = _names(old), _names(new)
        if old_names is not None and new_names is not None:
            changes = []
            by_old, by_new = dict(zip(old_names, old, strict=True)), dict(zip(new_names, new, strict=True))
            for name in sorted(set(by_old) | set(by_new)):
                changes += diff_values(by_old.get(name, ABSENT), by_new.get(name, ABSENT), f"{path}[{name}]")
            common = [n for n in old_names if n in by_new]
            if [n for n in new_names if n in by_old] != common:
                changes.append(Change(f"{path} (order)", common, [n for n in new_names if n in by_old]))
            return changes
        scalars = all(not isinstance(v, (dict, list)) for v in [*old, *new])
        # Index by index, except a list of scalars that grew or shrank (args: one insertion would
        # shift every later index): that one is shown whole.
        if not scalars or len(old) == len(new):
            return [
                change
                for i in range(max(len(old), len(new)))
                for change in diff_values(
                    old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT, f"{path}[{i}]"
                )
            ]
    return [Change(path or "(whole object)", old, new)]


def pair_replacements(
    removed: list[RenderedObject], added: list[RenderedObject]
) -> list[tuple[RenderedObject, RenderedObject]]:
    """One removed and one added object of the same kind, namespace and app name: a rename."""
    by_group: dict[tuple[str, ...], tuple[list[RenderedObject], list[RenderedObject]]] = defaultdict(lambda: ([], []))
    for obj in removed:
        if obj.group_key:
            by_group[obj.group_key][0].append(obj)
    for obj in added:
        if obj.group_key:
            by_group[obj.group_key][1].append(obj)
    return [(olds[0], news[0]) for olds, news in by_group.values() if len(olds) == 1 and len(news) == 1]


def _diff_stack(
    stack: str, base: dict[tuple[str, ...], RenderedObject], head: dict[tuple[str, ...], RenderedObject]
) -> StackDiff:
    result = StackDiff(stack)
    removed = [base[k] for k in base.keys() - head.keys()]
    added = [head[k] for k in head.keys() - base.keys()]
    entries: list[tuple[tuple[int, str, tuple[str, ...]], ObjectDiff]] = []
    for old, new in pair_replacements(removed, added):
        removed.remove(old)
        added.remove(new)
        changes = tuple(diff_values(old.body, new.body))
        entries.append((new.sort_key, ObjectDiff("replaced", new.label, changes, old_label=old.label)))
    for key in base.keys() & head.keys():
        changes = tuple(diff_values(base[key].body, head[key].body))
        if changes:
            entries.append((head[key].sort_key, ObjectDiff("changed", head[key].label, changes)))
    entries += [(obj.sort_key, ObjectDiff("added", obj.label, body=obj.body)) for obj in added]
    entries += [(obj.sort_key, ObjectDiff("removed", obj.label)) for obj in removed]
    entries.sort(key=lambda e: (_STATUS_ORDER.index(e[1].status), e[0]))
    result.objects = [e[1] for e in entries]
    return result


def diff_renders(base: Path, head: Path) -> list[StackDiff]:
    """One ``StackDiff`` per stack found in either render, in stack-name order."""
    base_stacks, head_stacks = load_render(base, "base"), load_render(head, "head")
    if len(base_stacks) == 1 and len(head_stacks) == 1 and (base / "resources.yaml").is_file():
        # Two single-stack directories: the same stack whatever the directories are called.
        base_stacks = {next(iter(head_stacks)): next(iter(base_stacks.values()))}
    return [
        _diff_stack(stack, base_stacks.get(stack, {}), head_stacks.get(stack, {}))
        for stack in sorted(base_stacks.keys() | head_stacks.keys())
    ]


# ---- showing ----------------------------------------------------------------------------------


def _counts(diff: StackDiff) -> str:
    parts = [f"{diff.count(s)} {s}" for s in _STATUS_ORDER if s != "replaced" or diff.count(s)]
    return ", ".join(parts)


def _one_line(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    # YAML flow style, as in the rendered files: '2' (a string) and 2 (a number) stay apart.
    shown = yaml.safe_dump(value, default_flow_style=True, width=1_000_000_000, allow_unicode=True)
    return shown.rstrip("\n").removesuffix("\n...")


def _text_lines(value: Any) -> list[str]:
    if value is ABSENT:
        return []
    return value.splitlines() if isinstance(value, str) else dump_yaml(value).splitlines()


def _line_diff(change: Change) -> list[str]:
    return list(difflib.unified_diff(_text_lines(change.old), _text_lines(change.new), lineterm="", n=2))[2:]


def _code(text: str) -> str:
    """Inline code that survives backticks inside ``text``."""
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: list[str], lang: str) -> list[str]:
    longest = max((len(line) - len(line.lstrip("`")) for line in lines), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{lang}", *lines, ticks]


def _change_markdown(change: Change) -> list[str]:
    if change.block:
        return [f"- {_code(change.path)}:", "", *("  " + line for line in _fence(_line_diff(change), "diff")), ""]
    return [f"- {_code(change.path)}: {_code(_one_line(change.old))} → {_code(_one_line(change.new))}"]


def _object_markdown(obj: ObjectDiff) -> list[str]:
    """One object: removed as a line, added with its YAML collapsed, changed as paths (collapsed if long)."""
    if obj.status == "removed":
        return [f"**removed** {_code(obj.label)}", ""]
    name = f"<code>{_html(obj.label)}</code>"
    if obj.status == "added":
        body = _fence(dump_yaml(obj.body).splitlines(), "yaml")
        return [f"<details><summary><b>added</b> {name}</summary>", "", *body, "", "</details>", ""]
    lines = [line for change in obj.changes for line in _change_markdown(change)]
    while lines and not lines[-1]:
        lines.pop()
    if len(obj.changes) <= INLINE_CHANGES and not any(c.block for c in obj.changes):
        was = f" (was {_code(obj.old_label)})" if obj.old_label else ""
        return [f"**{obj.status}** {_code(obj.label)}{was}", "", *lines, ""]
    was = f" (was <code>{_html(obj.old_label)}</code>)" if obj.old_label else ""
    paths = f"{len(obj.changes)} path{'s' if len(obj.changes) != 1 else ''}"
    summary = f"<b>{obj.status}</b> {name}{was}: {paths}"
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""]


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary_line(diffs: Sequence[StackDiff]) -> str:
    total = {s: sum(d.count(s) for d in diffs) for s in _STATUS_ORDER}
    if not any(total.values()):
        return f"**Desired state: no changes** ({', '.join(d.stack for d in diffs)})"
    counts = ", ".join(f"{n} {s}" for s, n in total.items() if s != "replaced" or n)
    per_stack = "; ".join(f"{d.stack}: {_counts(d) if d.objects else 'no changes'}" for d in diffs)
    return f"**Desired state: {counts}** ({per_stack})"


def _short(obj: ObjectDiff) -> str:
    what = f"{len(obj.changes)} changed paths" if obj.changes else "its content"
    return f"**{obj.status}** {_code(obj.label)} ({what} left out to fit a comment)"


def markdown(diffs: Sequence[StackDiff], *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """A pull-request comment: a summary line, then per stack each changed object (stable order).

    Objects that do not fit in ``max_chars`` are named on one line each, without their content;
    past that they are counted in a last line.
    """
    out = ["### Desired-state diff", "", summary_line(diffs), ""]
    blocks: list[tuple[list[str], str]] = []
    for diff in diffs:
        if diff.objects:
            heading = f"#### `{diff.stack}`: {_counts(diff)}"
            blocks.append(([heading, ""], heading))
            blocks += [(_object_markdown(obj), _short(obj)) for obj in diff.objects]
    budget = max_chars - 200  # room for the last line
    size, shortened, left = sum(len(line) + 1 for line in out), 0, 0
    for lines, short in blocks:
        full = sum(len(line) + 1 for line in lines)
        # Once one object is shortened, all later ones are too: full content first, then a list.
        if not shortened and not left and size + full <= budget:
            out += lines
            size += full
        elif size + len(short) + 2 <= budget:
            out += [short, ""]
            size += len(short) + 2
            shortened += 1
        else:
            left += 1
    if shortened or left:
        out.append(
            f"_{shortened + left} objects shortened or left out ({left} left out) to fit a comment: "
            "run `python -m mlplatform.render_diff` locally for all of them._"
        )
    return "\n".join(out).rstrip() + "\n"


def text(diffs: Sequence[StackDiff]) -> str:
    """The same diff for a terminal: ``~`` changed, ``+`` added, ``-`` removed, ``>`` replaced."""
    marks = {"changed": "~", "replaced": ">", "added": "+", "removed": "-"}
    out = [summary_line(diffs).replace("**", "")]
    for diff in diffs:
        if diff.objects:
            out.append(f"\n{diff.stack}: {_counts(diff)}")
        for obj in diff.objects:
            was = f" (was {obj.old_label})" if obj.old_label else ""
            out.append(f"{marks[obj.status]} {obj.label}{was}")
            for change in obj.changes:
                if change.block:
                    out.append(f"    {change.path}:")
                    out += [f"      {line}" for line in _line_diff(change)]
                else:
                    out.append(f"    {change.path}: {_one_line(change.old)} -> {_one_line(change.new)}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform.render_diff",
        description="Compare two outputs of python -m mlplatform.render object by object. "
        "Exit status: 0 no changes, 1 changes, 2 bad input.",
    )
    parser.add_argument("base", type=Path, help="the base render (a --out directory, or one stack's directory)")
    parser.add_argument("head", type=Path, help="the head render, same layout")
    parser.add_argument("--format", choices=("markdown", "text"), default="markdown", help="default: markdown")
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    parser.add_argument(
        "--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="Markdown size limit (default: a GitHub comment's)"
    )
    args = parser.parse_args(argv)
    if args.max_chars < 1000:
        parser.error(f"--max-chars {args.max_chars}: must be at least 1000")
    try:
        diffs = diff_renders(args.base, args.head)
        report = markdown(diffs, max_chars=args.max_chars) if args.format == "markdown" else text(diffs)
        if args.output:
            args.output.write_text(report, encoding="utf-8")
        else:
            sys.stdout.write(report)
    except RenderDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 1 if any(d.objects for d in diffs) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What an upgrade does, before ``pulumi up``: versions, CRD changes, replacements, apply order.

    python -m mlplatform.upgrade_plan --from main                  # the working tree against main
    python -m mlplatform.upgrade_plan --base-render A --head-render B   # two renders made already

``--from REF`` renders the stacks (dev and eks by default) twice, each with its own code and stack
files: at REF (``git archive``, in a temporary directory) and in the working tree, with
``python -m mlplatform.render``. Then, per stack:

- **Versions**: each Helm release's chart version before -> after, and every image tag in its values.
- **CRDs**: each CustomResourceDefinition the program applies (``mlplatform/crds``), added,
  removed or changed: served and storage flags per version, fields added or removed (JSON paths in
  the version's schema), field types changed, and how many other schema paths changed. For charts
  that template their CRDs (Helm upgrades them with the release) the same comparison is made from
  the CRDs vendored under tests/fixtures/upstream/<chart>-<version>, where both versions are.
- **Replaced, not updated**: objects Pulumi deletes and creates again, because an immutable field
  changed (pulumi-kubernetes v4, provider/pkg/provider/diff.go: a Deployment's selector, a Job's
  template, a Service's clusterIP, a ConfigMap's data...) or because their name changed.
- **Apply order**: those changes in the order ``pulumi up`` applies them (the head render's
  dependencies.yaml): each step waits for the ones before it; one step's items run in parallel.

A CRD the head no longer applies is flagged: Pulumi (or Helm, for a templated one) would delete it
and every object of it. Exit status: 0 a plan, 1 a plan that deletes a CRD, 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .capture import REPO_ROOT
from .crds import BUNDLE_ANNOTATION
from .render_diff import ABSENT, RenderDiffError, RenderedObject, diff_values, load_render, pair_replacements, read_yaml
from .versions import COMPONENT_VERSIONS, Chart, CrdLocation, Crds

__all__ = [
    "CrdChange",
    "Plan",
    "ReleaseChange",
    "Replacement",
    "StackPlan",
    "crd_change",
    "main",
    "markdown",
    "plan_renders",
    "schema_fields",
    "text",
]

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "upstream"
COLLAPSE_LINES = 30  # a longer plan is folded in the pull-request comment
# The eks stack needs an address for its API endpoint; a documentation range stands in (RFC 5737).
EKS_ADDRESS = 'eksPublicAccessCidrs=["203.0.113.7/32"]'

# Fields whose change makes pulumi-kubernetes replace the object (delete, then create) instead of
# updating it: provider/pkg/provider/diff.go (v4) ``forceNew``, by (API group, kind). ConfigMaps and
# Secrets are immutable by default there (the providers here set neither enableConfigMapMutable nor
# enableSecretMutable). metadata.name and namespace change the object's identity: a rename.
_SELECTOR = ("spec.selector",)
_POD = [
    "spec.affinity",
    "spec.automountServiceAccountToken",
    "spec.dnsConfig",
    "spec.dnsPolicy",
    "spec.enableServiceLinks",
    "spec.hostAliases",
    "spec.hostIPC",
    "spec.hostNetwork",
    "spec.hostPID",
    "spec.hostname",
    "spec.imagePullSecrets",
    "spec.nodeName",
    "spec.nodeSelector",
    "spec.overhead",
    "spec.preemptionPolicy",
    "spec.priority",
    "spec.priorityClassName",
    "spec.readinessGates",
    "spec.restartPolicy",
    "spec.runtimeClassName",
    "spec.schedulerName",
    "spec.securityContext",
    "spec.serviceAccount",
    "spec.serviceAccountName",
    "spec.shareProcessNamespace",
    "spec.subdomain",
    "spec.terminationGracePeriodSeconds",
    "spec.volumes",
    "spec.containers",
    "spec.initContainers",
]
REPLACE_ON: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): _SELECTOR,
    ("apps", "DaemonSet"): _SELECTOR,
    ("apps", "StatefulSet"): (
        *_SELECTOR,
        "spec.podManagementPolicy",
        "spec.revisionHistoryLimit",
        "spec.serviceName",
        "spec.volumeClaimTemplates",
    ),
    ("batch", "Job"): (*_SELECTOR, "spec.completions", "spec.parallelism", "spec.template"),
    ("", "ConfigMap"): ("data", "binaryData"),
    ("", "Secret"): ("type", "data", "stringData"),
    ("", "Service"): ("spec.clusterIP",),
    ("", "ResourceQuota"): ("spec.scopes",),
    ("", "PersistentVolumeClaim"): (
        "spec.accessModes",
        "spec.selector",
        "spec.storageClassName",
        "spec.volumeName",
    ),
    ("", "PersistentVolume"): tuple(
        f"spec.{source}"
        for source in [
            "awsElasticBlockStore",
            "azureDisk",
            "azureFile",
            "cephfs",
            "cinder",
            "csi",
            "fc",
            "flexVolume",
            "flocker",
            "gcePersistentDisk",
            "glusterfs",
            "hostPath",
            "iscsi",
            "local",
            "nfs",
            "photonPersistentDisk",
            "portworxVolume",
            "quobyte",
            "rbd",
            "scaleIO",
            "storageos",
            "vsphereVolume",
        ]
    ),
    ("", "Pod"): tuple(_POD),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("roleRef",),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("roleRef",),
    ("storage.k8s.io", "StorageClass"): ("parameters", "provisioner"),
}


@dataclass(frozen=True)
class ReleaseChange:
    """A Helm release whose chart version or images change (``None``: no such release on that side)."""

    label: str
    chart: str
    old: str | None
    new: str | None
    images: tuple[tuple[str, Any, Any], ...] = ()  # (values path, old tag, new tag)
    crds: Crds | None = None  # the head chart's CRD facts, when the table knows the chart


@dataclass(frozen=True)
class CrdChange:
    name: str
    status: str  # changed | added | removed
    old_source: str = ""  # bundle or chart version the CRD comes from
    new_source: str = ""
    versions: tuple[str, ...] = ()  # "v1beta2: served true, storage false -> true", "v1 added (...)"
    added_fields: tuple[str, ...] = ()  # "<version> <path>"
    removed_fields: tuple[str, ...] = ()
    type_changes: tuple[str, ...] = ()
    other_changes: int = 0  # schema paths changed besides those (descriptions, validations, defaults)
    templated: bool = False  # applied by Helm with its release, not by the program


@dataclass(frozen=True)
class Replacement:
    label: str
    reasons: tuple[str, ...]  # the immutable paths that changed, or "renamed from ..."


@dataclass
class StackPlan:
    stack: str
    releases: list[ReleaseChange] = field(default_factory=list)
    crds: list[CrdChange] = field(default_factory=list)
    replacements: list[Replacement] = field(default_factory=list)
    order: list[list[str]] = field(default_factory=list)  # steps of labels, each waiting for the previous

    @property
    def versions_change(self) -> bool:
        return bool(self.releases)  # _release_change keeps only releases whose version or images change

    @property
    def deletes_crds(self) -> list[CrdChange]:
        return [c for c in self.crds if c.status == "removed"]


Plan = list[StackPlan]


# ---- CRDs -------------------------------------------------------------------------------------


def schema_fields(schema: Mapping[str, Any], path: str = "") -> dict[str, str]:
    """Every field of an openAPIV3Schema as a JSON path -> its type (``[]`` for list items, ``*``
    for map values)."""
    fields: dict[str, str] = {}
    for key, sub in (schema.get("properties") or {}).items():
        child = f"{path}.{key}" if path else str(key)
        fields[child] = str(sub.get("type") or ("int-or-string" if sub.get("x-kubernetes-int-or-string") else ""))
        fields |= schema_fields(sub, child)
    items = schema.get("items")
    if isinstance(items, Mapping):
        fields |= schema_fields(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        fields |= schema_fields(extra, f"{path}.*")
    return fields


def _versions(crd: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(v["name"]): v for v in (crd.get("spec") or {}).get("versions") or []}


def _schema(version: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((version.get("schema") or {}).get("openAPIV3Schema")) or {}


def _flags(version: Mapping[str, Any]) -> str:
    return f"served {str(bool(version.get('served'))).lower()}, storage {str(bool(version.get('storage'))).lower()}"


def crd_change(
    name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, *, sources: tuple[str, str] = ("", "")
) -> CrdChange | None:
    """How CRD ``name`` changes from ``old`` to ``new`` (``None``: absent on that side); None if it does not."""
    if old is None and new is None:
        return None
    if old is None or new is None:
        status = "added" if old is None else "removed"
        present = new if new is not None else old
        assert present is not None
        described = tuple(f"{v}: {_flags(body)}" for v, body in _versions(present).items())
        return CrdChange(name, status, sources[0], sources[1], versions=described)
    if not diff_values(_outside_versions(old), _outside_versions(new)) and not diff_values(
        old["spec"].get("versions"), new["spec"].get("versions")
    ):
        return None
    old_versions, new_versions = _versions(old), _versions(new)
    flags, added, removed, types = [], [], [], []
    other = 0
    for version in sorted(old_versions.keys() | new_versions.keys()):
        before, after = old_versions.get(version), new_versions.get(version)
        if before is None or after is None:
            body = after if after is not None else before
            assert body is not None
            flags.append(f"{version} {'added' if before is None else 'removed'} ({_flags(body)})")
            continue
        if _flags(before) != _flags(after):
            flags.append(f"{version}: {_flags(before)} -> {_flags(after)}")
        old_fields, new_fields = schema_fields(_schema(before)), schema_fields(_schema(after))
        added += [f"{version} {p}" for p in sorted(new_fields.keys() - old_fields.keys())]
        removed += [f"{version} {p}" for p in sorted(old_fields.keys() - new_fields.keys())]
        types += [
            f"{version} {p}: {old_fields[p] or '?'} -> {new_fields[p] or '?'}"
            for p in sorted(old_fields.keys() & new_fields.keys())
            if old_fields[p] != new_fields[p]
        ]
        changed = diff_values(_schema(before), _schema(after))
        # Paths under a field added or removed are that field's, not "other" changes.
        moved = {p.split(" ", 1)[1] for p in (*added, *removed) if p.startswith(f"{version} ")}
        retyped = {p for p in old_fields.keys() & new_fields.keys() if old_fields[p] != new_fields[p]}
        other += sum(
            1
            for c in changed
            if not _under_field(c.path, moved) and not (c.path.endswith(".type") and _field_path(c.path) in retyped)
        )
    stored = [_stored(old_versions), _stored(new_versions)]
    if stored[0] != stored[1]:
        flags.append(f"storage version {stored[0]} -> {stored[1]}: stored objects stay at {stored[0]} until rewritten")
    rest = diff_values(_outside_versions(old), _outside_versions(new))
    return CrdChange(
        name,
        "changed",
        sources[0],
        sources[1],
        versions=tuple(flags),
        added_fields=tuple(added),
        removed_fields=tuple(removed),
        type_changes=tuple(types),
        other_changes=other + len(rest),
    )


def _outside_versions(crd: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD but its versions (compared field by field) and the bundle it comes from (shown apart)."""
    metadata = dict(crd.get("metadata") or {})
    metadata["annotations"] = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != BUNDLE_ANNOTATION}
    spec = {k: v for k, v in (crd.get("spec") or {}).items() if k != "versions"}
    return {"metadata": metadata, "spec": spec}


def _stored(versions: Mapping[str, Mapping[str, Any]]) -> str:
    return next((v for v, body in versions.items() if body.get("storage")), "(none)")


def _under_field(change_path: str, fields: set[str]) -> bool:
    """Whether a diff path inside an openAPIV3Schema lies under one of ``fields`` (JSON paths)."""
    schema_path = _field_path(change_path)
    return any(schema_path == f or schema_path.startswith(f"{f}.") or schema_path.startswith(f"{f}[") for f in fields)


def _field_path(schema_path: str) -> str:
    """``properties.spec.properties.x.items.properties.y.description`` -> ``spec.x[].y``."""
    parts, out, i = schema_path.split("."), "", 0
    while i < len(parts):
        part = parts[i]
        if part == "properties" and i + 1 < len(parts):
            out = f"{out}.{parts[i + 1]}" if out else parts[i + 1]
            i += 2
            continue
        if part == "items":
            out += "[]"
        elif part == "additionalProperties":
            out += ".*"
        else:
            break
        i += 1
    return out


# ---- reading the renders ----------------------------------------------------------------------


def _kind(obj: RenderedObject) -> tuple[str, str]:
    return obj.key[1], obj.key[2]


def _crds(objects: Mapping[tuple[str, ...], RenderedObject]) -> dict[str, RenderedObject]:
    return {
        str(obj.body["metadata"]["name"]): obj
        for key, obj in objects.items()
        if key[0] == "kubernetes" and _kind(obj) == ("apiextensions.k8s.io", "CustomResourceDefinition")
    }


def _source(obj: RenderedObject | None) -> str:
    if obj is None:
        return ""
    return str(((obj.body.get("metadata") or {}).get("annotations") or {}).get(BUNDLE_ANNOTATION, ""))


def _image_changes(old: Any, new: Any) -> tuple[tuple[str, Any, Any], ...]:
    return tuple(
        (c.path, None if c.old is ABSENT else c.old, None if c.new is ABSENT else c.new)
        for c in diff_values(old, new)
        if c.path == "image.tag" or c.path.endswith(".image.tag") or c.path.endswith(".image")
    )


@functools.cache
def _chart_facts() -> dict[tuple[str, str], Crds]:
    return {(c.name, c.version): c.crds for t in COMPONENT_VERSIONS.values() for c in t.charts().values()}


@functools.cache
def _by_chart_name() -> dict[str, Crds]:
    return {c.name: c.crds for t in COMPONENT_VERSIONS.values() for c in t.charts().values()}


def fixture_crds(chart: str, version: str, fixtures: Path = FIXTURES) -> dict[str, dict[str, Any]] | None:
    """The CRDs vendored under ``fixtures/<chart>-<version>`` (or ``-v<version>``), by name; None if none."""
    short = Chart(chart, version).short_name
    for directory in (fixtures / f"{short}-{version}", fixtures / f"{short}-v{version}"):
        if directory.is_dir():
            found = {}
            for path in sorted(directory.glob("*.yaml")):
                for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
                    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                        found[str(doc["metadata"]["name"])] = doc
            return found or None
    return None


def _templated_crd_changes(release: ReleaseChange, fixtures: Path) -> list[CrdChange]:
    if release.old is None or release.new is None or release.old == release.new:
        return []
    before, after = (
        fixture_crds(release.chart, release.old, fixtures),
        fixture_crds(release.chart, release.new, fixtures),
    )
    if before is None or after is None:
        return []
    changes = []
    for name in sorted(before.keys() | after.keys()):
        change = crd_change(name, before.get(name), after.get(name), sources=(release.old, release.new))
        if change is not None:
            changes.append(dataclasses.replace(change, templated=True))
    return changes


def _replacements(
    base: Mapping[tuple[str, ...], RenderedObject], head: Mapping[tuple[str, ...], RenderedObject]
) -> list[Replacement]:
    found = []
    for key in sorted(base.keys() & head.keys()):
        if key[0] != "kubernetes":
            continue
        immutable = REPLACE_ON.get((key[1], key[2]), ())
        paths = sorted(
            {
                rule
                for change in diff_values(base[key].body, head[key].body)
                for rule in immutable
                if change.path == rule or change.path.startswith((f"{rule}.", f"{rule}["))
            }
        )
        if paths:
            found.append(Replacement(head[key].label, tuple(f"{p} changed (immutable)" for p in paths)))
    # A name change with the same kind, namespace and app name: render_diff pairs it as a rename.
    removed = [base[k] for k in base.keys() - head.keys()]
    added = [head[k] for k in head.keys() - base.keys()]
    for old, new in pair_replacements(removed, added):
        found.append(Replacement(new.label, (f"renamed from {old.label}",)))
    return sorted(found, key=lambda r: r.label)


def _order(head_root: Path | None, items: Iterable[str]) -> list[list[str]]:
    """``items`` in apply order, from the head render's dependencies.yaml: each step's items depend
    (directly or not) on something in the step before; items of one step can run in parallel."""
    wanted = sorted(set(items))
    graph: dict[str, list[str]] = {}
    if head_root is not None and (head_root / "dependencies.yaml").is_file():
        graph = read_yaml(head_root / "dependencies.yaml") or {}
    depth: dict[str, int] = {}

    def depth_of(label: str, seen: frozenset[str] = frozenset()) -> int:
        if label not in depth:
            waits = [d for d in graph.get(label, []) if d not in seen]
            depth[label] = 1 + max((depth_of(d, seen | {label}) for d in waits), default=-1)
        return depth[label]

    steps: dict[int, list[str]] = {}
    for label in wanted:
        steps.setdefault(depth_of(label), []).append(label)
    return [steps[d] for d in sorted(steps)]


def _release_change(old: RenderedObject | None, new: RenderedObject | None) -> ReleaseChange | None:
    either = new if new is not None else old
    if either is None:
        return None
    chart = str(either.body.get("chart"))
    old_version = str(old.body.get("version")) if old else None
    new_version = str(new.body.get("version")) if new else None
    images = _image_changes(old.body.get("values") if old else {}, new.body.get("values") if new else {})
    if old_version == new_version and not images:
        return None
    crds = _chart_facts().get((chart, new_version or "")) or _by_chart_name().get(chart)
    return ReleaseChange(either.label, chart, old_version, new_version, images, crds)


def _stack_plan(stack: str, base: Objects, head: Objects, head_root: Path | None, fixtures: Path) -> StackPlan:
    plan = StackPlan(stack)
    for key in sorted(base.keys() | head.keys()):
        if key[0] == "helm" and (release := _release_change(base.get(key), head.get(key))) is not None:
            plan.releases.append(release)
    old_crds, new_crds = _crds(base), _crds(head)
    for name in sorted(old_crds.keys() | new_crds.keys()):
        before, after = old_crds.get(name), new_crds.get(name)
        change = crd_change(
            name,
            before.body if before else None,
            after.body if after else None,
            sources=(_source(before), _source(after)),
        )
        if change is not None:
            plan.crds.append(change)
    for release in plan.releases:
        if release.crds is not None and release.crds.location is CrdLocation.TEMPLATES:
            plan.crds += _templated_crd_changes(release, fixtures)
    plan.replacements = _replacements(base, head)
    labels = {f"CustomResourceDefinition {c.name}" for c in plan.crds if not c.templated and c.status != "removed"}
    labels |= {r.label for r in plan.releases if r.new is not None}
    labels |= {r.label for r in plan.replacements}
    plan.order = _order(head_root, labels)
    return plan


Objects = dict[tuple[str, ...], RenderedObject]


def _stacks(path: Path, role: str) -> dict[str, tuple[Path, Objects]]:
    """Stack name -> (its directory, its objects), with render_diff's checks and messages."""
    loaded = load_render(path, role)
    if (path / "resources.yaml").is_file():
        return {path.name: (path, loaded[path.name])}
    return {name: (path / name, objects) for name, objects in loaded.items()}


def plan_renders(base: Path, head: Path, *, fixtures: Path = FIXTURES) -> Plan:
    """The plan per stack found in either render (a ``--out`` directory or one stack's directory)."""
    base_stacks, head_stacks = _stacks(base, "base"), _stacks(head, "head")
    if len(base_stacks) == 1 and len(head_stacks) == 1 and (base / "resources.yaml").is_file():
        base_stacks = {next(iter(head_stacks)): next(iter(base_stacks.values()))}
    plans = []
    for stack in sorted(base_stacks.keys() | head_stacks.keys()):
        base_objects = base_stacks.get(stack, (None, {}))[1]
        head_root, head_objects = head_stacks.get(stack, (None, {}))
        plans.append(_stack_plan(stack, base_objects, head_objects, head_root, fixtures))
    return plans


# ---- showing ----------------------------------------------------------------------------------


def _version(value: str | None) -> str:
    return value if value is not None else "(none)"


def _crd_lines(change: CrdChange) -> list[str]:
    where = "Helm, with its release" if change.templated else "the program"
    source = (
        f" ({change.old_source or '?'} -> {change.new_source or '?'})" if change.old_source or change.new_source else ""
    )
    if change.status == "removed":
        what = "Helm deletes it" if change.templated else "Pulumi deletes it"
        head = f"REMOVED {change.name}{source}: {what} and every object of its kinds; keep it (docs/upgrades.md)"
    else:
        head = f"{change.status} {change.name}{source}, applied by {where}"
    lines = [head]
    lines += [f"  versions: {v}" for v in change.versions]
    lines += [f"  + {f}" for f in change.added_fields]
    lines += [f"  - {f}" for f in change.removed_fields]
    lines += [f"  ~ type {t}" for t in change.type_changes]
    if change.other_changes:
        lines.append(f"  {change.other_changes} other paths changed (annotations, descriptions, validations, defaults)")
    return lines


def _release_lines(release: ReleaseChange) -> list[str]:
    lines = [f"{release.label}: {release.chart} {_version(release.old)} -> {_version(release.new)}"]
    lines += [f"  image {path}: {old} -> {new}" for path, old, new in release.images]
    if release.crds is not None and release.old != release.new:
        crds = release.crds
        lines.append(f"  CRDs: {crds.location.value}, kept current by {crds.upkeep.value}")
    return lines


def _steps(order: Sequence[Sequence[str]]) -> list[str]:
    lines = []
    for number, step in enumerate(order, 1):
        prefix = f"{number}. "
        lines += [f"{prefix if i == 0 else ' ' * len(prefix)}{label}" for i, label in enumerate(step)]
    return lines


def text(plan: Plan) -> str:
    """The plan for a terminal."""
    out: list[str] = []
    for stack in plan:
        out.append(f"== {stack.stack}")
        if not (stack.releases or stack.crds or stack.replacements):
            out.append("no version, CRD or replacement changes")
            continue
        sections = (
            ("Versions", [line for r in stack.releases for line in _release_lines(r)]),
            ("CRDs", [line for c in stack.crds for line in _crd_lines(c)]),
            (
                "Replaced, not updated (deleted, then created)",
                [f"{r.label}: {'; '.join(r.reasons)}" for r in stack.replacements],
            ),
            ("Apply order (each step after the one before; one step's items in parallel)", _steps(stack.order)),
        )
        for title, lines in sections:
            out.append(f"{title}:")
            out += [f"  {line}" for line in lines] or ["  (none)"]
    return "\n".join(out) + "\n"


def markdown(plan: Plan) -> str:
    """The plan for a pull-request comment (a section beside the desired-state diff)."""
    out = [
        "### Upgrade plan",
        "",
        "Versions, CRD changes, replacements and apply order (`python -m mlplatform.upgrade_plan`, docs/upgrades.md).",
        "",
    ]
    for stack in plan:
        lines = text([stack]).splitlines()[1:]
        counts = f"{len(stack.releases)} releases, {len(stack.crds)} CRDs, {len(stack.replacements)} replaced" + (
            f", **{len(stack.deletes_crds)} CRDs deleted**" if stack.deletes_crds else ""
        )
        block = ["```text", *lines, "```"]
        if len(lines) > COLLAPSE_LINES:  # long plans (a monitoring bump: ten CRDs) fold away
            block = ["<details><summary>the plan</summary>", "", *block, "", "</details>"]
        out += [f"#### `{stack.stack}`: {counts}", "", *block, ""]
    return "\n".join(out).rstrip() + "\n"


# ---- the command ------------------------------------------------------------------------------


def _render(checkout: Path, stack: str, sets: Sequence[str], out: Path) -> None:
    args = ["--stack", stack, *(a for s in sets for a in ("--set", s))]
    if stack == "eks" and not any(s.startswith("eksPublicAccessCidrs=") for s in sets):
        args += ["--set", EKS_ADDRESS]
    done = subprocess.run(
        [sys.executable, "-m", "mlplatform.render", *args, "--out", str(out)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RenderDiffError(f"rendering stack {stack!r} in {checkout} failed: {' '.join(last)}")


def _archive(ref: str, into: Path) -> None:
    done = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO_ROOT, capture_output=True, check=False)
    if done.returncode != 0:
        raise RenderDiffError(f"git archive {ref}: {done.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform.upgrade_plan",
        description="What an upgrade does: versions, CRD changes, replaced objects, apply order. "
        "Exit status: 0 a plan, 1 a plan that deletes a CRD, 2 bad input.",
    )
    parser.add_argument(
        "--from", dest="ref", help="git ref to compare the working tree with (rendered with its own code)"
    )
    parser.add_argument("--base-render", type=Path, help="a render of the base instead of --from")
    parser.add_argument("--head-render", type=Path, help="a render of the head (default: render the working tree)")
    parser.add_argument("--stack", action="append", help="stack to plan (repeatable; default: dev and eks)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for both")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument(
        "--if-versions-change", action="store_true", help="print nothing unless a chart or image version changes"
    )
    args = parser.parse_args(argv)
    if bool(args.ref) == bool(args.base_render):
        parser.error("give either --from REF or --base-render DIR")
    stacks = args.stack or ["dev", "eks"]
    try:
        with tempfile.TemporaryDirectory(prefix="upgrade-plan-") as tmp:
            work = Path(tmp)
            base, head = args.base_render, args.head_render
            if args.ref:
                (work / "checkout").mkdir()
                _archive(args.ref, work / "checkout")
                base = work / "base"
                for stack in stacks:
                    _render(work / "checkout", stack, args.set, base)
            if head is None:
                head = work / "head"
                for stack in stacks:
                    _render(REPO_ROOT, stack, args.set, head)
            plan = plan_renders(base, head)
    except RenderDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.if_versions_change and not any(s.versions_change for s in plan):
        return 0
    sys.stdout.write(markdown(plan) if args.format == "markdown" else text(plan))
    return 1 if any(s.deletes_crds for s in plan) else 0


if __name__ == "__main__":
    sys.exit(main())

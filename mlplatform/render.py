"""Render a stack's desired state to files, without a cluster, cloud account or Pulumi CLI.

    python -m mlplatform.render --stack dev --out rendered/
    python -m mlplatform.render --stack eks --set 'eksPublicAccessCidrs=["203.0.113.7/32"]'

Writes, under ``<out>/<stack>/``:
  kubernetes/<kind>.<namespace>.<name>.yaml   every Kubernetes object (``_cluster`` if cluster-scoped)
  helm/<release>.yaml                         each Helm release: chart, version, repo, values
  resources.yaml                              every other resource (cluster, cloud), secrets redacted
  dependencies.yaml                           what each of those waits for (its depends_on and provider),
                                              by the labels render_diff shows: the order `up` applies them in
so a reviewer sees exactly what ``pulumi up`` would apply.

The output is deterministic: file names come from each object's identity (never from the order
in which Pulumi happened to register it), mapping keys are sorted (``apiVersion``, ``kind``,
``metadata``, ``name`` first, for reading), list order is kept (it means something: containers,
args), and ``resources.yaml`` is sorted by type and name. Two renders of the same code and config
are byte-identical, so ``diff -r`` or ``python -m mlplatform.render_diff`` of two renders shows
only real changes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .capture import SECRET_SIG, SIG_KEY, Capture, capture_stack, known_stacks, plain
from .config import ConfigError

__all__ = [
    "CLUSTER_SCOPE",
    "RenderError",
    "label",
    "main",
    "normalized",
    "object_file_name",
    "parse_overrides",
    "redacted",
    "write_capture",
]

# The "namespace" part of a cluster-scoped object's file name (a namespace cannot contain "_").
CLUSTER_SCOPE = "_cluster"
# Keys shown first, in this order, wherever they occur; every other key follows, sorted.
_FIRST_KEYS = ("apiVersion", "kind", "metadata", "name", "namespace")
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


class RenderError(RuntimeError):
    """The desired state cannot be written unambiguously (e.g. two objects with one identity)."""


def redacted(value: Any) -> Any:
    """Plain data with every secret replaced by a marker (a render must never leak one)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return plain(value)


def _key_order(key: str) -> tuple[int, str]:
    return (_FIRST_KEYS.index(key), "") if key in _FIRST_KEYS else (len(_FIRST_KEYS), key)


def normalized(value: Any) -> Any:
    """``value`` with every mapping's keys in a fixed order; lists keep theirs (it is meaningful).

    Wire properties arrive as a protobuf Struct, whose key order is not stable from one process
    to the next: key order must never leak into the output.
    """
    if isinstance(value, dict):
        return {str(k): normalized(value[k]) for k in sorted(value, key=lambda k: _key_order(str(k)))}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-").lower() or "x"


def object_file_name(manifest: dict[str, Any]) -> str:
    """``<kind>.<namespace>.<name>.yaml`` from the object's identity (kind and namespace hold no dots)."""
    meta = manifest.get("metadata") or {}
    kind = _slug(str(manifest.get("kind") or "unknown"))
    scope = _slug(str(meta.get("namespace") or CLUSTER_SCOPE))
    return f"{kind}.{scope}.{_slug(str(meta.get('name') or 'unnamed'))}.yaml"


class _Dumper(yaml.CSafeDumper):
    """Multi-line strings (embedded config files) as readable YAML blocks; no anchors or aliases
    (their generated names would depend on traversal order, and they hide content from a diff).
    libyaml's emitter: a render holds megabytes of CRD schemas (4x faster than the pure-Python one)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.CSafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """The render's YAML text for ``data`` (keys normalized, block strings, no aliases)."""
    return yaml.dump(normalized(data), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def _write(path: Path, data: Any, written: dict[Path, str], what: str) -> None:
    if path in written:
        raise RenderError(f"{what} and {written[path]} would both be written to {path.name}: give them distinct names")
    written[path] = what
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(data))


def _helm_release(props: dict[str, Any], resource_name: str) -> dict[str, Any]:
    return {
        "release": props.get("name") or resource_name,
        "namespace": props.get("namespace"),
        "chart": props.get("chart"),
        "version": props.get("version"),
        "repository": (props.get("repositoryOpts") or {}).get("repo"),
        "values": props.get("values") or {},
    }


def label(kind: str, namespace: Any, name: Any) -> str:
    """How renders, their diffs and upgrade plans name an object (dependencies.yaml is keyed by it)."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _write_dependencies(capture: Capture, labels: dict[str, str], root: Path) -> None:
    """``dependencies.yaml``: label -> the labels it waits for, both sorted (registration order must
    not reach the output). A resource waits for its dependencies and for its provider."""
    graph: dict[str, list[str]] = {}
    for resource in capture.resources:
        if resource.urn not in labels:
            continue
        provider = resource.provider.rsplit("::", 1)[0] if resource.provider else ""
        waits = {labels[urn] for urn in (*resource.dependencies, provider) if urn in labels}
        graph[labels[resource.urn]] = sorted(waits - {labels[resource.urn]})
    (root / "dependencies.yaml").write_text(dump_yaml(dict(sorted(graph.items()))))


def write_capture(capture: Capture, out: Path) -> dict[str, int]:
    """Write ``capture`` under ``out/<stack>`` (replacing a previous render); returns counts by category.

    Raises ``RenderError`` if two objects (or two Helm releases) would share one file.
    """
    root = out / capture.stack
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    counts = {"kubernetes": 0, "helm": 0, "other": 0}
    written: dict[Path, str] = {}
    others = []
    labels: dict[str, str] = {}  # urn -> what a reviewer reads (python -m mlplatform.render_diff's labels)
    for resource in capture.resources:
        if resource.is_kubernetes_object:
            manifest = redacted(resource.inputs)
            manifest.pop("__defaults", None)  # the SDK's bookkeeping, not part of the object
            counts["kubernetes"] += 1
            path = root / "kubernetes" / object_file_name(manifest)
            _write(path, manifest, written, f"resource {resource.name!r}")
            meta = manifest.get("metadata") or {}
            labels[resource.urn] = label(str(manifest.get("kind")), meta.get("namespace"), meta.get("name"))
        elif resource.type == HELM_RELEASE_TYPE:
            release = _helm_release(redacted(resource.inputs), resource.name)
            counts["helm"] += 1
            path = root / "helm" / f"{_slug(str(release['release']))}.yaml"
            _write(path, release, written, f"Helm release resource {resource.name!r}")
            labels[resource.urn] = label("Helm release", release["namespace"], release["release"])
        elif resource.custom:
            counts["other"] += 1
            others.append({"type": resource.type, "name": resource.name, "inputs": redacted(resource.inputs)})
            labels[resource.urn] = f"{resource.type} {resource.name}"
    others.sort(key=lambda r: (r["type"], r["name"]))
    (root / "resources.yaml").write_text(dump_yaml(others))
    _write_dependencies(capture, labels, root)
    return counts


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments -> config overrides (values read as YAML: numbers, lists).

    Raises ``ValueError`` naming the bad argument and the expected form.
    """
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set kindGpuWorkers=2")
        try:
            overrides[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as err:
            raise ValueError(f'--set {item!r}: the value is not valid YAML (quote lists: \'["a", "b"]\')') from err
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform.render",
        description="Render a stack's Kubernetes objects and Helm releases offline (Pulumi mocks).",
    )
    parser.add_argument("--stack", default="dev", help="stack name; reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--out", type=Path, default=Path("rendered"), help="output directory (default: rendered/)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set 'eksPublicAccessCidrs=[\"203.0.113.7/32\"]' (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    stacks = known_stacks()
    if args.stack not in stacks:
        parser.error(f"unknown stack {args.stack!r}: expected one of {', '.join(stacks)} (a Pulumi.<stack>.yaml file)")
    try:
        capture = capture_stack(args.stack, overrides)
    except ConfigError as err:
        print(f"error: Pulumi.{args.stack}.yaml: {err}", file=sys.stderr)
        return 2
    try:
        counts = write_capture(capture, args.out)
    except (RenderError, OSError) as err:
        print(f"error: cannot write the render of stack {args.stack!r} to {args.out}: {err}", file=sys.stderr)
        return 2
    print(
        f"rendered stack {args.stack!r} to {args.out / args.stack}: {counts['kubernetes']} Kubernetes objects, "
        f"{counts['helm']} Helm releases, {counts['other']} other resources"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render a stack's desired state to files, without a cluster, cloud account or Pulumi CLI.

    python -m mlplatform.render --stack dev --out rendered/
    python -m mlplatform.render --stack eks --set 'eksPublicAccessCidrs=["203.0.113.7/32"]'

Writes, under ``<out>/<stack>/``:
  kubernetes/NN-<kind>-<namespace>-<name>.yaml   every Kubernetes object, in registration order
  helm/<release>.yaml                            each Helm release: chart, version, repo, values
  resources.yaml                                 every other resource (cluster, cloud), secrets redacted
so a reviewer sees exactly what ``pulumi up`` would apply.
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

__all__ = ["main", "redacted", "write_capture"]


def redacted(value: Any) -> Any:
    """Plain data with every secret replaced by a marker (a render must never leak one)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return plain(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-").lower() or "x"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (embedded config files) as readable YAML blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120))


def write_capture(capture: Capture, out: Path) -> dict[str, int]:
    """Write ``capture`` under ``out/<stack>``; returns counts by category."""
    root = out / capture.stack
    if root.exists():
        shutil.rmtree(root)
    counts = {"kubernetes": 0, "helm": 0, "other": 0}
    others = []
    for resource in capture.resources:
        if resource.is_kubernetes_object:
            manifest = redacted(resource.inputs)
            meta = manifest.get("metadata", {})
            counts["kubernetes"] += 1
            scope = meta.get("namespace", "_cluster")
            name = f"{counts['kubernetes']:03d}-{manifest.get('kind')}-{scope}-{meta.get('name')}"
            _dump(root / "kubernetes" / f"{_slug(name)}.yaml", manifest)
        elif resource.type == "kubernetes:helm.sh/v3:Release":
            props = redacted(resource.inputs)
            counts["helm"] += 1
            release = {
                "release": props.get("name", resource.name),
                "namespace": props.get("namespace"),
                "chart": props.get("chart"),
                "version": props.get("version"),
                "repository": (props.get("repositoryOpts") or {}).get("repo"),
                "values": props.get("values", {}),
            }
            _dump(root / "helm" / f"{_slug(resource.name)}.yaml", release)
        elif resource.custom:
            counts["other"] += 1
            others.append({"type": resource.type, "name": resource.name, "inputs": redacted(resource.inputs)})
    _dump(root / "resources.yaml", others)
    return counts


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
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE, e.g. --set kindGpuWorkers=2")
        try:
            overrides[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parser.error(f'--set {item!r}: the value is not valid YAML (quote lists: \'["a", "b"]\')')
    stacks = known_stacks()
    if args.stack not in stacks:
        parser.error(f"unknown stack {args.stack!r}: expected one of {', '.join(stacks)} (a Pulumi.<stack>.yaml file)")
    try:
        capture = capture_stack(args.stack, overrides)
    except ConfigError as err:
        print(f"error: Pulumi.{args.stack}.yaml: {err}", file=sys.stderr)
        return 2
    counts = write_capture(capture, args.out)
    print(
        f"rendered stack {args.stack!r} to {args.out / args.stack}: {counts['kubernetes']} Kubernetes objects, "
        f"{counts['helm']} Helm releases, {counts['other']} other resources"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

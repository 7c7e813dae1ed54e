"""Pinned Helm releases with one escape hatch for values."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .versions import Chart

__all__ = ["deep_merge", "release"]


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` merged into a copy of ``base``; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def release(
    name: str,
    chart: Chart,
    *,
    namespace: str,
    values: Mapping[str, Any],
    values_overrides: Mapping[str, Any] | None = None,
    skip_crds: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.helm.v3.Release:
    """A Helm release of ``chart`` at its pinned version that waits for its resources to be ready
    (never ``skip_await``: a failed install must fail the update, not report success).

    ``skip_crds``: leave out the chart's ``crds/`` directory (CRDs the platform does not use: Helm
    would install them once and never delete them)."""
    extra: dict[str, Any] = {"skip_crds": True} if skip_crds else {}
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=chart.name,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace,
        create_namespace=False,
        values=deep_merge(values, values_overrides or {}),
        atomic=True,
        cleanup_on_fail=True,
        timeout=600,
        opts=opts,
        **extra,
    )

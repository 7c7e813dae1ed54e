"""Pinned Helm releases with one escape hatch for values."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .versions import Chart, CrdUpkeep

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
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.helm.v3.Release:
    """A Helm release of ``chart`` at its pinned version that waits for its resources to be ready
    (never ``skip_await``: a failed install must fail the update, not report success).

    Where the program applies the chart's CRDs itself, or the platform uses none of them
    (``chart.crds``), the release installs none: Helm's ``skip_crds`` and the chart's own switch
    (``chart.crds.release_values``).
    """
    skip_crds = chart.crds.upkeep in (CrdUpkeep.PROGRAM, CrdUpkeep.SKIPPED)
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=chart.name,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace,
        create_namespace=False,
        values=deep_merge(deep_merge(values, chart.crds.release_values), values_overrides or {}),
        skip_crds=True if skip_crds else None,
        atomic=True,
        cleanup_on_fail=True,
        timeout=600,
        opts=opts,
    )

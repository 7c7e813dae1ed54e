"""Helm values we set, checked against the vendored upstream chart's own values.yaml.

Helm ignores a misspelt key silently; here every key path we set must exist upstream. The
vendored charts are found by their Chart.yaml (name, version) under tests/fixtures/upstream; a
subchart's values are vendored beside its parent as ``<dependency>-<version>-values.yaml`` and
checked for the parent's subtree of that name (the parent's values.yaml has only a stub for it).
A subchart whose values are not vendored cannot be checked: ``unchecked_subcharts`` names those
subtrees so a test can pin them instead of letting them pass unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .crds import UPSTREAM
from .errors import SchemaError

__all__ = [
    "CHART_VALUES",
    "FREE_FORM",
    "VendoredChart",
    "chart_defaults",
    "chart_name",
    "unchecked_subcharts",
    "unknown_release_keys",
    "unknown_value_keys",
    "vendored_charts",
]


@dataclass(frozen=True)
class VendoredChart:
    name: str
    version: str
    values: Path
    subchart_values: Mapping[str, Path] = field(default_factory=dict)  # values key -> vendored values.yaml
    dependencies: frozenset[str] = frozenset()  # values keys of every subchart, vendored or not


def _values_file(directory: Path) -> Path:
    # Kueue's chart values are vendored as chart-values.yaml (its repository has another values.yaml).
    plain = directory / "values.yaml"
    return plain if plain.exists() else directory / "chart-values.yaml"


# Charts whose Chart.yaml in git carries a placeholder version that their CD replaces with the git tag
# when it publishes them (fake-gpu-operator: "version: 0.0.1 # Replaced during CD"): their version is
# the tag of the directory they are vendored in (``<name>-v<version>``).
VERSIONED_BY_TAG = frozenset({"fake-gpu-operator"})


def _version(meta: Mapping[str, Any], directory: Path) -> str:
    if meta["name"] in VERSIONED_BY_TAG:
        return directory.name.removeprefix(f"{meta['name']}-v")
    return str(meta["version"])


@cache
def vendored_charts() -> dict[str, VendoredChart]:
    """Chart name (from its Chart.yaml) -> the vendored chart."""
    charts: dict[str, VendoredChart] = {}
    for meta_path in sorted(UPSTREAM.glob("*/Chart.yaml")):
        meta = yaml.safe_load(meta_path.read_text())
        subcharts: dict[str, Path] = {}
        dependencies: set[str] = set()
        for dep in meta.get("dependencies", []):
            key = dep.get("alias", dep["name"])
            dependencies.add(key)
            values = meta_path.parent / f"{dep['name']}-{dep['version']}-values.yaml"
            if values.exists():
                subcharts[key] = values
        charts[meta["name"]] = VendoredChart(
            name=meta["name"],
            version=_version(meta, meta_path.parent),
            values=_values_file(meta_path.parent),
            subchart_values=subcharts,
            dependencies=frozenset(dependencies),
        )
    return charts


# The fields of a Kubernetes ResourceRequirements (core/v1).
RESOURCE_REQUIREMENTS = frozenset({"requests", "limits", "claims"})
# Maps a chart's templates render key by key whatever they hold, though upstream shows some defaults:
# every key below them is ours to set (chart name -> key paths, as tuples of keys).
FREE_FORM: dict[str, tuple[tuple[str, ...], ...]] = {
    "cluster-autoscaler": (("extraArgs",),),  # each key becomes a --flag of cluster-autoscaler
    "kube-prometheus-stack": (("grafana", "grafana.ini"),),  # grafana.ini, rendered section by section
    # Each key names a node pool (the value of the nodes' pool label); the chart dumps the map whole.
    "fake-gpu-operator": (("topology", "nodePools"),),
}
# Chart name -> its vendored values.yaml: every chart the program installs must be here.
CHART_VALUES: dict[str, Path] = {name: chart.values for name, chart in vendored_charts().items()}


def chart_name(chart: str) -> str:
    """``oci://registry.k8s.io/kueue/charts/kueue`` -> ``kueue``; a plain chart name stays as it is."""
    return chart.rstrip("/").rpartition("/")[2]


def _vendored(chart: str, version: str | None) -> VendoredChart:
    name = chart_name(chart)
    if name not in vendored_charts():
        raise SchemaError(
            f"chart {chart!r}: its upstream values are not vendored (vendored: {', '.join(sorted(vendored_charts()))})"
        )
    vendored = vendored_charts()[name]
    if version is not None and str(version) != vendored.version:
        raise SchemaError(f"chart {name} {version}: the vendored values are of {vendored.version}; vendor {version}'s")
    return vendored


def _union(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _union(merged[key], value)
        else:
            merged[key] = value
    return merged


@cache
def chart_defaults(chart: str) -> dict[str, Any]:
    """The chart's default values, each vendored subchart's defaults under its key (the parent's stub on top)."""
    vendored = _vendored(chart, None)
    defaults: dict[str, Any] = yaml.safe_load(vendored.values.read_text()) or {}
    for key, path in vendored.subchart_values.items():
        defaults[key] = _union(yaml.safe_load(path.read_text()) or {}, defaults.get(key) or {})
    return defaults


def unknown_value_keys(ours: Mapping[str, Any], upstream: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Key paths in ``ours`` that the chart does not define.

    A chart map that is empty upstream (``nodeSelector: {}``, ``config.map: {}``) is free-form,
    and a key whose upstream default is a scalar or list is a leaf: anything below it is ours to set.
    A ``resources`` map is a Kubernetes ResourceRequirements whatever its upstream default shows
    (charts render it whole): its keys are checked against that type instead.
    """
    missing = []
    for key, value in ours.items():
        path = f"{prefix}{key}"
        if key not in upstream:
            missing.append(path)
            continue
        default = upstream[key]
        if key == "resources" and isinstance(value, Mapping) and isinstance(default, Mapping):
            missing += [f"{path}.{k}" for k in value if k not in RESOURCE_REQUIREMENTS]
            continue
        if isinstance(value, Mapping) and isinstance(default, Mapping) and default:
            missing += unknown_value_keys(value, default, f"{path}.")
    return missing


def unchecked_subcharts(chart: str, values: Mapping[str, Any]) -> set[str]:
    """Top-level keys of ``values`` that configure a subchart whose values are not vendored.

    A subtree the parent's own values.yaml defines entirely (a subchart's ``enabled`` condition,
    e.g. kube-prometheus-stack's ``crds.enabled``) is checked there instead.
    """
    vendored = _vendored(chart, None)
    parent = chart_defaults(chart_name(chart))
    return {
        key
        for key in values
        if key in vendored.dependencies
        and key not in vendored.subchart_values
        and (not isinstance(parent.get(key), Mapping) or unknown_value_keys(values[key], parent[key]))
    }


def unknown_release_keys(chart: str, values: Mapping[str, Any], version: str | None = None) -> list[str]:
    """Key paths of a release's ``values`` that its upstream chart (at ``version``) does not define.

    ``chart`` is what the Release says (a name or an ``oci://`` reference). Subtrees of subcharts
    whose values are not vendored are left out: see ``unchecked_subcharts``.
    """
    skip = unchecked_subcharts(chart, values)
    _vendored(chart, version)
    ours = {k: v for k, v in values.items() if k not in skip}
    upstream = chart_defaults(chart_name(chart))
    for path in FREE_FORM.get(chart_name(chart), ()):
        upstream = _free(upstream, path)
    return unknown_value_keys(ours, upstream)


def _free(values: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``values`` whose map at ``path`` is empty, so anything below it is accepted."""
    head, *rest = path
    out = dict(values)
    out[head] = _free(out.get(head) or {}, tuple(rest)) if rest else {}
    return out

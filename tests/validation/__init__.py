"""Validators the tests share: real Kubernetes schemas, upstream CRD schemas, upstream chart values.

- Built-in kinds: kubernetes-validate in strict mode (unknown fields are errors) at KUBERNETES_VERSION.
- Kueue kinds: the v1beta2 ``openAPIV3Schema`` of the upstream CRDs (vendored under
  tests/fixtures/upstream), made strict the way kubernetes-validate is: an object schema with
  declared properties admits no others unless it preserves unknown fields.
- Helm values: every key path we set must exist in the upstream chart's values.yaml, so a
  misspelt key (which Helm silently ignores) fails a test.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM = FIXTURES / "upstream"
KUBERNETES_VERSION = "1.34.0"

KUEUE_CRDS = {
    "ResourceFlavor": "kueue.x-k8s.io_resourceflavors.yaml",
    "ClusterQueue": "kueue.x-k8s.io_clusterqueues.yaml",
    "LocalQueue": "kueue.x-k8s.io_localqueues.yaml",
    "WorkloadPriorityClass": "kueue.x-k8s.io_workloadpriorityclasses.yaml",
}
# Chart name -> vendored upstream values.yaml. Charts absent here are not checked (see UNCHECKED_CHARTS).
CHART_VALUES = {
    "nvidia-device-plugin": UPSTREAM / "nvidia-device-plugin-v0.20.0" / "values.yaml",
    "dcgm-exporter": UPSTREAM / "dcgm-exporter-4.5.3-4.8.2" / "values.yaml",
    "oci://registry.k8s.io/kueue/charts/kueue": UPSTREAM / "kueue-v0.19.2" / "chart-values.yaml",
}


# API groups with no offline schema (prometheus-operator's CRDs are not vendored). Their objects'
# structure and PromQL are asserted in tests/test_monitoring*.py; callers must say so explicitly.
NO_OFFLINE_SCHEMA = {"monitoring.coreos.com": "prometheus-operator CRDs"}


class SchemaError(AssertionError):
    pass


def has_schema(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("apiVersion", "").split("/")[0] not in NO_OFFLINE_SCHEMA


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def kueue_schema(kind: str, version: str = "v1beta2") -> dict[str, Any]:
    crd = yaml.safe_load((UPSTREAM / "kueue-v0.19.2" / KUEUE_CRDS[kind]).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
            # metadata is validated by the API server, not the CRD schema.
            schema["properties"]["metadata"] = {"type": "object"}
            return _strict(schema)
    raise KeyError(f"{kind} CRD does not serve {version}")


def validate_kueue(manifest: Mapping[str, Any]) -> None:
    kind = manifest["kind"]
    api_version = manifest["apiVersion"]
    if api_version != "kueue.x-k8s.io/v1beta2":
        raise SchemaError(f"{kind} {manifest.get('metadata', {}).get('name')}: apiVersion {api_version}, want v1beta2")
    try:
        jsonschema.validate(dict(manifest), kueue_schema(kind))
    except jsonschema.ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path)
        raise SchemaError(f"{kind} {manifest.get('metadata', {}).get('name')}: {path}: {err.message}") from err


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Validate one object against its real schema; raises SchemaError naming the field."""
    if not has_schema(manifest):
        raise SchemaError(
            f"{manifest.get('kind')}: no offline schema for {manifest['apiVersion']} (check has_schema first)"
        )
    if manifest.get("apiVersion", "").startswith("kueue.x-k8s.io/"):
        validate_kueue(manifest)
        return
    try:
        kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        name = manifest.get("metadata", {}).get("name")
        raise SchemaError(f"{manifest.get('kind')} {name}: {path}: {err.message}") from err


@cache
def chart_defaults(chart: str) -> dict[str, Any]:
    return yaml.safe_load(CHART_VALUES[chart].read_text())


def unknown_value_keys(ours: Mapping[str, Any], upstream: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Key paths in ``ours`` that the chart does not define.

    A chart map that is empty upstream (``nodeSelector: {}``, ``config.map: {}``) is free-form,
    and a key whose upstream default is a scalar or list is a leaf: anything below it is ours to set.
    """
    missing = []
    for key, value in ours.items():
        path = f"{prefix}{key}"
        if key not in upstream:
            missing.append(path)
            continue
        default = upstream[key]
        if isinstance(value, Mapping) and isinstance(default, Mapping) and default:
            missing += unknown_value_keys(value, default, f"{path}.")
    return missing

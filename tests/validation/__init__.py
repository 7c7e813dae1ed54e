"""Validators the tests share: real Kubernetes schemas, upstream CRDs with their CEL rules, upstream chart values.

Call ``validate_manifest(obj)`` on any object the program registers; it raises SchemaError naming
the field, and returns a CelReport (how many CEL rules ran) so a test can prove the checks ran.

- Built-in kinds: kubernetes-validate in strict mode (unknown fields are errors) at KUBERNETES_VERSION.
- Custom resources (Kueue, JobSet, ProvisioningRequest, prometheus-operator, ...): the vendored
  upstream CRD that serves the object's group/version/kind (tests/validation/crds.py), its schema
  made strict, defaults applied, list-type uniqueness, every ``x-kubernetes-validations`` CEL
  rule evaluated (tests/validation/cel.py), then the create-time checks of the kind's validating
  webhook where upstream has one the CRD cannot express (tests/validation/webhooks.py: JobSet).
  An apiVersion no vendored CRD serves fails clearly.
- Helm values: every key path we set must exist in the upstream chart's values.yaml (and a
  subchart's, for its subtree), so a misspelt key, which Helm silently ignores, fails a test
  (tests/validation/helm.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import kubernetes_validate

from mlplatform.versions import CURRENT, ComponentVersions

from .cel import CelReport, UnsupportedRuleError, rule_violations
from .crds import UPSTREAM, CrdVersion, apply_defaults, crd_for, crd_versions, list_type_errors, schema_errors
from .errors import SchemaError
from .helm import CHART_VALUES, chart_defaults, unchecked_subcharts, unknown_release_keys, unknown_value_keys
from .webhooks import WEBHOOKS

__all__ = [
    "CHART_VALUES",
    "KUBERNETES_VERSION",
    "UPSTREAM",
    "CelReport",
    "CrdVersion",
    "SchemaError",
    "chart_defaults",
    "crd_for",
    "custom_resource_groups",
    "has_schema",
    "unchecked_subcharts",
    "unknown_release_keys",
    "unknown_value_keys",
    "validate_custom_resource",
    "validate_manifest",
]

KUBERNETES_VERSION = "1.34.0"


def custom_resource_groups(table: ComponentVersions = CURRENT) -> frozenset[str]:
    """API groups served by a vendored CRD."""
    return frozenset(group for group, _, _ in crd_versions(table))


def _name(manifest: Mapping[str, Any]) -> str:
    return f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"


def validate_custom_resource(manifest: Mapping[str, Any], table: ComponentVersions = CURRENT) -> CelReport:
    """Validate a custom resource as the API server would on create: CRD schema, then its CEL rules
    (the CRDs of the charts pinned in ``table``)."""
    crd = crd_for(str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")), table)
    obj = apply_defaults(dict(manifest), crd.schema)
    errors = schema_errors(obj, crd) + list_type_errors(obj, crd.schema)
    if errors:  # CEL rules assume a well-typed object (the API server does not run them otherwise)
        raise SchemaError(f"{_name(manifest)} ({crd.api_version}):\n  " + "\n  ".join(errors))
    try:
        violations, report = rule_violations(obj, crd.schema)
    except UnsupportedRuleError as err:
        raise SchemaError(f"{_name(manifest)} ({crd.api_version}): {err}") from err
    webhook = WEBHOOKS.get((crd.group, crd.kind))
    violations += webhook(obj) if webhook else []
    if violations:
        raise SchemaError(f"{_name(manifest)} ({crd.api_version}):\n  " + "\n  ".join(violations))
    return report


def validate_manifest(manifest: Mapping[str, Any], table: ComponentVersions = CURRENT) -> CelReport:
    """Validate one object against its real schema (and CEL rules, of the CRDs pinned in ``table``);
    raises SchemaError naming the field."""
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    # A dotted group outside *.k8s.io is a custom resource: unvendored, it fails naming what is vendored.
    if group in custom_resource_groups(table) or ("." in group and not group.endswith(".k8s.io")):
        return validate_custom_resource(manifest, table)
    try:
        kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        raise SchemaError(f"{_name(manifest)}: {path}: {err.message}") from err
    except kubernetes_validate.SchemaNotFoundError as err:
        raise SchemaError(
            f"{_name(manifest)}: no schema for {manifest.get('apiVersion')}: not a Kubernetes {KUBERNETES_VERSION} "
            f"kind, and no vendored CRD serves it (vendored groups: {', '.join(sorted(custom_resource_groups()))})"
        ) from err
    return CelReport()


@cache
def _builtin(api_version: str, kind: str) -> bool:
    try:
        kubernetes_validate.validate({"apiVersion": api_version, "kind": kind}, KUBERNETES_VERSION)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        pass
    return True


def has_schema(manifest: Mapping[str, Any]) -> bool:
    """Whether ``validate_manifest`` can check this object (a built-in kind or a vendored CRD's)."""
    api_version, kind = str(manifest.get("apiVersion", "")), str(manifest.get("kind", ""))
    try:
        crd_for(api_version, kind)
        return True
    except SchemaError:
        return _builtin(api_version, kind)

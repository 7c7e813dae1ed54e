"""The vendored CustomResourceDefinitions, indexed by what they serve, and their schemas made strict.

Every ``*.yaml`` under tests/fixtures/upstream holding a CustomResourceDefinition is read: its
``spec.group``, ``spec.names.kind`` and ``spec.versions`` say which apiVersion/kind it validates,
so vendoring a CRD is all it takes to validate its objects (no hand-kept table).

What the API server does on create, in its order, and what is mirrored here:
1. defaulting from the schema's ``default`` values (CEL rules see defaulted objects);
2. the OpenAPI v3 schema, made strict the way kubernetes-validate is: an object schema with
   declared properties admits no others unless it preserves unknown fields (the API server would
   prune them silently: a typo would vanish instead of failing);
3. ``x-kubernetes-list-type`` uniqueness (set items, map keys);
4. the ``x-kubernetes-validations`` CEL rules (tests/validation/cel.py).
``metadata`` at the root is the API server's ObjectMeta, not the CRD's to describe.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import re2
import yaml

from mlplatform.versions import COMPONENT_VERSIONS, CURRENT, ComponentVersions

from .errors import SchemaError

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
CRD_MARKER = "kind: CustomResourceDefinition"

__all__ = [
    "UPSTREAM",
    "CrdVersion",
    "apply_defaults",
    "crd_for",
    "crd_versions",
    "list_type_errors",
    "schema_errors",
]


@dataclass(frozen=True)
class CrdVersion:
    """One served version of one vendored CRD."""

    path: Path
    group: str
    kind: str
    version: str
    deprecated: bool
    deprecation_warning: str
    storage: bool
    schema_json: str  # openAPIV3Schema as JSON text: hashable and immutable, parsed once by ``schema``

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def schema(self) -> dict[str, Any]:
        """The version's openAPIV3Schema, root ``metadata`` left to the API server (shared: do not mutate)."""
        return _schema(self.schema_json)


@cache
def _schema(schema_json: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_json)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def _pinned_elsewhere(directory: Path, table: ComponentVersions) -> bool:
    """Whether ``directory`` (``<chart>-<version>`` or ``<chart>-v<version>``) holds a chart version
    pinned by another table and not by ``table``: its CRDs are that release's, not this one's."""
    for other in COMPONENT_VERSIONS.values():
        for key, chart in other.charts().items():
            mine = table.charts()[key]
            named = directory.name in (f"{chart.short_name}-{chart.version}", f"{chart.short_name}-v{chart.version}")
            if named and chart.version != mine.version:
                return True
    return False


def _crd_documents(table: ComponentVersions = CURRENT) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(UPSTREAM.rglob("*.yaml")):
        if _pinned_elsewhere(path.parent, table):
            continue
        text = path.read_text()
        if CRD_MARKER not in text:  # chart values are large: parse only what can be a CRD
            continue
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                yield path, doc


@cache
def crd_versions(table: ComponentVersions = CURRENT) -> dict[tuple[str, str, str], CrdVersion]:
    """(group, version, kind) -> the served CRD version, for every vendored CRD of the charts pinned
    in ``table`` (a fixture directory of another table's chart version is left out)."""
    index: dict[tuple[str, str, str], CrdVersion] = {}
    for path, crd in _crd_documents(table):
        spec = crd["spec"]
        for served in spec["versions"]:
            if not served.get("served", False):
                continue
            entry = CrdVersion(
                path=path,
                group=spec["group"],
                kind=spec["names"]["kind"],
                version=served["name"],
                deprecated=bool(served.get("deprecated", False)),
                deprecation_warning=served.get("deprecationWarning", ""),
                storage=bool(served.get("storage", False)),
                schema_json=json.dumps(served["schema"]["openAPIV3Schema"]),
            )
            key = (entry.group, entry.version, entry.kind)
            if key in index:
                raise SchemaError(f"{entry.api_version} {entry.kind} is defined twice: {index[key].path} and {path}")
            index[key] = entry
    return index


def crd_for(api_version: str, kind: str, table: ComponentVersions = CURRENT) -> CrdVersion:
    """The vendored CRD version serving ``apiVersion``/``kind``; SchemaError naming what is served otherwise.

    A deprecated version is refused too: it is served, but the platform writes the current one.
    """
    group, _, version = api_version.rpartition("/")
    index = crd_versions(table)
    in_group = [v for (g, _, _), v in index.items() if g == group]
    if not in_group:
        groups = sorted({g for g, _, _ in index})
        raise SchemaError(
            f"{kind}: no vendored CRD serves API group {group!r} (apiVersion {api_version}); vendored groups: "
            f"{', '.join(groups)}. Vendor the upstream CRD under tests/fixtures/upstream to validate it."
        )
    versions = sorted(v.version for v in in_group if v.kind == kind)
    if not versions:
        kinds = sorted({v.kind for v in in_group})
        raise SchemaError(f"{kind}: API group {group} has no kind {kind!r}; its vendored kinds: {', '.join(kinds)}")
    entry = index.get((group, version, kind))
    current = [v.version for v in in_group if v.kind == kind and not v.deprecated]
    if entry is None:
        raise SchemaError(f"{kind}: {group} does not serve version {version!r}; served: {', '.join(versions)}")
    if entry.deprecated:
        raise SchemaError(
            f"{kind}: {api_version} is deprecated ({entry.deprecation_warning or 'deprecated upstream'}); "
            f"write {', '.join(f'{group}/{v}' for v in current)}"
        )
    return entry


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: (v if k in ("default", "example", "enum") else _strict(v)) for k, v in schema.items()}
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
        if out.get("nullable") and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    # The API server matches patterns with Go's regexp (RE2 syntax: ``^(?i)...`` is valid there, not in re).
    if isinstance(instance, str) and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# OpenAPI v3.0 schema objects are JSON Schema draft 4 in spirit (boolean exclusiveMinimum).
_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _re2_pattern})


@cache
def _validator(schema_json: str) -> Any:
    return _Validator(_strict(_schema(schema_json)))


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def schema_errors(manifest: Mapping[str, Any], crd: CrdVersion) -> list[str]:
    """The strict OpenAPI schema's errors, one ``path: message`` each, in path order."""
    errors = _validator(crd.schema_json).iter_errors(manifest)
    return sorted(f"{_path(e.absolute_path)}: {e.message}" for e in errors)


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with the schema's defaults filled in, as the API server does before validating."""
    value = copy.deepcopy(value)
    _default(value, schema)
    return value


def _default(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, prop in properties.items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _default(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


def list_type_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Duplicates the API server refuses: items of an ``x-kubernetes-list-type: set``, keys of a ``map`` list."""
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += list_type_errors(item, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            if list_type == "set":
                identity = json.dumps(item, sort_keys=True)
            elif list_type == "map" and isinstance(item, dict):
                keys = schema.get("x-kubernetes-list-map-keys", [])
                identity = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            else:
                identity = ""
            if identity:
                if identity in seen:
                    errors.append(f"{path}[{i}]: Duplicate value: {identity} (also at [{seen[identity]}])")
                seen.setdefault(identity, i)
            if isinstance(schema.get("items"), dict):
                errors += list_type_errors(item, schema["items"], f"{path}[{i}]")
    return errors

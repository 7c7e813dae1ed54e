"""The plain data every rule works on, and the few helpers that read Kubernetes-shaped props.

Rules take ``Resource`` values and return ``Violation`` values; nothing here imports the policy
SDK, so every rule is a pure function testable with hand-built dicts. Props may be plain dicts or
the SDK's read-only proxies (``Mapping``/``Sequence``, which raise on a value unknown during
preview): the helpers test for the ABCs, never for ``dict``/``list``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Resource",
    "Violation",
    "as_list",
    "as_map",
    "get_path",
    "k8s_kind",
    "namespace_of",
]


@dataclass(frozen=True)
class Resource:
    """One resource as the engine describes it: type token, name, URN and input properties."""

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    parent: str = ""


@dataclass(frozen=True)
class Violation:
    """What is wrong and what to change; ``urn`` names the offending resource (stack rules)."""

    message: str
    urn: str = ""
    details: tuple[str, ...] = field(default=())


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (absent and null fields read as empty)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> Sequence[Any]:
    """``value`` if it is a sequence other than a string, else an empty one."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return value
    return ()


def get_path(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` or None as soon as a level is missing or not a mapping."""
    for key in keys:
        mapping = as_map(value)
        if key not in mapping:
            return None
        value = mapping[key]
    return value


def k8s_kind(type_token: str) -> tuple[str, str] | None:
    """``kubernetes:apps/v1:Deployment`` -> ("apps", "Deployment"); core group is "".

    None for anything that is not a plain Kubernetes object (Helm, providers, yaml components).
    Patch resources (``DeploymentPatch``) keep their own kind and so match no workload rule: a
    patch carries only the fields it changes, and judging that fragment as a whole pod would be wrong.
    """
    parts = type_token.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    group_version, kind = parts[1], parts[2]
    if group_version.startswith(("helm.sh/", "yaml/", "kustomize/")) or group_version == "providers":
        return None
    group = group_version.rpartition("/")[0] if "/" in group_version else ""
    return ("" if group == "core" else group), kind


def namespace_of(props: Mapping[str, Any]) -> str:
    """The object's namespace; the provider's default (``default``) when none is set."""
    namespace = get_path(props, "metadata", "namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"

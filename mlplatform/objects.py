"""Turn plain Kubernetes manifests (dicts) into Pulumi resources, and a few shared builders.

Pure functions elsewhere build manifests; ``apply`` is the one thin step that registers them,
with the typed pulumi-kubernetes class for built-in kinds and ``CustomResource`` for CRDs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

__all__ = ["PSA_LABEL_PREFIX", "apply", "labels_for", "namespace_manifest"]

PSA_LABEL_PREFIX = "pod-security.kubernetes.io"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "ml-platform"}

_K8S_PLUGIN_VERSION = importlib.metadata.version("pulumi-kubernetes")

# apiVersion group -> pulumi_kubernetes module
_GROUP_MODULES = {
    "": "core",
    "apps": "apps",
    "batch": "batch",
    "policy": "policy",
    "autoscaling": "autoscaling",
    "networking.k8s.io": "networking",
    "rbac.authorization.k8s.io": "rbac",
    "scheduling.k8s.io": "scheduling",
    "node.k8s.io": "node",
    "storage.k8s.io": "storage",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _typed_class(api_version: str, kind: str) -> Any | None:
    group, _, version = api_version.rpartition("/")
    module_name = _GROUP_MODULES.get(group)
    if module_name is None:
        return None
    module = importlib.import_module(f"pulumi_kubernetes.{module_name}.{version}")
    return getattr(module, kind, None)


class _CrdObject(pulumi.CustomResource):
    """A custom resource with top-level fields besides ``spec`` (e.g. Kueue's
    WorkloadPriorityClass has ``value`` and ``description``), which ``CustomResource`` cannot carry."""

    def __init__(self, name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions | None) -> None:
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        # The typed classes pin the provider plugin version; do the same.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=_K8S_PLUGIN_VERSION))
        super().__init__(f"kubernetes:{api_version}:{kind}", name, dict(manifest), opts)


def apply(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> pulumi.CustomResource:
    """Register ``manifest`` as a Pulumi resource named ``name``."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    cls = _typed_class(api_version, kind)
    if cls is not None:
        return cls(name, opts=opts, **{_snake(k): v for k, v in body.items()})
    if set(body) <= {"metadata", "spec"}:
        return k8s.apiextensions.CustomResource(
            name, api_version=api_version, kind=kind, metadata=body.get("metadata"), spec=body.get("spec"), opts=opts
        )
    return _CrdObject(name, manifest, opts)


def labels_for(component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/component": component, **MANAGED_BY, **extra}


def namespace_manifest(
    name: str, psa_level: str, psa_version: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Namespace that enforces, audits and warns at one Pod Security Standards level."""
    psa = {}
    for mode in ("enforce", "audit", "warn"):
        psa[f"{PSA_LABEL_PREFIX}/{mode}"] = psa_level
        psa[f"{PSA_LABEL_PREFIX}/{mode}-version"] = psa_version
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**MANAGED_BY, **psa, **(labels or {})}},
    }


def child_options(
    component_opts: pulumi.ResourceOptions | None,
    parent: pulumi.Resource,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    **kwargs: Any,
) -> pulumi.ResourceOptions:
    """Options for a component's child: parented to it, and waiting for whatever the component
    was told to wait for. Pulumi does not pass a component's ``depends_on`` to its children, so
    without this a "serve after training" on the component would order nothing."""
    given = component_opts.depends_on if component_opts is not None else None
    inherited: list[Any]
    if given is None:
        inherited = []
    elif isinstance(given, pulumi.Resource):
        inherited = [given]
    elif isinstance(given, (list, tuple)):
        inherited = list(given)
    else:
        raise TypeError(f"{parent}: depends_on must be a resource or a list of resources, got {type(given).__name__}")
    return pulumi.ResourceOptions(parent=parent, depends_on=[*inherited, *depends_on], **kwargs)

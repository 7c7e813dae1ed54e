"""CRDs Helm would never upgrade (a chart's ``crds/`` directory), applied by the program itself.

Helm installs a chart's ``crds/`` only on first install and never upgrades or deletes them. For
those charts (``versions.CrdUpkeep.PROGRAM``) the program applies the chart's pinned CRD files,
vendored byte for byte under ``mlplatform/crds/<bundle>/`` (README.md there), before the release,
and the release is told to leave them alone. A version bump points at another bundle: the same
Pulumi resources (named by CRD, never by version) are updated, so the CRDs are upgraded in place.

Lifecycle:
- Server-side apply under a field manager of its own (``FIELD_MANAGER``), forced: on a stack whose
  CRDs Helm installed before, the first apply takes their fields over from Helm's manager instead
  of conflicting with it (nothing else manages a CRD's spec).
- Those CRDs already exist: the resources use a provider that adopts existing objects
  (``adopting_provider``, upsert) instead of failing with AlreadyExists; only CRDs use it.
- Never deleted by an upgrade: a CRD a newer chart no longer ships must stay in the table (a
  bundle keeps the older file) or Pulumi would delete it and every object of it; ``upgrade_plan``
  and a test refuse a bump that drops one. ``destroy`` deletes them all, after everything that
  depends on them: they are ordinary resources of the stack (no retain_on_delete, no Helm hook).
"""

from __future__ import annotations

import bz2
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from ..objects import child_options
from ..versions import Chart, CrdUpkeep

__all__ = [
    "BUNDLES",
    "BUNDLE_ANNOTATION",
    "FIELD_MANAGER",
    "ChartCrds",
    "adopting_provider",
    "bundle_crds",
    "chart_crd_manifests",
]

BUNDLES = Path(__file__).resolve().parent
FIELD_MANAGER = "mlplatform-crds"
# Which chart version's files an applied CRD comes from (upgrade_plan reads it from a render).
BUNDLE_ANNOTATION = "mlplatform.io/crds-of"


class _CrdLoader(yaml.CSafeLoader):
    """YAML as the API server reads it: a bare ``=`` (an enum value in prometheus-operator's CRDs)
    is the string "=", not YAML 1.1's value tag, which PyYAML cannot construct."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _documents(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    text = (bz2.decompress(raw) if path.suffix == ".bz2" else raw).decode("utf-8")
    return [doc for doc in yaml.load_all(text, Loader=_CrdLoader) if doc]


def bundle_crds(bundle: str) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in ``mlplatform/crds/<bundle>/`` (YAML or the chart's
    ``crds.bz2``), exactly as upstream wrote them, sorted by name."""
    directory = BUNDLES / bundle
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.bz2")])
    if not files:
        raise FileNotFoundError(f"no CRD files in {directory}: vendor the chart's CRDs there (README.md)")
    crds = [doc for path in files for doc in _documents(path)]
    if any(doc.get("kind") != "CustomResourceDefinition" for doc in crds):
        raise ValueError(f"{directory}: every document must be a CustomResourceDefinition")
    return sorted(crds, key=lambda crd: str(crd["metadata"]["name"]))


def chart_crd_manifests(chart: Chart) -> list[dict[str, Any]]:
    """The CRDs the program applies for ``chart`` (none unless the program keeps them), each
    annotated with its bundle and told to use the program's own field manager, forced."""
    if chart.crds.upkeep is not CrdUpkeep.PROGRAM or chart.crds.bundle is None:
        return []
    manifests = []
    for crd in bundle_crds(chart.crds.bundle):
        metadata = dict(crd["metadata"])
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            BUNDLE_ANNOTATION: chart.crds.bundle,
            "pulumi.com/patchFieldManager": FIELD_MANAGER,
            "pulumi.com/patchForce": "true",
        }
        manifests.append({**crd, "metadata": metadata})
    return manifests


def adopting_provider(name: str, kubeconfig: pulumi.Input[str], opts: pulumi.ResourceOptions) -> k8s.Provider:
    """A provider to the same cluster that applies over an object that already exists (a CRD Helm
    installed) instead of failing: for the program's CRDs only, whose resource names never change
    (a renamed resource would otherwise be applied, then deleted)."""
    return k8s.Provider(name, kubeconfig=kubeconfig, upsert_existing_objects=True, opts=opts)


class ChartCrds(pulumi.ComponentResource):
    """The CRDs of ``chart`` that Helm would not upgrade, applied at the chart's pinned version.

    ``resources`` is what the chart's release (and anything else using these APIs) depends on.
    """

    def __init__(
        self,
        name: str,
        chart: Chart,
        *,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:crds:ChartCrds", name, None, opts)
        manifests = chart_crd_manifests(chart)
        self.resources: list[pulumi.Resource] = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                # Named by the CRD, never by the version: a bump updates the same resource in place.
                f"{name}-{crd['metadata']['name']}",
                metadata=crd["metadata"],
                spec=crd["spec"],
                opts=child_options(opts, self, provider=provider),
            )
            for crd in manifests
        ]
        self.crd_names = pulumi.Output.from_input([str(crd["metadata"]["name"]) for crd in manifests])
        self.register_outputs({"crd_names": self.crd_names})

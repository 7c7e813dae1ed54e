"""JobSet: a group of Jobs run, restarted and admitted as one (distributed training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import versions
from .crds import ChartCrds
from .helm import release
from .objects import apply, child_options, namespace_manifest

__all__ = ["JOBSET_API_VERSION", "JOBSET_NAMESPACE", "JobSetController", "jobset_values"]

JOBSET_NAMESPACE = "jobset-system"
JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"


def jobset_values(pins: versions.ComponentVersions = versions.CURRENT) -> dict[str, Any]:
    """The controller, pinned, sized for a small cluster (the chart asks for up to 2 CPUs and 4Gi)."""
    repository, tag = pins.jobset_image
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "controller": {
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        },
    }


class JobSetController(pulumi.ComponentResource):
    """The JobSet controller and webhook (chart ``jobset``, pinned in ``pins``) in their own namespace.

    Guarantees: the namespace enforces Pod Security ``restricted`` (the chart's pods run as
    non-root with a RuntimeDefault seccomp profile, no privilege escalation and no capabilities);
    the JobSet CRD (the chart's crds/, which Helm never upgrades) is applied by the program at the
    pinned version before the release; the release is awaited, so JobSets (whose webhook fails
    closed) can depend on it.
    """

    def __init__(
        self,
        name: str,
        *,
        crd_provider: k8s.Provider,
        pins: versions.ComponentVersions = versions.CURRENT,
        values_overrides: Mapping[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:jobset:JobSetController", name, None, opts)
        namespace = apply(
            f"{name}-namespace",
            namespace_manifest(JOBSET_NAMESPACE, "restricted", versions.PSA_VERSION),
            child_options(opts, self),
        )
        crds = ChartCrds(f"{name}-crds", pins.jobset, provider=crd_provider, opts=child_options(opts, self))
        self.release = release(
            "jobset",
            pins.jobset,
            namespace=JOBSET_NAMESPACE,
            values=jobset_values(pins),
            values_overrides=values_overrides,
            opts=child_options(opts, self, depends_on=[namespace, *crds.resources]),
        )
        self.namespace_name = pulumi.Output.from_input(JOBSET_NAMESPACE)
        self.register_outputs({"namespace_name": self.namespace_name})

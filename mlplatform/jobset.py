"""JobSet: a group of Jobs run, restarted and admitted as one (distributed training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from . import versions
from .helm import release
from .objects import apply, child_options, namespace_manifest

__all__ = ["JOBSET_API_VERSION", "JOBSET_NAMESPACE", "JobSetController", "jobset_values"]

JOBSET_NAMESPACE = "jobset-system"
JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"


def jobset_values() -> dict[str, Any]:
    """The controller, pinned, sized for a small cluster (the chart asks for up to 2 CPUs and 4Gi)."""
    repository, tag = versions.JOBSET_IMAGE
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "controller": {
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        },
    }


class JobSetController(pulumi.ComponentResource):
    """The JobSet controller and webhook (chart ``jobset`` 0.12.0) in their own namespace.

    Guarantees: the namespace enforces Pod Security ``restricted`` (the chart's pods run as
    non-root with a RuntimeDefault seccomp profile, no privilege escalation and no capabilities);
    the release is awaited, so JobSets (whose webhook fails closed) can depend on it.
    """

    def __init__(
        self,
        name: str,
        *,
        values_overrides: Mapping[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:jobset:JobSetController", name, None, opts)
        namespace = apply(
            f"{name}-namespace",
            namespace_manifest(JOBSET_NAMESPACE, "restricted", versions.PSA_VERSION),
            child_options(opts, self),
        )
        self.release = release(
            "jobset",
            versions.JOBSET,
            namespace=JOBSET_NAMESPACE,
            values=jobset_values(),
            values_overrides=values_overrides,
            opts=child_options(opts, self, depends_on=[namespace]),
        )
        self.namespace_name = pulumi.Output.from_input(JOBSET_NAMESPACE)
        self.register_outputs({"namespace_name": self.namespace_name})

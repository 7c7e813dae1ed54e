"""metrics-server, so HorizontalPodAutoscalers have CPU and memory metrics (kind ships none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from . import versions
from .helm import release
from .objects import child_options

__all__ = ["MetricsServer", "metrics_server_values"]


def metrics_server_values(*, insecure_kubelet_tls: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "256Mi"}},
    }
    if insecure_kubelet_tls:
        # kind's kubelets serve self-signed certificates that metrics-server cannot verify.
        values["args"] = ["--kubelet-insecure-tls"]
    return values


class MetricsServer(pulumi.ComponentResource):
    """metrics-server in kube-system, pinned; ``insecure_kubelet_tls`` only for kind."""

    def __init__(
        self,
        name: str,
        *,
        insecure_kubelet_tls: bool,
        pins: versions.ComponentVersions = versions.CURRENT,
        values_overrides: Mapping[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:metrics:MetricsServer", name, None, opts)
        metrics = release(
            "metrics-server",
            pins.metrics_server,
            namespace="kube-system",
            values=metrics_server_values(insecure_kubelet_tls=insecure_kubelet_tls),
            values_overrides=values_overrides,
            opts=child_options(opts, self),
        )
        self.release_name: pulumi.Output[str] = metrics.name  # type: ignore[assignment]
        self.register_outputs({"release_name": self.release_name})

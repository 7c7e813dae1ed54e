"""CPU work stays off GPU nodes: in ML namespaces only a pod that requests a GPU tolerates their taint.

The platform keeps CPU-only workloads off GPU nodes by construction (a pod set that requests no
GPU is never given the GPU flavor, which is what adds the toleration: mlplatform/team_queues.py).
A pod that brings the toleration itself gets around that, and would sit on a node that costs ten
times a CPU node; this rule reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .containers import GPU_RESOURCE
from .context import StackContext, Taint, Workload, tolerates
from .model import Violation, as_list, as_map

__all__ = ["DEFAULT_GPU_TAINT", "gpu_toleration_violations", "requests_gpu"]

# The taint the platform's GPU pools carry, for stacks whose pools the pack cannot see.
DEFAULT_GPU_TAINT = Taint(GPU_RESOURCE, "present", "NoSchedule")


def requests_gpu(spec: Mapping[str, Any]) -> bool:
    """Whether any (init) container of the pod spec asks for ``nvidia.com/gpu``."""
    for key in ("containers", "initContainers"):
        for container in as_list(spec.get(key)):
            resources = as_map(as_map(container).get("resources"))
            if any(GPU_RESOURCE in as_map(resources.get(kind)) for kind in ("requests", "limits")):
                return True
    return False


def _gpu_taints(ctx: StackContext) -> list[Taint]:
    found = [t for pool in ctx.pools if pool.is_gpu for t in pool.taints if t.key == GPU_RESOURCE and t.repels]
    return found or [DEFAULT_GPU_TAINT]


def _where(workload: Workload) -> str:
    part = f" {workload.template.part}" if workload.template.part else ""
    return f"{workload.template.kind} {workload.namespace}/{workload.resource.name}{part}"


def gpu_toleration_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """A pod template in an ML namespace that tolerates a GPU pool's taint requests a GPU."""
    ml = set(ctx.ml_namespaces)
    taints = _gpu_taints(ctx)
    out = []
    for workload in ctx.workloads:
        if workload.namespace not in ml:
            continue
        tolerations = as_list(workload.template.spec.get("tolerations"))
        tolerated = next((t for t in taints if tolerates(tolerations, t)), None)
        if tolerated is None or requests_gpu(workload.template.spec):
            continue
        out.append(
            Violation(
                f"{_where(workload)} tolerates the GPU nodes' taint {tolerated.key}={tolerated.value}:"
                f"{tolerated.effect} but requests no {GPU_RESOURCE}, so it can land on (and keep alive) a GPU "
                f"node: remove that toleration from its pod template (Kueue adds it to workloads it admits on "
                f"the GPU flavor), or request {GPU_RESOURCE}",
                workload.resource.urn,
            )
        )
    return out

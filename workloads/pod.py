"""Pod-level building blocks every workload shares: the restricted security profile,
resources, and volumes (a claim or a scratch directory) with their mounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlplatform.cluster.pools import GPU_RESOURCE

__all__ = ["RUN_AS_UID", "EmptyDir", "Mount", "container_security", "pod_security", "resources", "volumes_and_mounts"]

# A numeric non-root UID: PSA `restricted` cannot verify runAsNonRoot against a user *name*.
RUN_AS_UID = 10001


def pod_security(uid: int = RUN_AS_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    """Pod Security Standards `restricted`, plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(
    cpu: str, memory: str, *, gpus: int = 0, cpu_limit: str | None = None, memory_limit: str | None = None
) -> dict[str, Any]:
    """Requests and limits; GPUs cannot be overcommitted, so their limit always equals the request."""
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    limits: dict[str, Any] = {"cpu": cpu_limit or cpu, "memory": memory_limit or memory}
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    return {"requests": requests, "limits": limits}


@dataclass(frozen=True)
class Mount:
    """A PersistentVolumeClaim mounted at ``path``."""

    name: str
    path: str
    claim: str
    read_only: bool = False


@dataclass(frozen=True)
class EmptyDir:
    """Scratch space at ``path`` (the root filesystem is read-only); gone with the pod."""

    name: str
    path: str
    size_limit: str = "1Gi"


def volumes_and_mounts(volumes: Sequence[Mount | EmptyDir]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pod_volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for v in volumes:
        if isinstance(v, Mount):
            source: Mapping[str, Any] = {"persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}}
            mounts.append({"name": v.name, "mountPath": v.path, "readOnly": v.read_only})
        else:
            source = {"emptyDir": {"sizeLimit": v.size_limit}}
            mounts.append({"name": v.name, "mountPath": v.path})
        pod_volumes.append({"name": v.name, **source})
    return pod_volumes, mounts


def env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]

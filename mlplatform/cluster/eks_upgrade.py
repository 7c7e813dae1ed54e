"""The EKS version gate: refuses a skipped minor or a downgrade in `pulumi preview` and `up`.

Why a dynamic resource: the version the cluster was last deployed at lives only in the stack's
state, and the engine hands a resource's recorded inputs to its provider's ``check`` together
with the new ones. ``check`` runs in preview and in up, before the resource's step, and every
resource of ``EksCluster`` depends on the gate (``eks.py`` adds the dependency with a transformation):
a refused change stops the run before anything is sent to AWS (only the program's read-only
lookups at start come first).

The provider class is pickled by reference to this module, so it must stay importable from the
project root under this name (the engine runs it in a separate process, from the project root).
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from ..eks_versions import upgrade_refusal

__all__ = ["KubernetesVersionGate", "KubernetesVersionGateProvider", "gate_failures"]

VERSION = "kubernetesVersion"
CLUSTER = "clusterName"


def gate_failures(olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
    """The check: a new cluster (no record, or another name) takes any version; an existing one
    moves at most one minor up."""
    recorded = olds.get(VERSION) if olds.get(CLUSTER) == news.get(CLUSTER) else None
    reason = upgrade_refusal(recorded, news[VERSION])
    return [CheckFailure(VERSION, reason)] if reason else []


class KubernetesVersionGateProvider(ResourceProvider):
    """Holds no cloud object: it only records the version and checks each change of it."""

    serialize_as_secret_always = False  # nothing secret in it; keeps the state and diffs readable

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, gate_failures(_olds, news))

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        changed = [k for k in (VERSION, CLUSTER) if _olds.get(k) != _news.get(k)]
        # Another cluster name is another cluster: a new record.
        return DiffResult(changes=bool(changed), replaces=[CLUSTER] if CLUSTER in changed else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(str(props[CLUSTER]), {VERSION: props[VERSION], CLUSTER: props[CLUSTER]})

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({VERSION: _news[VERSION], CLUSTER: _news[CLUSTER]})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the record goes with the state."""


class KubernetesVersionGate(Resource, module="eks", name="KubernetesVersionGate"):
    """The Kubernetes minor ``cluster_name`` was last deployed at; a skip or downgrade fails check."""

    def __init__(
        self, name: str, *, cluster_name: str, kubernetes_version: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            KubernetesVersionGateProvider(),
            name,
            {CLUSTER: cluster_name, VERSION: kubernetes_version},
            opts,
        )

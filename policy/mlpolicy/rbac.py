"""What the stack's RoleBindings and ClusterRoleBindings give the service accounts of ML namespaces.

Only one grant is allowed to an ML namespace's service account: the JobSet launcher's, ``create`` on
``jobsets.jobset.x-k8s.io`` in its own namespace, through a RoleBinding of a Role the stack creates
there, naming the service account itself. Subjects are matched as the API server's RBAC authorizer
matches them: a ServiceAccount subject without a namespace means the binding's namespace; the groups
``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated`` and the
user ``system:serviceaccount:<ns>:<name>`` reach service accounts too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .context import StackContext
from .model import Resource, as_list, as_map, get_path, k8s_kind, namespace_of

__all__ = [
    "LAUNCHER_RULE",
    "LAUNCHER_RULE_TEXT",
    "BindingReport",
    "binding_reports",
    "excess_rights",
    "object_name",
]

RBAC_GROUP = "rbac.authorization.k8s.io"
LAUNCHER_RULE = ("jobset.x-k8s.io", "jobsets", "create")  # (apiGroup, resource, verb)
LAUNCHER_RULE_TEXT = "{apiGroups: [jobset.x-k8s.io], resources: [jobsets], verbs: [create]}"
ANY = "*"
_SA_USER_PREFIX = "system:serviceaccount:"
_SA_GROUP = "system:serviceaccounts"
_ALL_SA_GROUPS = frozenset({_SA_GROUP, "system:authenticated"})


def object_name(resource: Resource) -> str:
    """``namespace/name`` (or ``name`` for a cluster-scoped object) as Kubernetes knows it."""
    name = get_path(resource.props, "metadata", "name") or resource.name
    namespace = get_path(resource.props, "metadata", "namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def _reach(subject: Mapping[str, Any], binding_namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the service accounts ``subject`` names; ``*`` for every one; None for none."""
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)
        return (namespace, name) if namespace and name else None
    if kind == "User" and name.startswith(_SA_USER_PREFIX):
        namespace, _, sa = name[len(_SA_USER_PREFIX) :].partition(":")
        return (namespace, sa) if namespace and sa else None
    if kind == "Group":
        if name in _ALL_SA_GROUPS:
            return ANY, ANY
        if name.startswith(f"{_SA_GROUP}:"):
            return name[len(_SA_GROUP) + 1 :], ANY
    return None


def _covers(reach: tuple[str, str], namespace: str, name: str | None = None) -> bool:
    """``reach`` includes service account ``namespace/name`` (any of the namespace's when name is None)."""
    return reach[0] in (ANY, namespace) and (name is None or reach[1] in (ANY, name))


def _describe(reach: tuple[str, str], namespaces: Iterable[str]) -> str:
    if reach[0] == ANY:
        return f"every service account (so those of {', '.join(sorted(namespaces))})"
    return f"every service account of {reach[0]}" if reach[1] == ANY else f"{reach[0]}/{reach[1]}"


def excess_rights(rules: Iterable[Any]) -> list[str]:
    """What ``rules`` grant beyond the launcher's single rule (``verb resource.group`` each, wildcards
    kept as written); resourceNames only narrow a grant, so they are ignored."""
    excess: list[str] = []
    for rule in map(as_map, rules):
        verbs = [str(v) for v in as_list(rule.get("verbs"))]
        for url in as_list(rule.get("nonResourceURLs")):
            excess += [f"{verb} {url}" for verb in verbs]
        for group in as_list(rule.get("apiGroups")):
            for resource in as_list(rule.get("resources")):
                for verb in verbs:
                    if (group, resource, verb) != LAUNCHER_RULE:
                        excess.append(f"{verb} {resource}.{group}" if group else f"{verb} {resource}")
    return list(dict.fromkeys(excess))


def _grants_launch(rules: Iterable[Any]) -> bool:
    for rule in map(as_map, rules):
        triples = {
            (g, r, v)
            for g in as_list(rule.get("apiGroups"))
            for r in as_list(rule.get("resources"))
            for v in as_list(rule.get("verbs"))
        }
        if LAUNCHER_RULE in triples:
            return True
    return False


@dataclass(frozen=True)
class BindingReport:
    """One binding that reaches a service account of an ML namespace, and what is wrong with it."""

    binding: Resource
    where: str  # "RoleBinding ns/name" or "ClusterRoleBinding name"
    reaches: tuple[tuple[str, str], ...]  # the (namespace, name) subjects that reach ML service accounts
    problems: tuple[str, ...]  # each phrased as the change to make to the binding
    role: Resource | None  # the Role it binds, when the stack creates it
    role_excess: tuple[str, ...]  # what that Role grants beyond the launcher's rule
    grants_launch: bool  # the bound Role grants the launcher's rule

    def reaches_account(self, namespace: str, name: str) -> bool:
        return any(_covers(r, namespace, name) for r in self.reaches)

    @property
    def fine(self) -> bool:
        return not self.problems and not self.role_excess

    def describe_subjects(self, ml_namespaces: Iterable[str]) -> str:
        return ", ".join(_describe(r, ml_namespaces) for r in self.reaches)


def _role_named(ctx: StackContext, namespace: str, name: Any) -> Resource | None:
    return next(
        (r for r in ctx.of_kind(RBAC_GROUP, "Role", namespace) if get_path(r.props, "metadata", "name") == name), None
    )


def _report(ctx: StackContext, binding: Resource, ml: set[str]) -> BindingReport | None:
    cluster_wide = k8s_kind(binding.type) == (RBAC_GROUP, "ClusterRoleBinding")
    namespace = "" if cluster_wide else namespace_of(binding.props)
    where = f"ClusterRoleBinding {object_name(binding)}" if cluster_wide else f"RoleBinding {object_name(binding)}"
    reaches = tuple(
        reach
        for reach in (_reach(as_map(s), namespace) for s in as_list(binding.props.get("subjects")))
        if reach is not None and any(_covers(reach, ns) for ns in ml)
    )
    if not reaches:
        return None
    problems: list[str] = []
    role_ref = as_map(binding.props.get("roleRef"))
    role: Resource | None = None
    if cluster_wide:
        problems.append(
            "a ClusterRoleBinding grants in every namespace: delete it; bind a Role of the service account's own "
            "namespace with a RoleBinding there"
        )
    elif role_ref.get("kind") != "Role":
        problems.append(f"it binds ClusterRole {role_ref.get('name')}: bind a Role of namespace {namespace} instead")
    else:
        role = _role_named(ctx, namespace, role_ref.get("name"))
        if role is None:
            problems.append(
                f"it binds Role {role_ref.get('name')}, which this stack does not create in {namespace}, so its "
                "rights cannot be checked: create that Role in this stack"
            )
    for reach in reaches:
        if reach[1] == ANY:
            problems.append(
                f"subject {_describe(reach, ml)} is a group: name the one ServiceAccount that needs the rights"
            )
        elif not cluster_wide and reach[0] != namespace:
            problems.append(
                f"it grants {reach[0]}/{reach[1]} rights in namespace {namespace}: a service account of an ML "
                "namespace may act only in its own namespace"
            )
    rules = as_list(get_path(role.props, "rules")) if role is not None else ()
    return BindingReport(
        binding,
        where,
        reaches,
        tuple(problems),
        role,
        tuple(excess_rights(rules)),
        role is not None and _grants_launch(rules),
    )


def binding_reports(ctx: StackContext) -> list[BindingReport]:
    """Every RoleBinding and ClusterRoleBinding of the stack that reaches a service account of an ML namespace."""
    ml = set(ctx.ml_namespaces)
    bindings = [*ctx.of_kind(RBAC_GROUP, "RoleBinding"), *ctx.of_kind(RBAC_GROUP, "ClusterRoleBinding")]
    return [report for report in (_report(ctx, b, ml) for b in bindings) if report is not None]

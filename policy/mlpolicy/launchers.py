"""JobSet launchers, verified from the stack rather than trusted from their label.

A nightly distributed retrain cannot be a plain CronJob of JobSets (a CronJob only makes Jobs), so
a *launcher* does it: a CronJob labelled ``mlplatform.io/launches: JobSet`` whose pod runs kubectl
with a service account token and creates the JobSet held in a ConfigMap it mounts. The launcher
pod is not training and is not queued; the JobSet it creates is. The pack believes that only when
the stack shows both halves:

- its service account may do nothing but ``create`` JobSets in its own namespace (see ``rbac``), so
  it cannot start pods that bypass Kueue;
- every JobSet manifest in the ConfigMaps it mounts carries ``kueue.x-k8s.io/queue-name`` naming a
  LocalQueue of that namespace, and is created in that namespace.

Every other pod of an ML namespace runs without a service account token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .context import NOT_KNOWN, StackContext, Workload
from .kueue import QUEUE_NAME_LABEL, local_queues, queue_label_fix
from .model import Resource, Violation, as_list, as_map, get_path
from .pods import JOBSET, containers
from .rbac import LAUNCHER_RULE_TEXT, binding_reports, object_name

__all__ = [
    "LAUNCHES_LABEL",
    "LaunchedJobSet",
    "is_launcher",
    "launched_jobsets",
    "launched_problems",
    "least_privilege_violations",
    "rights_problems",
    "service_account",
    "token_mount",
]

LAUNCHES_LABEL = "mlplatform.io/launches"
_JOBSET_API_GROUP = JOBSET[0]


def is_launcher(workload: Workload) -> bool:
    """A CronJob that declares it launches something (what and whether to believe it: ``launcher_problems``)."""
    labels = as_map(get_path(workload.resource.props, "metadata", "labels"))
    return workload.template.kind == "CronJob" and LAUNCHES_LABEL in labels


def service_account(spec: Mapping[str, Any]) -> str:
    """The pod's service account (``serviceAccount`` is the deprecated spelling; ``default`` if none)."""
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def _account_automount(ctx: StackContext, namespace: str, name: str) -> Any:
    """The service account's automountServiceAccountToken as the stack sets it (object or patch); None if unset."""
    for kind in ("ServiceAccount", "ServiceAccountPatch"):
        for account in ctx.of_kind("", kind, namespace):
            if get_path(account.props, "metadata", "name") == name and "automountServiceAccountToken" in account.props:
                return account.props["automountServiceAccountToken"]
    return None


def token_mount(ctx: StackContext, workload: Workload) -> str | None:
    """Why the pod gets a service account token, or None if it gets none. As the kubelet decides: the
    pod's automountServiceAccountToken wins, else the service account's, else true; a projected
    serviceAccountToken volume is a token whatever either says."""
    spec = workload.template.spec
    for volume in map(as_map, as_list(spec.get("volumes"))):
        for source in map(as_map, as_list(get_path(volume, "projected", "sources"))):
            if "serviceAccountToken" in source:
                return f"spec.volumes[{volume.get('name')}] projects a serviceAccountToken"
    pod = spec.get("automountServiceAccountToken")
    if pod is False:
        return None
    if pod is True:
        return "spec.automountServiceAccountToken is true"
    account = service_account(spec)
    if _account_automount(ctx, workload.namespace, account) is False:
        return None
    return f"neither the pod nor its service account {account} sets automountServiceAccountToken: false"


def rights_problems(ctx: StackContext, namespace: str, account: str) -> list[str]:
    """Why service account ``namespace/account`` may do more than create JobSets in ``namespace``, or
    cannot even do that; [] if the stack shows it bound only to Roles whose one rule is exactly that."""
    reports = [r for r in binding_reports(ctx) if r.reaches_account(namespace, account)]
    if not reports:
        return [
            f"its service account {namespace}/{account} is bound to no Role in this stack: bind it with a "
            f"RoleBinding in {namespace} to a Role whose only rule is {LAUNCHER_RULE_TEXT}"
        ]
    problems = []
    for report in reports:
        problems += [f"{report.where}: {p}" for p in report.problems]
        if report.role is not None and report.role_excess:
            problems.append(
                f"Role {object_name(report.role)} (bound by {report.where}) also grants "
                f"{', '.join(report.role_excess)}: keep only {LAUNCHER_RULE_TEXT}"
            )
    if not any(report.grants_launch for report in reports):
        problems.append(
            f"no Role bound to {namespace}/{account} grants create on jobsets.jobset.x-k8s.io: give its Role "
            f"the rule {LAUNCHER_RULE_TEXT}"
        )
    return problems


@dataclass(frozen=True)
class LaunchedJobSet:
    """A JobSet manifest found in a ConfigMap the launcher mounts."""

    configmap: Resource
    key: str
    manifest: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"ConfigMap {object_name(self.configmap)} data[{self.key}]"


def _mounted_configmaps(spec: Mapping[str, Any]) -> Iterator[tuple[str, tuple[str, ...] | None]]:
    """(ConfigMap name, keys it projects or None for all) for every ConfigMap a container mounts."""
    mounted = {as_map(m).get("name") for _, c in containers(spec) for m in as_list(c.get("volumeMounts"))}
    for volume in map(as_map, as_list(spec.get("volumes"))):
        if volume.get("name") not in mounted:
            continue
        sources = [as_map(volume.get("configMap"))] if "configMap" in volume else []
        sources += [as_map(s.get("configMap")) for s in map(as_map, as_list(get_path(volume, "projected", "sources")))]
        for source in sources:
            if source.get("name"):
                items = as_list(source.get("items"))
                yield str(source["name"]), (tuple(str(as_map(i).get("key")) for i in items) if items else None)


def _jobset_documents(text: Any) -> list[Mapping[str, Any]]:
    """The JobSet objects in a ConfigMap value (YAML or JSON, one or many documents); [] if it is not a manifest."""
    if not isinstance(text, str):
        return []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []  # a script or other data beside the manifest, not a JobSet
    return [d for d in map(as_map, documents) if d.get("kind") == JOBSET[1]]


def launched_jobsets(ctx: StackContext, workload: Workload) -> tuple[list[LaunchedJobSet], list[str]] | None:
    """The JobSet manifests in the ConfigMaps the launcher's pod mounts, and what could not be read;
    None while a mounted ConfigMap's data is known only after the update (then ``ctx.pending`` says so)."""
    found: list[LaunchedJobSet] = []
    problems: list[str] = []
    known = True
    for name, keys in _mounted_configmaps(workload.template.spec):
        configmaps = ctx.of_kind("", "ConfigMap", workload.namespace)
        configmap = next((c for c in configmaps if get_path(c.props, "metadata", "name") == name), None)
        if configmap is None:
            problems.append(
                f"it mounts ConfigMap {name}, which this stack does not create in {workload.namespace}, so the "
                "JobSet it launches cannot be checked: create that ConfigMap in this stack"
            )
            continue
        data = ctx.value(configmap.props, "data")
        if data is NOT_KNOWN:
            known = False
            continue
        for key in keys if keys is not None else list(as_map(data)):
            text = ctx.value(as_map(data), key)
            known = known and text is not NOT_KNOWN
            found += [LaunchedJobSet(configmap, key, doc) for doc in _jobset_documents(text)]
    return (found, problems) if known else None


def launched_problems(ctx: StackContext, workload: Workload) -> list[str]:
    """What is wrong with what the launcher launches ([] when every JobSet it can create is queued)."""
    launches = as_map(get_path(workload.resource.props, "metadata", "labels")).get(LAUNCHES_LABEL)
    if launches != JOBSET[1]:
        return [f"label {LAUNCHES_LABEL}: {launches!r} is not supported: only JobSet launchers are"]
    found = launched_jobsets(ctx, workload)
    if found is None:
        return []  # judged once the manifest is known (at `pulumi up`); the pack notes it as pending
    jobsets, problems = found
    if not jobsets and not problems:
        problems.append(
            "no ConfigMap its pod mounts holds a JobSet manifest: mount the ConfigMap with the JobSet it creates"
        )
    queues = local_queues(ctx, workload.namespace)
    for launched in jobsets:
        metadata = as_map(launched.manifest.get("metadata"))
        api_version = str(launched.manifest.get("apiVersion") or "")
        if not api_version.startswith(f"{_JOBSET_API_GROUP}/"):
            problems.append(f"{launched.where}: apiVersion {api_version!r} is not {_JOBSET_API_GROUP}")
        namespace = metadata.get("namespace")
        if namespace not in (None, "", workload.namespace):
            problems.append(
                f"{launched.where}: the JobSet goes to namespace {namespace}: a launcher creates only in its own "
                f"namespace; remove metadata.namespace or set {workload.namespace}"
            )
        fix = queue_label_fix(as_map(metadata.get("labels")).get(QUEUE_NAME_LABEL), queues, "its metadata.labels")
        if fix:
            problems.append(f"{launched.where}: the JobSet it launches would bypass Kueue: {fix}")
    return problems


def launcher_problems(ctx: StackContext, workload: Workload) -> list[str]:
    """Everything that keeps ``workload`` (a labelled launcher) from being a verified launcher."""
    return [
        *rights_problems(ctx, workload.namespace, service_account(workload.template.spec)),
        *launched_problems(ctx, workload),
    ]


def _where(workload: Workload) -> str:
    part = f" {workload.template.part}" if workload.template.part else ""
    return f"{workload.template.kind} {workload.namespace}/{workload.resource.name}{part}"


def least_privilege_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """In ML namespaces only a verified JobSet launcher mounts a service account token, and no binding
    gives a service account of an ML namespace more than the launcher's one rule in its own namespace."""
    out: list[Violation] = []
    ml = ctx.ml_namespaces
    for workload in ctx.workloads:
        if workload.namespace not in ml:
            continue
        reason = token_mount(ctx, workload)
        if reason is None:
            continue
        account = service_account(workload.template.spec)
        if not is_launcher(workload):
            out.append(
                Violation(
                    f"{_where(workload)} gets a service account token ({reason}) but is not a JobSet launcher: set "
                    "automountServiceAccountToken: false in its pod spec (only a CronJob labelled "
                    f"{LAUNCHES_LABEL}: JobSet needs the API)",
                    workload.resource.urn,
                )
            )
            continue
        problems = rights_problems(ctx, workload.namespace, account)
        if problems:
            out.append(
                Violation(
                    f"{_where(workload)} is a JobSet launcher with a token, so its service account "
                    f"{workload.namespace}/{account} may only create JobSets in {workload.namespace}: "
                    + "; ".join(problems),
                    workload.resource.urn,
                )
            )
    for report in binding_reports(ctx):
        subjects = report.describe_subjects(ml)
        if report.problems:
            out.append(
                Violation(
                    f"{report.where} grants {subjects} more than create on JobSets in its own namespace: "
                    + "; ".join(report.problems),
                    report.binding.urn,
                )
            )
        if report.role is not None and report.role_excess:
            out.append(
                Violation(
                    f"Role {object_name(report.role)} is bound to "
                    f"{subjects} ({report.where}) and grants more than the launcher's single rule: remove "
                    f"{', '.join(report.role_excess)}; keep only {LAUNCHER_RULE_TEXT}",
                    report.role.urn,
                )
            )
    return out

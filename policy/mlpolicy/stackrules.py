"""Rules that need the whole stack: namespace context, guardrails, node pools, Kueue flavors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .containers import GPU_RESOURCE, parse_quantity
from .context import PSA_ENFORCE_LABEL, StackContext, Workload
from .kueue import KUEUE_GROUP, QUEUE_NAME_LABEL, local_queues
from .launchers import is_launcher, launcher_problems
from .model import Violation, as_list, as_map, get_path, namespace_of
from .pss import restricted_findings

__all__ = [
    "QUEUE_NAME_LABEL",
    "external_service_violations",
    "flavor_violations",
    "guardrail_violations",
    "namespace_psa_violations",
    "node_pool_violations",
    "pod_security_violations",
    "queue_label_violations",
    "readiness_violations",
]

PSA_LEVELS = ("privileged", "baseline", "restricted")


def _where(workload: Workload) -> str:
    """``JobSet ns/name replicatedJobs[workers]``: the object, and which of its pod templates."""
    part = f" {workload.template.part}" if workload.template.part else ""
    return f"{workload.template.kind} {workload.namespace}/{workload.resource.name}{part}"


def pod_security_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """Restricted profile for every workload outside the namespaces the stack itself labels privileged."""
    out = []
    for workload in ctx.workloads:
        if ctx.is_privileged(workload.namespace):
            continue
        findings = restricted_findings(workload.template)
        if findings:
            out.append(
                Violation(
                    f"{_where(workload)} breaks the Pod Security Standards restricted profile; in its pod template "
                    f"change: " + "; ".join(findings),
                    workload.resource.urn,
                    tuple(findings),
                )
            )
    return out


def _job_labels(workload: Workload) -> Mapping[str, Any]:
    """The labels Kueue reads: the Job's own, or a CronJob's jobTemplate's (copied onto each Job)."""
    if workload.template.kind == "CronJob":
        return as_map(get_path(workload.resource.props, "spec", "jobTemplate", "metadata", "labels"))
    return as_map(get_path(workload.resource.props, "metadata", "labels"))


def queue_label_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """Jobs, CronJobs and JobSets in ML namespaces name a LocalQueue that the stack creates there; a
    CronJob labelled as a JobSet launcher instead passes only as a verified launcher (launchers.py)."""
    out = []
    ml = set(ctx.ml_namespaces)
    seen: set[int] = set()  # a JobSet is one workload per replicated job, but has one set of labels
    for workload in ctx.workloads:
        if workload.template.kind not in ("Job", "CronJob", "JobSet") or workload.namespace not in ml:
            continue
        if id(workload.resource) in seen:
            continue
        seen.add(id(workload.resource))
        what = f"{workload.template.kind} {workload.namespace}/{workload.resource.name}"
        if is_launcher(workload):
            problems = launcher_problems(ctx, workload)
            if problems:
                out.append(
                    Violation(
                        f"{what} is labelled a JobSet launcher, so its own Jobs are not queued; the stack does not "
                        "show it can only create queued JobSets: " + "; ".join(problems),
                        workload.resource.urn,
                    )
                )
            continue
        where = "spec.jobTemplate.metadata.labels" if workload.template.kind == "CronJob" else "metadata.labels"
        queues = local_queues(ctx, workload.namespace)
        queue = _job_labels(workload).get(QUEUE_NAME_LABEL)
        if not queue:
            suggestion = queues[0] if queues else "<local queue>"
            out.append(
                Violation(
                    f"{what} bypasses Kueue: add label {QUEUE_NAME_LABEL}: {suggestion} to {where}",
                    workload.resource.urn,
                )
            )
        elif queues and queue not in queues:
            out.append(
                Violation(
                    f"{what} names LocalQueue {queue!r}, which this stack does not create in "
                    f"{workload.namespace}; use one of {', '.join(queues)} in {where}",
                    workload.resource.urn,
                )
            )
    return out


def _selects(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def readiness_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """A Deployment a Service sends traffic to has a readiness probe on each container that serves a port
    (and on at least one container), so a rollout never routes requests to a pod that cannot answer."""
    out = []
    services = ctx.of_kind("", "Service")
    for workload in ctx.workloads:
        if workload.template.kind != "Deployment":
            continue
        pod_labels = as_map(workload.template.metadata.get("labels"))
        fronted = [
            s
            for s in services
            if namespace_of(s.props) == workload.namespace
            and _selects(as_map(get_path(s.props, "spec", "selector")), pod_labels)
        ]
        if not fronted:
            continue
        regular = [as_map(c) for c in as_list(workload.template.spec.get("containers"))]
        missing = [c.get("name") for c in regular if c.get("ports") and not c.get("readinessProbe")]
        if missing or not any(c.get("readinessProbe") for c in regular):
            names = ", ".join(str(n) for n in (missing or [c.get("name") for c in regular]))
            out.append(
                Violation(
                    f"{_where(workload)} is behind Service {fronted[0].name}: "
                    f"add a readinessProbe to container(s) {names}",
                    workload.resource.urn,
                )
            )
    return out


def external_service_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """No LoadBalancer or NodePort Service in an ML namespace unless the pack's config allows it."""
    if config.get("allowExternalServices") is True:
        return []
    allowed = set(as_list(config.get("allowedNamespaces")))
    out = []
    ml = set(ctx.ml_namespaces)
    for service in ctx.of_kind("", "Service"):
        namespace, kind = namespace_of(service.props), get_path(service.props, "spec", "type")
        if namespace in ml and namespace not in allowed and kind in ("LoadBalancer", "NodePort"):
            out.append(
                Violation(
                    f"Service {namespace}/{service.name} is type {kind} in ML namespace {namespace}: "
                    "use type ClusterIP behind the ingress (or list the namespace in this policy's allowedNamespaces)",
                    service.urn,
                )
            )
    return out


def namespace_psa_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """Every Namespace the stack creates and runs pods in states its Pod Security Admission level."""
    out = []
    for namespace in sorted(ctx.namespaces_running_workloads() & set(ctx.namespaces)):
        labels = ctx.labels(namespace)
        level = labels.get(PSA_ENFORCE_LABEL)
        if level not in PSA_LEVELS:
            out.append(
                Violation(
                    f"Namespace {namespace} runs workloads but has no valid {PSA_ENFORCE_LABEL} label (got {level!r}): "
                    f"set it to restricted (privileged only for node agents), plus {PSA_ENFORCE_LABEL}-version",
                    ctx.namespace_urns[namespace],
                )
            )
        elif not labels.get(f"{PSA_ENFORCE_LABEL}-version"):
            out.append(
                Violation(
                    f"Namespace {namespace}: pin {PSA_ENFORCE_LABEL}-version (e.g. v1.34) so a cluster upgrade "
                    "never changes admission silently",
                    ctx.namespace_urns[namespace],
                )
            )
    return out


def _gpu_workloads(ctx: StackContext, namespace: str) -> list[Workload]:
    out = []
    for workload in ctx.workloads:
        if workload.namespace != namespace:
            continue
        for key in ("containers", "initContainers"):
            for container in as_list(workload.template.spec.get(key)):
                resources = as_map(as_map(container).get("resources"))
                if any(GPU_RESOURCE in as_map(resources.get(s)) for s in ("requests", "limits")):
                    out.append(workload)
    return out


def _is_default_deny(policy: Mapping[str, Any], direction: str) -> bool:
    spec = as_map(policy.get("spec"))
    return (
        not as_map(spec.get("podSelector"))
        and direction in [str(t) for t in as_list(spec.get("policyTypes"))]
        and not as_list(spec.get(direction.lower()))
    )


def guardrail_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """Each ML namespace has a ResourceQuota (covering GPUs when GPU workloads run there), a LimitRange,
    default-deny ingress and egress, and a Kueue LocalQueue."""
    out = []
    for namespace in ctx.ml_namespaces:
        missing: list[str] = []
        quotas = ctx.of_kind("", "ResourceQuota", namespace)
        if not quotas:
            missing.append("a ResourceQuota (requests.cpu, requests.memory, requests.nvidia.com/gpu)")
        elif _gpu_workloads(ctx, namespace):
            gpu_keys = {f"requests.{GPU_RESOURCE}", f"limits.{GPU_RESOURCE}"}
            if not any(gpu_keys & set(as_map(get_path(q.props, "spec", "hard"))) for q in quotas):
                missing.append(f"requests.{GPU_RESOURCE} in its ResourceQuota (GPU workloads run here)")
        if not ctx.of_kind("", "LimitRange", namespace):
            missing.append("a LimitRange with container default requests and limits")
        policies = [p.props for p in ctx.of_kind("networking.k8s.io", "NetworkPolicy", namespace)]
        for direction in ("Ingress", "Egress"):
            if not any(_is_default_deny(p, direction) for p in policies):
                missing.append(
                    f"a default-deny NetworkPolicy for {direction} (podSelector {{}}, policyTypes "
                    f"[{direction}], no rules)"
                )
        if not ctx.of_kind(KUEUE_GROUP, "LocalQueue", namespace):
            missing.append("a Kueue LocalQueue pointing at the platform ClusterQueue")
        if missing:
            out.append(
                Violation(f"ML namespace {namespace} lacks: " + "; ".join(missing), ctx.namespace_urns[namespace])
            )
    return out


def node_pool_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """A workload's nodeSelector and tolerations admit it to at least one node pool the stack creates
    (nothing to check when the stack creates no node pools it can see, e.g. an existing cluster)."""
    if not ctx.pools:
        return []
    out = []
    for workload in ctx.workloads:
        selector = as_map(workload.template.spec.get("nodeSelector"))
        tolerations = as_list(workload.template.spec.get("tolerations"))
        if any(pool.admits(selector, tolerations) for pool in ctx.pools):
            continue
        pools = "; ".join(p.describe() for p in ctx.pools)
        out.append(
            Violation(
                f"{_where(workload)} fits no node pool (nodeSelector {dict(selector)}): change its nodeSelector to "
                f"a pool's labels and tolerate that pool's taints. Pools: {pools}",
                workload.resource.urn,
            )
        )
    return out


def _gpu_flavor_names(ctx: StackContext) -> set[str]:
    """Flavors a ClusterQueue or a Cohort (quota its ClusterQueues share) gives nvidia.com/gpu quota (> 0)."""
    names = set()
    for queue in [*ctx.of_kind(KUEUE_GROUP, "ClusterQueue"), *ctx.of_kind(KUEUE_GROUP, "Cohort")]:
        for group in as_list(get_path(queue.props, "spec", "resourceGroups")):
            for flavor in as_list(as_map(group).get("flavors")):
                for res in as_list(as_map(flavor).get("resources")):
                    res = as_map(res)
                    quota = parse_quantity(res.get("nominalQuota"))
                    if res.get("name") == GPU_RESOURCE and quota is not None and quota > 0:
                        names.add(str(as_map(flavor).get("name")))
    return names


def flavor_violations(ctx: StackContext, config: Mapping[str, Any]) -> list[Violation]:
    """Every ResourceFlavor lands admitted pods on a pool that exists; those with GPU quota on a GPU pool."""
    flavors = ctx.of_kind(KUEUE_GROUP, "ResourceFlavor")
    if not ctx.pools or not flavors:
        return []
    gpu_flavors = _gpu_flavor_names(ctx)
    gpu_pools = [p for p in ctx.pools if p.is_gpu]
    out = []
    for flavor in flavors:
        name = str(get_path(flavor.props, "metadata", "name") or flavor.name)
        spec = as_map(flavor.props.get("spec"))
        labels, tolerations = as_map(spec.get("nodeLabels")), as_list(spec.get("tolerations"))
        candidates = gpu_pools if name in gpu_flavors else ctx.pools
        if not any(p.admits(labels, tolerations) for p in candidates):
            wanted = "the GPU pool" if name in gpu_flavors else "a node pool"
            pools = "; ".join(p.describe() for p in candidates) or "none (add a GPU node pool)"
            out.append(
                Violation(
                    f"ResourceFlavor {name} does not match {wanted}: set its nodeLabels to that pool's labels and its "
                    f"tolerations to that pool's taints. Candidate pools: {pools}",
                    flavor.urn,
                )
            )
    if gpu_pools and ctx.of_kind(KUEUE_GROUP, "ClusterQueue") and not gpu_flavors:
        out.append(
            Violation(
                f"the stack has a GPU pool but no ClusterQueue flavor with {GPU_RESOURCE} quota: give the GPU "
                "ResourceFlavor a nominalQuota for nvidia.com/gpu",
            )
        )
    return out

"""Every rule of the pack: name, enforcement level, config schema and the pure check behind it.

Security and correctness rules (whose violation leaves a cluster insecure or a deploy broken) are
mandatory; hygiene rules are advisory. Each rule's level, and its own settings, can be changed
through the pack's config (see docs/policy.md). One rule reports at most one violation per
resource, listing every change to make, so a broken resource shows up once per rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import containers as ctr
from . import platform
from .context import StackContext
from .gpu_placement import gpu_toleration_violations
from .launchers import least_privilege_violations
from .model import Resource, Violation, as_list
from .pods import PodTemplate, pod_templates
from .stackrules import (
    external_service_violations,
    flavor_violations,
    guardrail_violations,
    namespace_psa_violations,
    node_pool_violations,
    pod_security_violations,
    queue_label_violations,
    readiness_violations,
)

__all__ = ["ADVISORY", "MANDATORY", "RULES", "Rule", "check_stack", "rule", "run_resource_rule", "run_stack_rule"]

MANDATORY, ADVISORY = "mandatory", "advisory"
ResourceCheck = Callable[[Resource, Mapping[str, Any]], list[Violation]]
StackCheck = Callable[[StackContext, Mapping[str, Any]], list[Violation]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    # JSON-schema properties of the rule's own settings; each carries its "default".
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults from the schema overlaid with what the pack's config sets."""
        merged = {key: prop.get("default") for key, prop in self.config.items()}
        merged.update(given or {})
        return merged


def _template_rule(findings: Callable[[PodTemplate, Mapping[str, Any]], list[str]], intro: str) -> ResourceCheck:
    """A per-workload check: one violation listing every finding in the resource's pod templates
    (a JobSet's are named by replicated job: ``JobSet x replicatedJobs[workers]: ...``)."""

    def check(resource: Resource, config: Mapping[str, Any]) -> list[Violation]:
        sentences: list[str] = []
        details: list[str] = []
        for template in pod_templates(resource):
            found = findings(template, config)
            if found:
                where = f"{template.kind} {resource.name}" + (f" {template.part}" if template.part else "")
                sentences.append(f"{where}: {intro}: " + "; ".join(found))
                details += [f"{template.part}: {f}" if template.part else f for f in found]
        return [Violation(". ".join(sentences), resource.urn, tuple(details))] if sentences else []

    return check


def _typed_rule(
    types: frozenset[str] | str, findings: Callable[[Resource, Mapping[str, Any]], list[str]]
) -> ResourceCheck:
    wanted = {types} if isinstance(types, str) else types

    def check(resource: Resource, config: Mapping[str, Any]) -> list[Violation]:
        if resource.type not in wanted:
            return []
        found = findings(resource, config)
        return [Violation(f"{resource.name}: " + "; ".join(found), resource.urn, tuple(found))] if found else []

    return check


def _required_resources(config: Mapping[str, Any]) -> Sequence[str]:
    return [str(r) for r in as_list(config.get("requiredResources"))]


RULES: tuple[Rule, ...] = (
    # --- per resource ---
    Rule(
        "container-requests-limits",
        "Every container states resource requests and limits (scheduling, quota and eviction depend on them).",
        ADVISORY,
        resource_check=_template_rule(
            lambda t, c: ctr.requests_limits_findings(t, _required_resources(c)), "set container resources"
        ),
        config={"requiredResources": {"type": "array", "items": {"type": "string"}, "default": ["cpu", "memory"]}},
    ),
    Rule(
        "gpu-limit-equals-request",
        "nvidia.com/gpu limits equal requests (GPUs cannot be overcommitted; a mismatch is rejected at apply).",
        MANDATORY,
        resource_check=_template_rule(lambda t, c: ctr.gpu_findings(t), "fix GPU resources"),
    ),
    Rule(
        "image-pinned",
        "Container images are pinned to a version tag or digest, never latest or untagged.",
        MANDATORY,
        resource_check=_template_rule(lambda t, c: ctr.image_findings(t), "pin images"),
    ),
    Rule(
        "helm-chart-version-pinned",
        "Helm releases install one exact chart version.",
        MANDATORY,
        resource_check=_typed_rule(platform.HELM_TYPES, lambda r, c: platform.helm_version_findings(r)),
    ),
    Rule(
        "eks-gpu-node-taints",
        "EKS node groups with an NVIDIA AMI carry the nvidia.com/gpu NoSchedule taint; no other group does.",
        MANDATORY,
        resource_check=_typed_rule(platform.EKS_NODE_GROUP, lambda r, c: platform.eks_gpu_taint_findings(r)),
    ),
    Rule(
        "eks-endpoint-not-public",
        "The EKS API endpoint is not open to the whole internet unless this policy's config allows it.",
        MANDATORY,
        resource_check=_typed_rule(platform.EKS_CLUSTER, platform.eks_endpoint_findings),
        config={"allowPublicEndpoint": {"type": "boolean", "default": False}},
    ),
    # --- over the whole stack ---
    Rule(
        "pod-security-restricted",
        "Workloads meet the Pod Security Standards restricted profile, except in namespaces the stack "
        "labels PSA privileged.",
        MANDATORY,
        stack_check=pod_security_violations,
    ),
    Rule(
        "kueue-queue-label",
        "Jobs, CronJobs and JobSets in ML namespaces carry kueue.x-k8s.io/queue-name naming a LocalQueue there; "
        "a JobSet launcher CronJob passes only if its service account may just create JobSets and the JobSet "
        "it launches is queued.",
        MANDATORY,
        stack_check=queue_label_violations,
    ),
    Rule(
        "ml-service-account-least-privilege",
        "In ML namespaces only a verified JobSet launcher gets a service account token, and no binding gives a "
        "service account more than create on jobsets in its own namespace.",
        MANDATORY,
        stack_check=least_privilege_violations,
    ),
    Rule(
        "readiness-probe-behind-service",
        "Deployments a Service routes to have a readiness probe.",
        ADVISORY,
        stack_check=readiness_violations,
    ),
    Rule(
        "no-external-services-in-ml-namespaces",
        "No LoadBalancer or NodePort Service in an ML namespace unless this policy's config allows it.",
        MANDATORY,
        stack_check=external_service_violations,
        config={
            "allowExternalServices": {"type": "boolean", "default": False},
            "allowedNamespaces": {"type": "array", "items": {"type": "string"}, "default": []},
        },
    ),
    Rule(
        "namespace-psa-labels",
        "Namespaces that run workloads carry pinned Pod Security Admission labels.",
        MANDATORY,
        stack_check=namespace_psa_violations,
    ),
    Rule(
        "ml-namespace-guardrails",
        "Each ML namespace has a ResourceQuota (GPUs included where GPU workloads run), a LimitRange, "
        "default-deny NetworkPolicies and a Kueue LocalQueue.",
        MANDATORY,
        stack_check=guardrail_violations,
    ),
    Rule(
        "node-pool-match",
        "Each workload's nodeSelector and tolerations fit a node pool the stack creates.",
        MANDATORY,
        stack_check=node_pool_violations,
    ),
    Rule(
        "kueue-flavors-match-pools",
        "Kueue ResourceFlavors target node pools that exist; GPU-quota flavors target the GPU pool.",
        MANDATORY,
        stack_check=flavor_violations,
    ),
    Rule(
        "gpu-toleration-needs-gpu",
        "In ML namespaces a pod tolerates the GPU nodes' taint only if it requests nvidia.com/gpu "
        "(CPU work never lands on GPU nodes).",
        MANDATORY,
        stack_check=gpu_toleration_violations,
    ),
)


def rule(name: str) -> Rule:
    return next(r for r in RULES if r.name == name)


def run_resource_rule(r: Rule, resource: Resource, config: Mapping[str, Any] | None = None) -> list[Violation]:
    assert r.resource_check is not None, f"{r.name} is a stack rule"
    return r.resource_check(resource, r.settings(config))


def one_per_resource(violations: Sequence[Violation]) -> list[Violation]:
    """Violations of one resource merged into one, in order (a JobSet's pod templates are separate
    workloads, but the resource shows up once per rule); stack-wide ones (no URN) stay apart."""
    merged: dict[str, Violation] = {}
    out: list[Violation | str] = []
    for v in violations:
        if not v.urn:
            out.append(v)
        elif v.urn in merged:
            first = merged[v.urn]
            merged[v.urn] = Violation(f"{first.message}. {v.message}", v.urn, first.details + v.details)
        else:
            merged[v.urn] = v
            out.append(v.urn)
    return [merged[v] if isinstance(v, str) else v for v in out]


def check_stack(
    r: Rule,
    resources: Sequence[Resource],
    config: Mapping[str, Any] | None = None,
    *,
    unknown_errors: tuple[type[Exception], ...] = (),
) -> tuple[list[Violation], list[Exception]]:
    """The rule's violations, and the ``unknown_errors`` it met on values known only after the update
    (it judged everything else; see ``StackContext.value``)."""
    assert r.stack_check is not None, f"{r.name} is a resource rule"
    ctx = StackContext.of(resources, unknown_errors)
    return one_per_resource(r.stack_check(ctx, r.settings(config))), ctx.pending


def run_stack_rule(r: Rule, resources: Sequence[Resource], config: Mapping[str, Any] | None = None) -> list[Violation]:
    return check_stack(r, resources, config)[0]

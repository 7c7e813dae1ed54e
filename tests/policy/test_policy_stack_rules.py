"""Stack rules over the captured dev stack plus hand-built changes: compliant and violating cases."""

from __future__ import annotations

from typing import Any

import pytest
from mlpolicy.context import NodePool, StackContext, Taint, tolerates
from mlpolicy.model import Resource
from mlpolicy.rules import RULES, rule, run_stack_rule

from mlplatform.capture import Capture

from .builders import GPU_POOL, GPU_TOLERATION, ML_NS, container, modified, pod_spec, resources_of, service, workload

STACK_RULES = [r.name for r in RULES if r.stack_check]


@pytest.fixture(scope="module")
def base(dev: Capture) -> list[Resource]:
    return resources_of(dev)


def messages(rule_name: str, resources: list[Resource], config: dict[str, Any] | None = None) -> list[str]:
    return [v.message for v in run_stack_rule(rule(rule_name), resources, config)]


def queued(labels: dict[str, str] | None = None) -> dict[str, str]:
    return {"kueue.x-k8s.io/queue-name": "default", **(labels or {})}


@pytest.mark.parametrize("name", STACK_RULES)
def test_dev_stack_passes_every_stack_rule(base: list[Resource], name: str) -> None:
    assert messages(name, base) == []


def test_dev_stack_context_sees_pools_and_namespaces(base: list[Resource]) -> None:
    ctx = StackContext.of(base)
    assert ctx.ml_namespaces == [ML_NS]
    assert ctx.is_privileged("gpu-operator") and not ctx.is_privileged(ML_NS)  # dev: the simulated GPU stack
    gpu = [p for p in ctx.pools if p.is_gpu]
    assert len(gpu) == 1 and gpu[0].labels["mlplatform.io/pool"] == "gpu"
    assert gpu[0].taints == (Taint("nvidia.com/gpu", "present", "NoSchedule"),)


# --- kueue-queue-label ---
def test_job_without_queue_label_in_ml_namespace(base: list[Resource]) -> None:
    [message] = messages("kueue-queue-label", [*base, workload("Job", "train")])
    assert "add label kueue.x-k8s.io/queue-name: default to metadata.labels" in message


def test_queued_job_and_cronjob_pass(base: list[Resource]) -> None:
    stack = [*base, workload("Job", "train", labels=queued()), workload("CronJob", "retrain", labels=queued())]
    assert messages("kueue-queue-label", stack) == []


def test_cronjob_label_must_be_on_the_job_template(base: list[Resource]) -> None:
    [message] = messages("kueue-queue-label", [*base, workload("CronJob", "retrain")])
    assert "spec.jobTemplate.metadata.labels" in message


def test_queue_label_must_name_an_existing_local_queue(base: list[Resource]) -> None:
    job = workload("Job", "train", labels={"kueue.x-k8s.io/queue-name": "nope"})
    [message] = messages("kueue-queue-label", [*base, job])
    assert "names LocalQueue 'nope'" in message and "use one of default" in message


def test_jobs_outside_ml_namespaces_need_no_queue(base: list[Resource]) -> None:
    assert messages("kueue-queue-label", [*base, workload("Job", "ops", namespace="kube-system")]) == []


# --- readiness-probe-behind-service ---
def test_deployment_behind_service_needs_readiness_probe(base: list[Resource]) -> None:
    serving = workload("Deployment", "serve", spec=pod_spec(container(ports=[{"containerPort": 8080.0}])))
    [message] = messages("readiness-probe-behind-service", [*base, serving, service("serve", {"app": "serve"})])
    assert "add a readinessProbe to container(s) app" in message


def test_deployment_with_probe_or_without_service_passes(base: list[Resource]) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080.0}}
    ready = workload(
        "Deployment", "serve", spec=pod_spec(container(ports=[{"containerPort": 8080.0}], readinessProbe=probe))
    )
    lonely = workload("Deployment", "worker")
    assert messages("readiness-probe-behind-service", [*base, ready, lonely, service("serve", {"app": "serve"})]) == []


# --- no-external-services-in-ml-namespaces ---
@pytest.mark.parametrize("type_", ["LoadBalancer", "NodePort"])
def test_external_service_in_ml_namespace(base: list[Resource], type_: str) -> None:
    [message] = messages("no-external-services-in-ml-namespaces", [*base, service("web", {"app": "x"}, type_=type_)])
    assert f"is type {type_} in ML namespace {ML_NS}: use type ClusterIP" in message


def test_external_services_allowed_by_config_or_outside_ml_namespaces(base: list[Resource]) -> None:
    lb = service("web", {"app": "x"}, type_="LoadBalancer")
    name = "no-external-services-in-ml-namespaces"
    assert messages(name, [*base, lb], {"allowExternalServices": True}) == []
    assert messages(name, [*base, lb], {"allowedNamespaces": [ML_NS]}) == []
    assert messages(name, [*base, service("web", {"app": "x"}, namespace="ingress", type_="LoadBalancer")]) == []
    assert messages(name, [*base, service("web", {"app": "x"})]) == []


# --- namespace-psa-labels ---
def _drop_psa(props: dict[str, Any], keep_enforce: bool = False) -> None:
    labels = props["metadata"]["labels"]
    for key in list(labels):
        if key.startswith("pod-security.kubernetes.io/") and not (keep_enforce and key.endswith("/enforce")):
            del labels[key]


def test_namespace_running_workloads_needs_psa_labels(base: list[Resource]) -> None:
    stack = modified(base, "kueue-namespace", _drop_psa)  # runs the Kueue Helm release
    [message] = messages("namespace-psa-labels", stack)
    assert "Namespace kueue-system runs workloads but has no valid pod-security.kubernetes.io/enforce" in message
    stack = modified(base, "kueue-namespace", lambda p: _drop_psa(p, keep_enforce=True))
    [message] = messages("namespace-psa-labels", stack)
    assert "pin pod-security.kubernetes.io/enforce-version" in message


def test_namespace_without_workloads_needs_no_psa_labels(base: list[Resource]) -> None:
    bare = Resource("kubernetes:core/v1:Namespace", "scratch", {"metadata": {"name": "scratch"}}, "urn:scratch")
    assert messages("namespace-psa-labels", [*base, bare]) == []
    [message] = messages("namespace-psa-labels", [*base, bare, workload("Deployment", namespace="scratch")])
    assert "Namespace scratch runs workloads" in message


# --- ml-namespace-guardrails ---
@pytest.mark.parametrize(
    ("dropped", "expected"),
    [
        (f"{ML_NS}-quota", "a ResourceQuota"),
        (f"{ML_NS}-limits", "a LimitRange"),
        (f"{ML_NS}-default-deny", "a default-deny NetworkPolicy for Ingress"),
        (f"{ML_NS}-local-queue", "a Kueue LocalQueue"),
    ],
)
def test_ml_namespace_missing_a_guardrail(base: list[Resource], dropped: str, expected: str) -> None:
    stack = [r for r in base if r.name != dropped]
    assert len(stack) == len(base) - 1
    [message] = messages("ml-namespace-guardrails", stack)
    assert f"ML namespace {ML_NS} lacks: {expected}" in message


def test_gpu_workloads_need_gpu_quota(base: list[Resource]) -> None:
    gpu_job = workload("Job", "train", labels=queued(), spec=pod_spec(container(gpus=1)))
    assert messages("ml-namespace-guardrails", [*base, gpu_job]) == []
    no_gpu_quota = modified(base, f"{ML_NS}-quota", lambda p: p["spec"]["hard"].pop("requests.nvidia.com/gpu"))
    [message] = messages("ml-namespace-guardrails", [*no_gpu_quota, gpu_job])
    assert "requests.nvidia.com/gpu in its ResourceQuota (GPU workloads run here)" in message
    assert messages("ml-namespace-guardrails", no_gpu_quota) == []  # no GPU workload: no GPU quota needed


def test_ingress_only_policy_is_not_default_deny(base: list[Resource]) -> None:
    stack = modified(base, f"{ML_NS}-default-deny", lambda p: p["spec"].update(policyTypes=["Ingress"]))
    [message] = messages("ml-namespace-guardrails", stack)
    assert "default-deny NetworkPolicy for Egress" in message


# --- node-pool-match ---
def test_gpu_workload_that_selects_and_tolerates_the_gpu_pool(base: list[Resource]) -> None:
    spec = pod_spec(container(gpus=1), nodeSelector=GPU_POOL, tolerations=[GPU_TOLERATION])
    assert messages("node-pool-match", [*base, workload("Job", "train", labels=queued(), spec=spec)]) == []


@pytest.mark.parametrize(
    ("selector", "tolerations"),
    [
        (GPU_POOL, []),
        ({"mlplatform.io/pool": "tpu"}, []),
        ({"mlplatform.io/pool": "cpu", "zone": "a"}, [GPU_TOLERATION]),
    ],
)
def test_workload_that_fits_no_pool(base: list[Resource], selector: dict[str, str], tolerations: list[Any]) -> None:
    spec = pod_spec(container(), nodeSelector=selector, tolerations=tolerations)
    [message] = messages("node-pool-match", [*base, workload("Deployment", "lost", spec=spec)])
    assert "fits no node pool" in message and "mlplatform.io/pool" in message


def test_eks_node_groups_are_pools() -> None:
    groups = [
        Resource("aws:eks/nodeGroup:NodeGroup", "cpu", {"labels": {"mlplatform.io/pool": "cpu"}}),
        Resource(
            "aws:eks/nodeGroup:NodeGroup",
            "gpu",
            {
                "labels": {"mlplatform.io/pool": "gpu"},
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
            },
        ),
    ]
    ok = workload("Job", "t", spec=pod_spec(container(), nodeSelector=GPU_POOL, tolerations=[GPU_TOLERATION]))
    bad = workload("Job", "u", spec=pod_spec(container(), nodeSelector=GPU_POOL))
    assert [v.urn for v in run_stack_rule(rule("node-pool-match"), [*groups, ok, bad])] == [bad.urn]


def test_no_visible_pools_means_nothing_to_check() -> None:
    assert (
        messages("node-pool-match", [workload("Deployment", spec=pod_spec(container(), nodeSelector=GPU_POOL))]) == []
    )


@pytest.mark.parametrize(
    ("toleration", "matches"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),
        ({"key": "nvidia.com/gpu", "value": "present"}, True),
        ({"key": "nvidia.com/gpu", "value": "other"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_matching(toleration: dict[str, str], matches: bool) -> None:
    assert tolerates([toleration], Taint("nvidia.com/gpu", "present", "NoSchedule")) is matches


def test_pool_admits_needs_all_labels_and_hard_taints() -> None:
    pool = NodePool("gpu", {"a": "1", "b": "2"}, (Taint("k", "v", "NoSchedule"), Taint("soft", "", "PreferNoSchedule")))
    assert pool.admits({"a": "1"}, [{"key": "k", "operator": "Exists"}])
    assert not pool.admits({"a": "1", "c": "3"}, [{"key": "k", "operator": "Exists"}])
    assert not pool.admits({}, [])


# --- kueue-flavors-match-pools ---
def test_gpu_flavor_with_wrong_labels(base: list[Resource]) -> None:
    stack = modified(base, "kueue-flavor-gpu", lambda p: p["spec"]["nodeLabels"].update({"mlplatform.io/pool": "gpus"}))
    [message] = messages("kueue-flavors-match-pools", stack)
    assert "ResourceFlavor gpu does not match the GPU pool" in message


def test_gpu_flavor_without_tolerations(base: list[Resource]) -> None:
    stack = modified(base, "kueue-flavor-gpu", lambda p: p["spec"].pop("tolerations"))
    [message] = messages("kueue-flavors-match-pools", stack)
    assert "set its nodeLabels to that pool's labels and its tolerations" in message


def test_gpu_quota_on_the_cpu_flavor_must_target_the_gpu_pool(base: list[Resource]) -> None:
    def give_cpu_flavor_gpus(props: dict[str, Any]) -> None:
        (gpu_group,) = [g for g in props["spec"]["resourceGroups"] if "nvidia.com/gpu" in g["coveredResources"]]
        gpu_group["flavors"].append({"name": "cpu", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 2.0}]})

    for holder in ("kueue-cq-bookstore-ml", "kueue-cohort"):  # a team's quota, or the quota teams share
        [message] = messages("kueue-flavors-match-pools", modified(base, holder, give_cpu_flavor_gpus))
        assert "ResourceFlavor cpu does not match the GPU pool" in message


def test_kind_pools_come_from_kubeadm_taints_in_either_spelling() -> None:
    kind_config = """
nodes:
- role: control-plane
- role: worker
  labels: {mlplatform.io/pool: gpu}
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      kubeletExtraArgs:
      - {name: register-with-taints, value: "nvidia.com/gpu=present:NoSchedule"}
"""
    command = Resource("command:local:Command", "kind", {"environment": {"KIND_CONFIG": kind_config}})
    [gpu] = [p for p in StackContext.of([command]).pools if p.labels]
    assert gpu.is_gpu and gpu.taints == (Taint("nvidia.com/gpu", "present", "NoSchedule"),)

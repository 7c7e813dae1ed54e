"""The vendored CRDs' own rules refuse what the API server refuses: one negative test per rule family.

Each test starts from an object that validates (asserted), breaks one thing, and expects the
upstream rule's own message. The rules are the ``x-kubernetes-validations`` of the vendored
Kueue v0.19.2, JobSet v0.12.0 and ProvisioningRequest CRDs; where a kind has only transition
rules (immutability on update: AdmissionCheck, LocalQueue, ProvisioningRequest) they are
shown skipped on create, and its schema constraints are exercised instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.validation import CelReport, SchemaError, validate_manifest

KUEUE = "kueue.x-k8s.io/v1beta2"
Obj = dict[str, Any]


def refused(obj: Obj, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        validate_manifest(obj)


def broken(obj: Obj, change: Callable[[Obj], object]) -> Obj:
    """A deep copy of ``obj`` with ``change`` applied to its spec (validity of ``obj`` asserted first)."""
    validate_manifest(obj)
    copied = copy.deepcopy(obj)
    change(copied["spec"])
    return copied


def cluster_queue() -> Obj:
    return {
        "apiVersion": KUEUE,
        "kind": "ClusterQueue",
        "metadata": {"name": "team-a"},
        "spec": {
            "cohortName": "ml",
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory"],
                    "flavors": [
                        {
                            "name": "cpu",
                            "resources": [
                                {"name": "cpu", "nominalQuota": "8", "borrowingLimit": "4", "lendingLimit": "2"},
                                {"name": "memory", "nominalQuota": "16Gi"},
                            ],
                        }
                    ],
                }
            ],
            "preemption": {"reclaimWithinCohort": "Any", "borrowWithinCohort": {"policy": "LowerPriority"}},
        },
    }


def test_cluster_queue_borrowing_limit_needs_a_cohort() -> None:
    refused(broken(cluster_queue(), lambda s: s.pop("cohortName")), "borrowingLimit must be nil when cohort is empty")


def test_cluster_queue_flavor_resources_must_match_covered_resources() -> None:
    obj = broken(cluster_queue(), lambda s: s["resourceGroups"][0]["flavors"][0]["resources"].pop())
    refused(obj, "spec.resourceGroups[0]: Invalid value: flavors must have the same number of resources")


def test_cluster_queue_borrowing_within_cohort_needs_reclaim() -> None:
    obj = broken(cluster_queue(), lambda s: s["preemption"].update(reclaimWithinCohort="Never"))
    refused(obj, "reclaimWithinCohort=Never and borrowWithinCohort.Policy!=Never")
    # reclaimWithinCohort defaults to Never: the rule sees the defaulted object, as on the API server.
    refused(broken(cluster_queue(), lambda s: s["preemption"].pop("reclaimWithinCohort")), "reclaimWithinCohort=Never")


def test_cluster_queue_flavor_fungibility_preference_needs_try_next_flavor() -> None:
    fungible = {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "TryNextFlavor"}
    fungible["preference"] = "BorrowingOverPreemption"
    ok = cluster_queue()
    ok["spec"]["flavorFungibility"] = fungible
    obj = broken(ok, lambda s: s["flavorFungibility"].pop("whenCanBorrow"))  # defaults to MayStopSearch
    refused(obj, "preference can only be set when both whenCanBorrow and whenCanPreempt are TryNextFlavor")


def test_cohort_flavor_resources_must_match_covered_resources() -> None:
    cohort: Obj = {
        "apiVersion": KUEUE,
        "kind": "Cohort",
        "metadata": {"name": "ml"},
        "spec": {"resourceGroups": copy.deepcopy(cluster_queue()["spec"]["resourceGroups"])},
    }
    obj = broken(cohort, lambda s: s["resourceGroups"][0]["coveredResources"].append("nvidia.com/gpu"))
    refused(obj, "flavors must have the same number of resources as the coveredResources")


def resource_flavor() -> Obj:
    return {
        "apiVersion": KUEUE,
        "kind": "ResourceFlavor",
        "metadata": {"name": "gpu"},
        "spec": {
            "nodeLabels": {"mlplatform.io/pool": "gpu"},
            "nodeTaints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
        },
    }


def _toleration(**fields: Any) -> Callable[[Obj], object]:
    return lambda spec: spec["tolerations"][0].update(fields)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(topologyName="default", nodeLabels={}), "at least one nodeLabel is required"),
        # Without nodeLabels the rule's self.nodeLabels is an evaluation error: refused all the same.
        (lambda s: s.update(topologyName="default") or s.pop("nodeLabels"), "rule evaluation error"),
        (lambda s: s["nodeTaints"][0].update(effect="NoScheduled"), "supported taint effect values"),
        (lambda s: s["tolerations"][0].pop("key"), "operator must be Exists when 'key' is empty"),
        (_toleration(tolerationSeconds=60), "effect must be 'NoExecute' when 'tolerationSeconds' is set"),
        (_toleration(operator="In"), "supported toleration values: 'Equal'(default), 'Exists'"),
        (_toleration(operator="Exists"), "a value must be empty when 'operator' is 'Exists'"),
        (_toleration(effect="Sometimes"), "spec.tolerations: Invalid value: supported taint effect values"),
    ],
)
def test_resource_flavor_taint_and_toleration_rules(change: Callable[[Obj], object], message: str) -> None:
    refused(broken(resource_flavor(), change), message)


def test_resource_flavor_size_limits_of_the_schema_hold() -> None:
    taints = [{"key": f"example.com/t{i}", "effect": "NoSchedule"} for i in range(9)]
    refused(broken(resource_flavor(), lambda s: s.update(nodeTaints=taints)), "is too long")
    labels = {f"example.com/l{i}": "x" for i in range(9)}
    refused(broken(resource_flavor(), lambda s: s.update(nodeLabels=labels)), "has too many properties")


def test_topology_levels_are_unique_and_hostname_is_the_lowest() -> None:
    topology = {
        "apiVersion": KUEUE,
        "kind": "Topology",
        "metadata": {"name": "default"},
        "spec": {"levels": [{"nodeLabel": "topology.kubernetes.io/zone"}, {"nodeLabel": "kubernetes.io/hostname"}]},
    }
    refused(broken(topology, lambda s: s["levels"].append({"nodeLabel": "kubernetes.io/hostname"})), "must be unique")
    refused(broken(topology, lambda s: s["levels"].reverse()), "can only be used at the lowest level of topology")


def workload() -> Obj:
    pod = {"containers": [{"name": "train", "image": "trainer:1"}], "restartPolicy": "Never"}
    return {
        "apiVersion": KUEUE,
        "kind": "Workload",
        "metadata": {"name": "train", "namespace": "ml"},
        "spec": {"queueName": "default", "podSets": [{"name": "main", "count": 2, "template": {"spec": pod}}]},
    }


def test_workload_rules() -> None:
    refused(broken(workload(), lambda s: s["podSets"][0].update(minCount=3)), "minCount should be positive")
    ref = {"group": "kueue.x-k8s.io", "kind": "WorkloadPriorityClass", "name": "production"}
    refused(broken(workload(), lambda s: s.update(priorityClassRef=ref)), "priority should not be nil")
    pod_class = dict(ref, group="scheduling.k8s.io")
    obj = broken(workload(), lambda s: s.update(priorityClassRef=pod_class, priority=1))
    refused(obj, "only the PriorityClass kind is allowed for the scheduling.k8s.io group")


def admission_check() -> Obj:
    return {
        "apiVersion": KUEUE,
        "kind": "AdmissionCheck",
        "metadata": {"name": "gpu-provisioning"},
        "spec": {
            "controllerName": "kueue.x-k8s.io/provisioning-request",
            "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig", "name": "gpu"},
        },
    }


def test_admission_check_has_only_a_transition_rule_and_its_schema_holds() -> None:
    assert validate_manifest(admission_check()) == CelReport(evaluated=0, transition_skipped=1)  # immutable name
    refused(broken(admission_check(), lambda s: s.pop("controllerName")), "'controllerName' is a required property")
    obj = broken(admission_check(), lambda s: s["parameters"].update(name="GPU_config"))
    refused(obj, "spec.parameters.name: 'GPU_config' does not match")


def test_local_queue_has_only_a_transition_rule_and_its_schema_holds() -> None:
    queue = {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": "q", "namespace": "ml"},
             "spec": {"clusterQueue": "team-a"}}  # fmt: skip
    assert validate_manifest(queue) == CelReport(evaluated=0, transition_skipped=1)
    refused(broken(queue, lambda s: s.update(clusterQueue="Team A")), "spec.clusterQueue: 'Team A' does not match")


def test_provisioning_request_config_defaults_and_set_semantics() -> None:
    config = {
        "apiVersion": KUEUE,
        "kind": "ProvisioningRequestConfig",
        "metadata": {"name": "gpu"},
        "spec": {
            "provisioningClassName": "check-capacity.autoscaling.x-k8s.io",
            "managedResources": ["example.com/gpu"],
        },
    }
    refused(broken(config, lambda s: s["managedResources"].append("example.com/gpu")), "Duplicate value")
    refused(broken(config, lambda s: s.update(podSetMergePolicy="Any")), "spec.podSetMergePolicy: 'Any' is not one of")


def test_provisioning_request_has_only_transition_rules_and_its_schema_holds() -> None:
    request = {
        "apiVersion": "autoscaling.x-k8s.io/v1",
        "kind": "ProvisioningRequest",
        "metadata": {"name": "train-gpu", "namespace": "ml"},
        "spec": {"provisioningClassName": "check-capacity.autoscaling.x-k8s.io",
                 "podSets": [{"count": 2, "podTemplateRef": {"name": "train"}}]},
    }  # fmt: skip
    # Two of its three rules: a rule runs only where its field is present (no spec.parameters here).
    assert validate_manifest(request) == CelReport(evaluated=0, transition_skipped=2)
    refused(broken(request, lambda s: s.update(podSets=[])), "spec.podSets: [] should be non-empty")
    refused(broken(request, lambda s: s.pop("provisioningClassName")), "'provisioningClassName' is a required property")


def jobset(name: str = "train") -> Obj:
    def replicated(job: str, **extra: Any) -> Obj:
        pod = {"restartPolicy": "Never", "containers": [{"name": job, "image": "trainer:1"}]}
        spec = {"completions": 2, "parallelism": 2, "template": {"spec": pod}}
        return {"name": job, "replicas": 1, "template": {"spec": spec}, **extra}

    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "replicatedJobs": [
                replicated("workers"),
                replicated("merge", dependsOn=[{"name": "workers", "status": "Complete"}]),
            ],
            "failurePolicy": {"maxRestarts": 3},
        },
    }


def test_jobset_depends_on_excludes_an_in_order_startup_policy() -> None:
    obj = broken(jobset(), lambda s: s.update(startupPolicy={"startupPolicyOrder": "InOrder"}))
    refused(obj, "spec: Invalid value: StartupPolicy and DependsOn APIs are mutually exclusive")
    validate_manifest(broken(jobset(), lambda s: s.update(startupPolicy={"startupPolicyOrder": "AnyOrder"})))


def test_jobset_volume_claim_templates_have_no_namespace() -> None:
    claim = {"metadata": {"name": "shards"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    ok = jobset()
    ok["spec"]["volumeClaimPolicies"] = [{"templates": [claim]}]
    obj = broken(ok, lambda s: s["volumeClaimPolicies"][0]["templates"][0]["metadata"].update(namespace="other"))
    refused(obj, "namespace cannot be set for VolumeClaimPolicies templates")


def test_jobset_depends_on_schema_and_webhook_rules() -> None:
    refused(broken(jobset(), lambda s: s["replicatedJobs"][1]["dependsOn"][0].update(status="Running")),
            "dependsOn[0].status: 'Running' is not one of ['Ready', 'Complete']")  # fmt: skip
    refused(broken(jobset(), lambda s: s["replicatedJobs"].reverse()), "DependsOn can't be set for the first")
    obj = broken(jobset(), lambda s: s["replicatedJobs"][1]["dependsOn"][0].update(name="evaluate"))
    refused(obj, "replicatedJob merge cannot depend on replicatedJob evaluate")
    refused(broken(jobset(), lambda s: s["replicatedJobs"][1].update(name="workers")), "Duplicate value")


def test_jobset_generated_names_must_fit_a_label() -> None:
    refused(jobset("recommender-training-nightly-with-a-very-long-name"), "generated Pod name")


def test_an_unknown_group_kind_or_version_fails_naming_what_is_vendored() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    refused(obj, "no vendored CRD serves API group 'example.com'")
    refused(dict(admission_check(), kind="AdmissionChek"), "has no kind 'AdmissionChek'")
    refused(dict(admission_check(), apiVersion="kueue.x-k8s.io/v2"), "not serve version 'v2'; served: v1beta1, v1beta2")
    refused(dict(admission_check(), apiVersion="kueue.x-k8s.io/v1beta1"), "is deprecated")
    refused({"apiVersion": "v1", "kind": "Pod2", "metadata": {"name": "p"}}, "not a Kubernetes 1.34.0 kind")


def test_prometheus_operator_objects_validate_strictly() -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "app", "namespace": "ml"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "endpoints": [{"port": "http", "interval": "15s"}]},
    }
    refused(broken(monitor, lambda s: s["endpoints"][0].update(intervall="15s")), "'intervall' was unexpected")
    refused(broken(monitor, lambda s: s["endpoints"][0].update(interval="15 seconds")), "does not match")
    pod_monitor = dict(monitor, kind="PodMonitor", spec={"selector": {}, "podMetricsEndpoints": [{"port": "http"}]})
    refused(broken(pod_monitor, lambda s: s.update(endpoints=[])), "'endpoints' was unexpected")
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "alerts", "namespace": "ml"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "Down", "expr": "up == 0", "for": "5m"}]}]},
    }
    refused(broken(rule, lambda s: s["groups"][0]["rules"][0].pop("expr")), "'expr' is a required property")

"""JobSet launchers are verified, not trusted; no other pod of an ML namespace holds API credentials.

``kueue-queue-label`` exempts a CronJob labelled ``mlplatform.io/launches: JobSet`` only when its
service account may just create JobSets in its namespace and the JobSet it launches is queued;
``ml-service-account-least-privilege`` keeps tokens out of every other pod and flags any binding
that gives an ML namespace's service account more than that.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from mlpolicy.model import Resource
from mlpolicy.rules import check_stack, rule, run_stack_rule

from mlplatform.capture import Capture

from .builders import (
    LAUNCH_RULE,
    ML_NS,
    binding,
    jobset,
    k8s_object,
    launched_jobset_yaml,
    launcher,
    pod_spec,
    programs_distributed_objects,
    resources_of,
    sa_subject,
    workload,
)

QUEUE, LEAST = "kueue-queue-label", "ml-service-account-least-privilege"
ACCOUNT = "retrain-launcher"


@pytest.fixture(scope="module")
def base(dev: Capture) -> list[Resource]:
    return resources_of(dev)


def messages(rule_name: str, resources: list[Resource]) -> list[str]:
    return [v.message for v in run_stack_rule(rule(rule_name), resources)]


def urns(rule_name: str, resources: list[Resource]) -> list[str]:
    return [v.urn for v in run_stack_rule(rule(rule_name), resources)]


def replaced(resources: list[Resource], kind: str, *new: Resource) -> list[Resource]:
    """``resources`` without those of ``kind`` (by type token suffix), plus ``new``."""
    return [*(r for r in resources if not r.type.endswith(f":{kind}")), *new]


def launcher_cronjob(resources: list[Resource]) -> Resource:
    return next(r for r in resources if r.type.endswith(":CronJob"))


# --- a verified launcher ---
def test_verified_launcher_passes_both_rules(base: list[Resource]) -> None:
    stack = [*base, *launcher()]
    assert messages(QUEUE, stack) == []
    assert messages(LEAST, stack) == []


def test_the_programs_launcher_passes_both_rules(base: list[Resource]) -> None:
    """What workloads/retrain_schedule.py renders for a distributed nightly retrain, against the dev stack."""
    objects = programs_distributed_objects()
    kinds = sorted(r.props["kind"] for r in objects)
    assert kinds == ["ConfigMap", "CronJob", "JobSet", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount"]
    stack = [*base, *objects]
    for name in (QUEUE, LEAST, "pod-security-restricted", "node-pool-match", "ml-namespace-guardrails"):
        assert messages(name, stack) == [], name


# --- kueue-queue-label: what breaks the exemption ---
def test_launcher_whose_role_has_an_extra_verb(base: list[Resource]) -> None:
    stack = [*base, *launcher(rules=[{**LAUNCH_RULE, "verbs": ["create", "delete"]}])]
    [message] = messages(QUEUE, stack)
    assert message.startswith(f"CronJob {ML_NS}/retrain is labelled a JobSet launcher")
    assert f"Role {ML_NS}/{ACCOUNT} (bound by RoleBinding {ML_NS}/{ACCOUNT}) also grants delete jobsets" in message
    assert "keep only {apiGroups: [jobset.x-k8s.io], resources: [jobsets], verbs: [create]}" in message


def test_launcher_bound_through_a_cluster_role(base: list[Resource]) -> None:
    cluster_role = k8s_object("ClusterRole", "jobset-creator", None, rules=[LAUNCH_RULE])
    through_cluster_role = binding(ACCOUNT, "jobset-creator", sa_subject(ACCOUNT), role_kind="ClusterRole")
    stack = [*base, *replaced(launcher(), "RoleBinding", cluster_role, through_cluster_role)]
    [message] = messages(QUEUE, stack)
    assert "it binds ClusterRole jobset-creator: bind a Role of namespace bookstore-ml instead" in message
    assert "no Role bound to bookstore-ml/retrain-launcher grants create on jobsets" in message


def test_launcher_also_bound_cluster_wide(base: list[Resource]) -> None:
    extra = binding("retrain-everywhere", ACCOUNT, sa_subject(ACCOUNT), namespace=None, role_kind="ClusterRole")
    [message] = messages(QUEUE, [*base, *launcher(extra=(extra,))])
    assert "ClusterRoleBinding retrain-everywhere: a ClusterRoleBinding grants in every namespace" in message


def test_launcher_whose_launched_jobset_lacks_the_queue_label(base: list[Resource]) -> None:
    stack = [*base, *launcher(jobset_yaml=launched_jobset_yaml(labels={}))]
    [message] = messages(QUEUE, stack)
    assert (
        f"ConfigMap {ML_NS}/retrain-jobset data[jobset.yaml]: the JobSet it launches would bypass Kueue: "
        "add label kueue.x-k8s.io/queue-name: default to its metadata.labels"
    ) in message
    assert messages(LEAST, stack) == []  # its rights are fine: only what it launches is not


def test_launched_jobset_must_name_a_local_queue_of_its_namespace(base: list[Resource]) -> None:
    wrong_queue = launched_jobset_yaml(labels={"kueue.x-k8s.io/queue-name": "gpu"})
    [message] = messages(QUEUE, [*base, *launcher(jobset_yaml=wrong_queue)])
    assert "label kueue.x-k8s.io/queue-name: 'gpu' names no LocalQueue of the stack; use one of default" in message
    elsewhere = launched_jobset_yaml(namespace="other")
    [message] = messages(QUEUE, [*base, *launcher(jobset_yaml=elsewhere)])
    assert "the JobSet goes to namespace other: a launcher creates only in its own namespace" in message


@pytest.mark.parametrize(
    "data",
    [
        {"run.sh": "kubectl create --filename /etc/launcher/jobset.yaml"},  # a script is no manifest
        {"jobset.yaml": "{not: [valid yaml"},
        {"job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: x-}\n"},
    ],
)
def test_launcher_whose_configmap_holds_no_jobset(base: list[Resource], data: dict[str, str]) -> None:
    stack = [*launcher()[:-1], k8s_object("ConfigMap", "retrain-jobset", data=data)]
    [message] = messages(QUEUE, [*base, *stack])
    assert "no ConfigMap its pod mounts holds a JobSet manifest" in message


def test_only_the_keys_a_configmap_volume_projects_are_read(base: list[Resource]) -> None:
    stack = launcher()
    cronjob = copy.deepcopy(dict(stack[0].props))
    volume = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]
    volume["configMap"]["items"] = [{"key": "other.yaml", "path": "jobset.yaml"}]
    [message] = messages(QUEUE, [*base, Resource(stack[0].type, "retrain", cronjob, stack[0].urn), *stack[1:]])
    assert "no ConfigMap its pod mounts holds a JobSet manifest" in message


class NotKnownYetError(Exception):
    """Stands in for the SDK's UnknownValueError."""


class UnknownValues(Mapping[str, Any]):
    """A props mapping like the SDK's proxy: reading a value known only after the update raises."""

    def __init__(self, known: Mapping[str, Any], unknown: str) -> None:
        self.known, self.unknown = dict(known), unknown

    def __getitem__(self, key: str) -> Any:
        if key == self.unknown:
            raise NotKnownYetError(key)
        return self.known[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.known, self.unknown])

    def __len__(self) -> int:
        return len(self.known) + 1


@pytest.mark.parametrize("unknown", ["data", "jobset.yaml"])
def test_launched_manifest_unknown_during_preview_is_pending_not_a_verdict(base: list[Resource], unknown: str) -> None:
    """The launched JobSet embeds the built image, so in a preview its ConfigMap may be unknown: that
    launcher's manifest check waits, while everything known is still judged."""
    *objects, configmap = launcher(rules=[{**LAUNCH_RULE, "verbs": ["create", "get"]}])
    known = {k: v for k, v in configmap.props.items() if k != "data"}
    props = UnknownValues(known, "data") if unknown == "data" else {**known, "data": UnknownValues({}, unknown)}
    pending_configmap = Resource(configmap.type, configmap.name, props, configmap.urn)
    unqueued = workload("Job", "unqueued")
    stack = [*base, *objects, pending_configmap, unqueued]
    violations, pending = check_stack(rule(QUEUE), stack, unknown_errors=(NotKnownYetError,))
    assert [type(e) for e in pending] == [NotKnownYetError]
    by_urn = {v.urn: v.message for v in violations}
    assert set(by_urn) == {objects[0].urn, unqueued.urn}  # the launcher's rights and the plain Job: judged
    assert "also grants get jobsets" in by_urn[objects[0].urn]
    assert "ConfigMap" not in by_urn[objects[0].urn]  # nothing claimed about the manifest it could not read


def test_launcher_mounting_a_configmap_the_stack_does_not_create(base: list[Resource]) -> None:
    [message] = messages(QUEUE, [*base, *launcher()[:-1]])
    assert f"it mounts ConfigMap retrain-jobset, which this stack does not create in {ML_NS}" in message


def test_launcher_of_something_else_is_not_exempt(base: list[Resource]) -> None:
    stack = launcher()
    cronjob = copy.deepcopy(dict(stack[0].props))
    cronjob["metadata"]["labels"] = {"mlplatform.io/launches": "Pod"}
    [message] = messages(QUEUE, [*base, Resource(stack[0].type, "retrain", cronjob, stack[0].urn), *stack[1:]])
    assert "label mlplatform.io/launches: 'Pod' is not supported" in message


def test_launcher_whose_service_account_is_bound_to_nothing(base: list[Resource]) -> None:
    [message] = messages(QUEUE, [*base, *replaced(launcher(), "RoleBinding")])
    assert f"its service account {ML_NS}/{ACCOUNT} is bound to no Role in this stack" in message


def test_launcher_whose_role_the_stack_does_not_create(base: list[Resource]) -> None:
    [message] = messages(QUEUE, [*base, *replaced(launcher(), "Role")])
    assert f"it binds Role {ACCOUNT}, which this stack does not create in {ML_NS}" in message


def test_unlabelled_cronjob_with_launcher_rights_is_still_a_plain_cronjob(base: list[Resource]) -> None:
    stack = launcher()
    cronjob = copy.deepcopy(dict(stack[0].props))
    cronjob["metadata"]["labels"] = {}
    [message] = messages(QUEUE, [*base, Resource(stack[0].type, "retrain", cronjob, stack[0].urn), *stack[1:]])
    assert "bypasses Kueue: add label kueue.x-k8s.io/queue-name: default to spec.jobTemplate.metadata.labels" in message


# --- ml-service-account-least-privilege: tokens ---
@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (pod_spec(automountServiceAccountToken=True), "spec.automountServiceAccountToken is true"),
        (
            pod_spec(serviceAccountName="trainer"),
            "neither the pod nor its service account trainer sets automountServiceAccountToken: false",
        ),
        (
            pod_spec(
                automountServiceAccountToken=False,
                volumes=[{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}],
            ),
            "spec.volumes[token] projects a serviceAccountToken",
        ),
    ],
)
def test_pod_with_a_token_that_is_no_launcher(base: list[Resource], spec: dict[str, Any], reason: str) -> None:
    deployment = workload("Deployment", "serve", spec=spec)
    [violation] = run_stack_rule(rule(LEAST), [*base, deployment])
    assert violation.urn == deployment.urn
    assert f"Deployment {ML_NS}/serve gets a service account token ({reason}) but is not a JobSet launcher" in (
        violation.message
    )
    assert "set automountServiceAccountToken: false in its pod spec" in violation.message


def test_the_service_account_decides_when_the_pod_does_not(base: list[Resource]) -> None:
    # The dev stack patches the namespace's default service account to automountServiceAccountToken: false.
    assert messages(LEAST, [*base, workload("Deployment", "serve")]) == []
    trainer = k8s_object("ServiceAccount", "trainer", automountServiceAccountToken=False)
    assert (
        messages(LEAST, [*base, trainer, workload("Deployment", "serve", spec=pod_spec(serviceAccountName="trainer"))])
        == []
    )
    # The pod's own setting wins over its service account's.
    assert (
        messages(
            LEAST,
            [
                *base,
                trainer,
                workload("Pod", spec=pod_spec(serviceAccountName="trainer", automountServiceAccountToken=True)),
            ],
        )
        != []
    )


def test_replicated_job_with_a_token_is_named(base: list[Resource]) -> None:
    bad = jobset(jobs={"workers": pod_spec(), "finish": pod_spec(automountServiceAccountToken=True)})
    [message] = messages(LEAST, [*base, bad])
    assert message.startswith(f"JobSet {ML_NS}/train replicatedJobs[finish] gets a service account token")


def test_tokens_outside_ml_namespaces_are_not_this_rules_business(base: list[Resource]) -> None:
    operator = workload(
        "Deployment", "operator", namespace="kueue-system", spec=pod_spec(automountServiceAccountToken=True)
    )
    assert messages(LEAST, [*base, operator]) == []


def test_launcher_with_a_token_and_too_many_rights(base: list[Resource]) -> None:
    stack = [*base, *launcher(rules=[LAUNCH_RULE, {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])]
    found = run_stack_rule(rule(LEAST), stack)
    by_urn = {v.urn: v.message for v in found}
    cronjob, role = launcher()[0], launcher()[2]
    assert set(by_urn) == {cronjob.urn, role.urn}
    assert (
        f"is a JobSet launcher with a token, so its service account {ML_NS}/{ACCOUNT} may only create"
        in (by_urn[cronjob.urn])
    )
    assert f"Role {ML_NS}/{ACCOUNT} is bound to {ML_NS}/{ACCOUNT}" in by_urn[role.urn]
    assert "remove * pods; keep only" in by_urn[role.urn]


# --- ml-service-account-least-privilege: bindings ---
def test_cluster_role_binding_of_an_ml_service_account(base: list[Resource]) -> None:
    crb = binding("trainer-view", "view", sa_subject("trainer"), namespace=None, role_kind="ClusterRole")
    [violation] = run_stack_rule(rule(LEAST), [*base, crb])
    assert violation.urn == crb.urn
    assert violation.message.startswith(f"ClusterRoleBinding trainer-view grants {ML_NS}/trainer more than create")


def test_role_binding_to_a_cluster_role(base: list[Resource]) -> None:
    rb = binding("trainer-edit", "edit", sa_subject("trainer"), role_kind="ClusterRole")
    [message] = messages(LEAST, [*base, rb])
    assert "it binds ClusterRole edit: bind a Role of namespace bookstore-ml instead" in message


def test_role_binding_in_another_namespace(base: list[Resource]) -> None:
    role = k8s_object("Role", "launch", "research", rules=[LAUNCH_RULE])
    rb = binding("launch", "launch", sa_subject("trainer"), namespace="research")
    [message] = messages(LEAST, [*base, role, rb])
    assert f"it grants {ML_NS}/trainer rights in namespace research" in message


@pytest.mark.parametrize(
    ("subject", "described"),
    [
        ({"kind": "Group", "name": f"system:serviceaccounts:{ML_NS}"}, f"every service account of {ML_NS}"),
        ({"kind": "Group", "name": "system:authenticated"}, f"every service account (so those of {ML_NS})"),
        ({"kind": "User", "name": f"system:serviceaccount:{ML_NS}:trainer"}, f"{ML_NS}/trainer"),
        ({"kind": "ServiceAccount", "name": "trainer"}, f"{ML_NS}/trainer"),  # namespace: the binding's
    ],
)
def test_every_subject_spelling_that_reaches_an_ml_service_account(
    base: list[Resource], subject: dict[str, str], described: str
) -> None:
    role = k8s_object("Role", "reader", rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    rb = binding("reader", "reader", subject)
    found = run_stack_rule(rule(LEAST), [*base, role, rb])
    [role_violation] = [v for v in found if v.urn == role.urn]
    assert f"Role {ML_NS}/reader is bound to {described}" in role_violation.message
    assert "remove get configmaps" in role_violation.message


def test_bindings_of_other_namespaces_accounts_are_not_this_rules_business(base: list[Resource]) -> None:
    crb = binding(
        "kueue", "kueue-manager", sa_subject("kueue", "kueue-system"), namespace=None, role_kind="ClusterRole"
    )
    user = binding("alice", "edit", {"kind": "User", "name": "alice"}, role_kind="ClusterRole")
    assert messages(LEAST, [*base, crb, user]) == []


def test_the_launchers_own_binding_is_the_one_allowed_grant(base: list[Resource]) -> None:
    """The verified launcher's RBAC passes without its CronJob too: the grant itself is within bounds."""
    assert messages(LEAST, [*base, *launcher()[1:]]) == []
    assert urns(LEAST, [*base, *launcher(rules=[{**LAUNCH_RULE, "resources": ["jobsets", "jobsets/status"]}])[1:]]) == [
        launcher()[2].urn
    ]

"""JobSets are workloads: each replicated job's pod template meets every template rule, and the
JobSet itself carries the Kueue queue label; violations name the replicated job."""

from __future__ import annotations

from typing import Any

import pytest
from mlpolicy.model import Resource
from mlpolicy.pods import pod_templates
from mlpolicy.rules import RULES, rule, run_resource_rule, run_stack_rule

from mlplatform.capture import Capture
from workloads.training_job import training_manifest

from .builders import (
    GPU_POOL,
    GPU_TOLERATION,
    ML_NS,
    container,
    distributed_training,
    from_manifest,
    jobset,
    pod_spec,
    resources_of,
)

QUEUED = {"kueue.x-k8s.io/queue-name": "default"}


@pytest.fixture(scope="module")
def base(dev: Capture) -> list[Resource]:
    return resources_of(dev)


def stack_messages(rule_name: str, resources: list[Resource]) -> list[str]:
    return [v.message for v in run_stack_rule(rule(rule_name), resources)]


def privileged() -> dict[str, Any]:
    c = container("train")
    c["securityContext"]["privileged"] = True
    return c


def test_each_replicated_job_is_a_pod_template() -> None:
    resource = jobset(jobs={"prepare": pod_spec(), "workers": pod_spec(privileged()), "finish": pod_spec()})
    templates = pod_templates(resource)
    assert [t.part for t in templates] == [
        "replicatedJobs[prepare]",
        "replicatedJobs[workers]",
        "replicatedJobs[finish]",
    ]
    assert {t.kind for t in templates} == {"JobSet"}
    assert templates[1].spec["containers"][0]["securityContext"]["privileged"] is True


def test_privileged_container_in_one_replicated_job(base: list[Resource]) -> None:
    bad = jobset(labels=QUEUED, jobs={"prepare": pod_spec(), "workers": pod_spec(privileged()), "finish": pod_spec()})
    [violation] = run_stack_rule(rule("pod-security-restricted"), [*base, bad])
    assert violation.urn == bad.urn
    assert violation.message.startswith(f"JobSet {ML_NS}/train replicatedJobs[workers] breaks the Pod Security")
    assert "containers[train].securityContext.privileged: set false" in violation.message
    assert "prepare" not in violation.message and "finish" not in violation.message


def test_findings_in_two_replicated_jobs_are_one_violation_naming_both(base: list[Resource]) -> None:
    bad = jobset(labels=QUEUED, jobs={"workers": pod_spec(privileged()), "finish": pod_spec(privileged())})
    [violation] = run_stack_rule(rule("pod-security-restricted"), [*base, bad])
    assert (
        "replicatedJobs[workers] breaks" in violation.message and "replicatedJobs[finish] breaks" in violation.message
    )
    assert len(violation.details) == 2


def test_unpinned_image_names_the_replicated_job() -> None:
    bad = jobset(jobs={"workers": pod_spec(container("train", image="python")), "finish": pod_spec()})
    [message] = [v.message for v in run_resource_rule(rule("image-pinned"), bad)]
    assert message.startswith("JobSet train replicatedJobs[workers]: pin images: containers[train].image: 'python'")
    assert "finish" not in message


@pytest.mark.parametrize(
    ("rule_name", "edit", "expected"),
    [
        ("gpu-limit-equals-request", lambda c: c["resources"]["limits"].pop("nvidia.com/gpu"), "set limits.nvidia"),
        ("container-requests-limits", lambda c: c["resources"].pop("limits"), "resources.limits: set cpu, memory"),
    ],
)
def test_container_rules_reach_every_replicated_job(rule_name: str, edit: Any, expected: str) -> None:
    worker = container("train", gpus=1)
    edit(worker)
    bad = jobset(jobs={"workers": pod_spec(), "finish": pod_spec(worker)})
    [message] = [v.message for v in run_resource_rule(rule(rule_name), bad)]
    assert "replicatedJobs[finish]" in message and expected in message


def test_gpu_worker_must_fit_a_node_pool(base: list[Resource]) -> None:
    no_toleration = pod_spec(container("train", gpus=1), nodeSelector=GPU_POOL)
    fits = pod_spec(container("train", gpus=1), nodeSelector=GPU_POOL, tolerations=[GPU_TOLERATION])
    bad = jobset(labels=QUEUED, jobs={"workers": no_toleration, "finish": pod_spec()})
    [message] = stack_messages("node-pool-match", [*base, bad])
    assert f"JobSet {ML_NS}/train replicatedJobs[workers] fits no node pool" in message
    assert stack_messages("node-pool-match", [*base, jobset(labels=QUEUED, jobs={"workers": fits})]) == []


def test_jobset_without_queue_label_bypasses_kueue_once(base: list[Resource]) -> None:
    [message] = stack_messages("kueue-queue-label", [*base, jobset()])  # two replicated jobs, one violation
    assert message == (
        f"JobSet {ML_NS}/train bypasses Kueue: add label kueue.x-k8s.io/queue-name: default to metadata.labels"
    )


def test_jobset_queue_label_must_name_a_local_queue(base: list[Resource]) -> None:
    assert stack_messages("kueue-queue-label", [*base, jobset(labels=QUEUED)]) == []
    [message] = stack_messages("kueue-queue-label", [*base, jobset(labels={"kueue.x-k8s.io/queue-name": "gpu"})])
    assert "names LocalQueue 'gpu'" in message and "use one of default" in message
    assert stack_messages("kueue-queue-label", [*base, jobset(namespace="research")]) == []  # not an ML namespace


def test_the_programs_distributed_run_passes_every_rule(base: list[Resource]) -> None:
    """The JobSet workloads/training_job.py renders (prepare, 3 GPU workers, finish) against the dev stack."""
    spec = distributed_training()
    manifest = training_manifest(spec)
    assert manifest["kind"] == "JobSet"
    run = from_manifest(manifest)
    assert [t.part for t in pod_templates(run)] == [f"replicatedJobs[{n}]" for n in ("prepare", "workers", "finish")]
    for r in RULES:
        found = run_resource_rule(r, run) if r.resource_check else run_stack_rule(r, [*base, run])
        assert [v for v in found if v.urn == run.urn] == [], r.name

"""gpu-toleration-needs-gpu: in ML namespaces only a pod that requests a GPU tolerates the GPU taint."""

from __future__ import annotations

import pytest
from mlpolicy.model import Resource
from mlpolicy.rules import MANDATORY, rule, run_stack_rule

from mlplatform.capture import Capture

from .builders import (
    GPU_TOLERATION,
    ML_NS,
    container,
    jobset,
    pod_spec,
    programs_distributed_objects,
    resources_of,
    workload,
)

RULE = "gpu-toleration-needs-gpu"


@pytest.fixture(scope="module")
def base(dev: Capture) -> list[Resource]:
    return resources_of(dev)


def messages(resources: list[Resource]) -> list[str]:
    return [v.message for v in run_stack_rule(rule(RULE), resources)]


def test_the_rule_is_mandatory() -> None:
    assert rule(RULE).level == MANDATORY


def test_a_cpu_job_that_tolerates_the_gpu_taint_is_reported(base: list[Resource]) -> None:
    job = workload("Job", "cpu-on-gpu", spec=pod_spec(container(), tolerations=[GPU_TOLERATION]))
    [message] = messages([*base, job])
    assert message.startswith(
        f"Job {ML_NS}/cpu-on-gpu tolerates the GPU nodes' taint nvidia.com/gpu=present:NoSchedule"
    )
    assert "requests no nvidia.com/gpu" in message and "remove that toleration" in message


def test_a_toleration_of_every_taint_counts_too(base: list[Resource]) -> None:
    everything = workload("Deployment", "anywhere", spec=pod_spec(container(), tolerations=[{"operator": "Exists"}]))
    assert len(messages([*base, everything])) == 1


@pytest.mark.parametrize(
    ("namespace", "gpus", "tolerations"),
    [
        (ML_NS, 1, [GPU_TOLERATION]),  # a GPU pod may tolerate it
        ("ops", 0, [GPU_TOLERATION]),  # outside ML namespaces (node agents live in gpu-system)
        (ML_NS, 0, [{**GPU_TOLERATION, "effect": "NoExecute"}]),  # does not get past NoSchedule
        (ML_NS, 0, [{"key": "other", "operator": "Exists"}]),
        (ML_NS, 0, []),
    ],
)
def test_what_passes(base: list[Resource], namespace: str, gpus: int, tolerations: list[dict[str, str]]) -> None:
    pod = workload("Job", "train", namespace=namespace, spec=pod_spec(container(gpus=gpus), tolerations=tolerations))
    assert messages([*base, pod]) == []


def test_each_pod_template_of_a_jobset_is_judged_on_its_own(base: list[Resource]) -> None:
    gpu_pod = pod_spec(container(gpus=1), tolerations=[GPU_TOLERATION])
    cpu_pod = pod_spec(container(), tolerations=[GPU_TOLERATION])
    [message] = messages([*base, jobset(jobs={"workers": gpu_pod, "finish": cpu_pod})])
    assert message.startswith(f"JobSet {ML_NS}/train replicatedJobs[finish] tolerates")


def test_the_programs_own_distributed_training_passes(base: list[Resource]) -> None:
    # Its GPU workers get the toleration from Kueue's GPU flavor at admission, not in the manifest.
    assert messages([*base, *programs_distributed_objects()]) == []

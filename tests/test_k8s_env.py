"""What Kubernetes does to a pod's environment and arguments (tests/k8s_env.py), rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s_env import (
    COMPLETION_INDEX_ENV,
    JOBSET_NAME_LABEL,
    EnvError,
    container_env,
    expand,
    expand_command,
    indexed_pod,
    jobset_pod_metadata,
    jobset_steps,
)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("/models/.runs/$(RUN_NAME)/data", "/models/.runs/run-1/data"),
        ("$(RUN_NAME)$(RUN_NAME)", "run-1run-1"),
        ("$(UNKNOWN)/x", "$(UNKNOWN)/x"),  # an unknown variable stays as written
        ("$$(RUN_NAME)", "$(RUN_NAME)"),  # "$$" escapes the reference
        ("$$$(RUN_NAME)", "$run-1"),
        ("cost $5", "cost $5"),  # "$" before anything but "(" or "$" stays
        ("trailing $", "trailing $"),
        ("$(RUN_NAME", "$(RUN_NAME"),  # unclosed
        ("$(RUN_NAME $$", "$(RUN_NAME $"),  # after an unclosed "$(", scanning goes on
        ("$($(RUN_NAME)", "$($(RUN_NAME)"),  # the name runs to the first ")": "$(RUN_NAME", unknown
        ("$()", "$()"),  # the empty name is unknown
        ("$(EMPTY)", ""),
        ("no references", "no references"),
    ],
)
def test_expansion_follows_kubernetes(text: str, expanded: str) -> None:
    assert expand(text, {"RUN_NAME": "run-1", "EMPTY": ""}) == expanded


def pod(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": {}}


def test_env_is_resolved_in_order_and_literal_values_see_only_earlier_variables() -> None:
    container = {
        "env": [
            {"name": "EARLY", "value": "$(LATER)"},
            {"name": "RUN", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOBSET_NAME_LABEL}']"}}},
            {"name": "LATER", "value": "x-$(RUN)"},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MISSING", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['absent']"}}},
        ],
        "command": ["run", "$(NS)"],
        "args": ["$(LATER)", "$(EARLY)", "$(HOME)"],
    }
    env = container_env(container, pod(**{JOBSET_NAME_LABEL: "set-1"}))
    assert env == {"EARLY": "$(LATER)", "RUN": "set-1", "LATER": "x-set-1", "NS": "ns", "MISSING": ""}
    # The image's environment (HOME) is not the container's: its reference stays.
    assert expand_command(container, env) == (["run", "ns"], ["x-set-1", "$(LATER)", "$(HOME)"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "S", "valueFrom": {"secretKeyRef": {"name": "s"}}}, r"env\[S\]: valueFrom \['secretKeyRef'\]"),
        ({"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, r"env\[IP\]: fieldRef 'status"),
    ],
)
def test_env_the_tiers_cannot_resolve_is_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        container_env({"env": [entry]}, pod())


def jobset(*replicated: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "train-1a2b", "namespace": "ml"}, "spec": {"replicatedJobs": list(replicated)}}


def replicated_job(name: str, completions: int = 1, after: tuple[str, str] | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "completions": completions,
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "env": []}]}},
    }
    if completions > 1:
        job["completionMode"] = "Indexed"
    rj: dict[str, Any] = {"name": name, "replicas": 1, "template": {"spec": job}}
    if after:
        rj["dependsOn"] = [{"name": after[0], "status": after[1]}]
    return rj


def test_a_jobset_pod_carries_the_jobsets_name_and_an_indexed_pod_its_index() -> None:
    workers = replicated_job("workers", completions=3)
    metadata = jobset_pod_metadata(jobset(workers), workers, restarts=1)
    assert metadata["labels"]["app"] == "a"
    assert metadata["labels"][JOBSET_NAME_LABEL] == metadata["annotations"][JOBSET_NAME_LABEL] == "train-1a2b"
    assert metadata["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "1"
    assert metadata["labels"]["batch.kubernetes.io/job-name"] == "train-1a2b-workers-0"
    template = workers["template"]["spec"]["template"]
    made = indexed_pod(workers["template"]["spec"], {"metadata": metadata, "spec": template["spec"]}, 2)
    (container,) = made["spec"]["containers"]
    assert container_env(container, made) == {COMPLETION_INDEX_ENV: "2"}
    assert template["spec"]["containers"][0]["env"] == []  # the manifest is not changed
    with pytest.raises(ValueError, match="outside"):
        indexed_pod(workers["template"]["spec"], made, 3)


def test_jobset_steps_say_what_each_replicated_job_waits_for() -> None:
    steps = jobset_steps(
        jobset(
            replicated_job("prepare"),
            replicated_job("workers", 2, after=("prepare", "Complete")),
            replicated_job("finish", after=("workers", "Ready")),
        )
    )
    assert [(s.name, s.pods, s.indexed, s.after, s.after_status) for s in steps] == [
        ("prepare", 1, False, None, None),
        ("workers", 2, True, "prepare", "Complete"),
        ("finish", 1, False, "workers", "Ready"),
    ]

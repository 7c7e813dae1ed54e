"""The Pod Security Standards restricted profile, control by control, on every workload kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mlpolicy.model import Resource
from mlpolicy.rules import rule, run_stack_rule

from .builders import ML_NS, container, pod_spec, workload

KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "JobSet"]
Edit = Callable[[dict[str, Any], dict[str, Any]], object]  # (pod spec, its first container)


def namespace(name: str, level: str) -> Resource:
    labels = {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "v1.34"}
    return Resource("kubernetes:core/v1:Namespace", name, {"metadata": {"name": name, "labels": labels}}, f"urn:{name}")


def findings(*resources: Resource) -> list[str]:
    stack = [namespace(ML_NS, "restricted"), namespace("gpu-system", "privileged"), *resources]
    return [v.message for v in run_stack_rule(rule("pod-security-restricted"), stack)]


def edited(kind: str, edit: Edit) -> Resource:
    c = container()
    spec = pod_spec(c)
    edit(spec, c)
    return workload(kind, spec=spec)


CONTROLS: dict[str, tuple[Edit, str]] = {
    "privileged": (lambda s, c: c["securityContext"].update(privileged=True), "securityContext.privileged: set false"),
    "hostNetwork": (lambda s, c: s.update(hostNetwork=True), "spec.hostNetwork: set false"),
    "hostPID": (lambda s, c: s.update(hostPID=True), "spec.hostPID: set false"),
    "hostIPC": (lambda s, c: s.update(hostIPC=True), "spec.hostIPC: set false"),
    "hostPort": (lambda s, c: c.update(ports=[{"containerPort": 80.0, "hostPort": 80.0}]), "remove hostPort"),
    "hostPath": (
        lambda s, c: s.update(volumes=[{"name": "host", "hostPath": {"path": "/var/run"}}]),
        "spec.volumes[host]: hostPath is not allowed",
    ),
    "nfs volume": (
        lambda s, c: s.update(volumes=[{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
        "nfs is not allowed",
    ),
    "no drop ALL": (lambda s, c: c["securityContext"].pop("capabilities"), "capabilities.drop: must include ALL"),
    "add SYS_ADMIN": (
        lambda s, c: c["securityContext"]["capabilities"].update(add=["SYS_ADMIN", "NET_BIND_SERVICE"]),
        "capabilities.add: remove SYS_ADMIN",
    ),
    "privilege escalation": (
        lambda s, c: c["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation: set false",
    ),
    "runAsNonRoot unset": (
        lambda s, c: (s["securityContext"].pop("runAsNonRoot"), c["securityContext"].pop("runAsNonRoot")),
        "runAsNonRoot: set true",
    ),
    "runAsNonRoot false in container": (
        lambda s, c: c["securityContext"].update(runAsNonRoot=False),
        "runAsNonRoot: set true",
    ),
    "runAsUser 0": (lambda s, c: c["securityContext"].update(runAsUser=0.0), "runAsUser: 0 is root"),
    "pod runAsUser 0": (lambda s, c: s["securityContext"].update(runAsUser=0.0), "spec.securityContext.runAsUser"),
    "no seccomp": (lambda s, c: s["securityContext"].pop("seccompProfile"), "seccompProfile.type RuntimeDefault"),
    "seccomp Unconfined": (
        lambda s, c: c["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "'Unconfined' is not allowed",
    ),
    "procMount": (lambda s, c: c["securityContext"].update(procMount="Unmasked"), "procMount: remove it"),
    "unsafe sysctl": (
        lambda s, c: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "remove 'kernel.msgmax'",
    ),
    "AppArmor unconfined": (
        lambda s, c: c["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile.type",
    ),
    "SELinux type": (
        lambda s, c: c["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        "seLinuxOptions.type",
    ),
    "SELinux user": (
        lambda s, c: s["securityContext"].update(seLinuxOptions={"user": "root"}),
        "seLinuxOptions.user: must be unset",
    ),
    "hostProcess": (
        lambda s, c: c["securityContext"].update(windowsOptions={"hostProcess": True}),
        "hostProcess: remove it",
    ),
    "init container": (
        lambda s, c: s.update(initContainers=[{"name": "init", "image": "x:1"}]),
        "initContainers[init]",
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_compliant_pod_templates_pass(kind: str) -> None:
    assert findings(workload(kind)) == []


def test_container_level_settings_satisfy_the_pod_level_controls() -> None:
    c = container()
    c["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    spec = pod_spec(c)
    spec["securityContext"] = {}
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}, {"name": "t", "emptyDir": {}}]
    assert findings(workload("Deployment", spec=spec)) == []


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_each_restricted_control_is_enforced(control: str) -> None:
    edit, expected = CONTROLS[control]
    [message] = findings(edited("Deployment", edit))
    assert expected in message and "Deployment bookstore-ml/app" in message


@pytest.mark.parametrize("kind", KINDS)
def test_privileged_container_reported_once_per_workload_for_every_kind(kind: str) -> None:
    bad = edited(kind, CONTROLS["privileged"][0])
    violations = run_stack_rule(rule("pod-security-restricted"), [namespace(ML_NS, "restricted"), bad])
    assert [v.urn for v in violations] == [bad.urn]


def test_apparmor_annotation_must_be_runtime_default_or_localhost() -> None:
    bad = workload("Pod")
    props: dict[str, Any] = dict(bad.props)
    props["metadata"] = {
        **props["metadata"],
        "annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"},
    }
    [message] = findings(Resource(bad.type, bad.name, props, bad.urn))
    assert "runtime/default or localhost/<profile>" in message


def test_namespaces_the_stack_labels_privileged_are_exempt() -> None:
    agent = workload("DaemonSet", namespace="gpu-system", spec=pod_spec(container(), hostNetwork=True))
    assert findings(agent) == []
    # ...but only those: the same pod in a namespace the stack does not label privileged is judged.
    assert findings(workload("DaemonSet", namespace="other", spec=pod_spec(container(), hostNetwork=True))) != []

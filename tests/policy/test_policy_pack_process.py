"""The real pack process, driven over gRPC as the Pulumi CLI drives it, on captured stacks.

Proves: the pack starts as the CLI starts it and prints its port first; GetAnalyzerInfo reports
every rule with its level and config schema; Configure changes levels and settings; Analyze and
AnalyzeStack decode the engine's wire form (doubles, wrapped secrets) and find zero mandatory
violations in the dev and eks stacks, and exactly the planted ones in a broken variant.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator

import pytest
from mlpolicy.model import Resource
from mlpolicy.rules import RULES

from mlplatform.capture import REPO_ROOT, SECRET_SIG, Capture, CapturedResource
from tests.stacks import EKS_FROM_HERE

from .builders import GPU_POOL, GPU_TOLERATION, container, pod_spec, service, workload
from .packproc import LEVELS, Diagnostic, PackProcess, capture_in_subprocess, pack_process

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's sentinel for an unknown string


@pytest.fixture(scope="module")
def pack() -> Iterator[PackProcess]:
    with pack_process() as process:
        yield process


@pytest.fixture(autouse=True)
def default_config(pack: PackProcess) -> None:
    """Each test starts from the pack's defaults, as a fresh `pulumi preview` would."""
    pack.configure()


def captured(resource: Resource) -> CapturedResource:
    return CapturedResource(resource.type, resource.name, resource.urn, "", True, dict(resource.props))


def mandatory(diagnostics: list[Diagnostic]) -> list[tuple[str, str]]:
    return sorted((d.policy, d.urn) for d in diagnostics if d.level == "mandatory")


def explain(diagnostics: list[Diagnostic]) -> str:
    return "\n".join(f"[{d.level}] {d.policy} {d.urn}: {d.message}" for d in diagnostics)


def broken_resources() -> dict[str, Resource]:
    """One planted mandatory violation each; otherwise compliant (pool, quota and probe rules pass)."""
    privileged = container()
    privileged["securityContext"]["privileged"] = True
    gpu_spec = pod_spec(container(gpus=1), nodeSelector=GPU_POOL, tolerations=[GPU_TOLERATION])
    return {
        "pod-security-restricted": workload("Deployment", "broken-privileged", spec=pod_spec(privileged)),
        "kueue-queue-label": workload("Job", "broken-gpu-job", spec=gpu_spec),
        "image-pinned": workload("Deployment", "broken-unpinned", spec=pod_spec(container(image="python"))),
        "ml-service-account-least-privilege": workload(
            "Deployment", "broken-token", spec=pod_spec(container(), automountServiceAccountToken=True)
        ),
    }


def test_analyzer_info_reports_every_rule_with_level_and_schema(pack: PackProcess) -> None:
    info = pack.info()
    assert info.name == "ml-platform" and info.supportsConfig
    assert {p.name: LEVELS[p.enforcementLevel] for p in info.policies} == {r.name: r.level for r in RULES}
    endpoint = next(p for p in info.policies if p.name == "eks-endpoint-not-public")
    assert dict(endpoint.configSchema.properties)["allowPublicEndpoint"]["type"] == "boolean"


def test_dev_stack_has_no_mandatory_violations(pack: PackProcess, dev: Capture) -> None:
    wire = json.dumps([r.inputs for r in dev.resources])
    assert SECRET_SIG in wire and ".0" in wire  # the wire form really carries secrets and doubles
    diagnostics = pack.analyze_all(dev.resources)
    assert mandatory(diagnostics) == [], explain(diagnostics)
    # Mocks know every value: nothing may fall back to "can't run during preview".
    assert not [d for d in diagnostics if "during preview" in d.message], explain(diagnostics)


def test_eks_stack_has_no_mandatory_violations(pack: PackProcess) -> None:
    if not (REPO_ROOT / "Pulumi.eks.yaml").exists():
        pytest.skip("Pulumi.eks.yaml does not exist yet: no eks stack to analyze")
    eks = capture_in_subprocess("eks", EKS_FROM_HERE)
    assert [r for r in eks if r.type == "aws:eks/nodeGroup:NodeGroup"], "the eks stack must create node groups"
    diagnostics = pack.analyze_all(eks)
    assert mandatory(diagnostics) == [], explain(diagnostics)


def test_broken_variant_reports_exactly_the_planted_violations(pack: PackProcess, dev: Capture) -> None:
    planted = broken_resources()
    diagnostics = pack.analyze_all([*dev.resources, *map(captured, planted.values())])
    assert mandatory(diagnostics) == sorted((policy, r.urn) for policy, r in planted.items()), explain(diagnostics)
    by_policy = {d.policy: d.message for d in diagnostics if d.level == "mandatory"}
    assert "containers[app].securityContext.privileged: set false" in by_policy["pod-security-restricted"]
    assert "add label kueue.x-k8s.io/queue-name: default" in by_policy["kueue-queue-label"]
    assert "'python' is not pinned; use a version tag" in by_policy["image-pinned"]
    assert "gets a service account token" in by_policy["ml-service-account-least-privilege"]


def _dev_with_distributed_copies(dev: Capture) -> tuple[list[CapturedResource], list[CapturedResource]]:
    """The dev stack with its JobSet and launcher objects as private copies the test may change."""
    mine = ("bookstore-train-jobset", "bookstore-retrain-launcher", "bookstore-retrain-cronjob")
    rest, copies = [], []
    for r in dev.resources:
        if r.name.startswith(mine):
            copies.append(dataclasses.replace(r, inputs=copy.deepcopy(r.inputs)))
        else:
            rest.append(r)
    assert {r.type.rsplit(":", 1)[1] for r in copies} >= {"JobSet", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    return rest, copies


def test_distributed_training_and_its_launcher_pass(pack: PackProcess, dev: Capture) -> None:
    """The dev stack trains with a JobSet and retrains through a launcher (the launched JobSet as YAML
    in a ConfigMap): no mandatory violation, and the launcher's exemption is earned."""
    rest, distributed = _dev_with_distributed_copies(dev)
    assert mandatory(pack.analyze_all([*rest, *distributed])) == []
    # Its Role with one more verb fails both rules.
    role = next(r for r in distributed if r.type.endswith(":Role"))
    role.inputs["rules"][0]["verbs"].append("delete")
    flagged = {d.policy for d in pack.analyze_all([*rest, *distributed]) if d.level == "mandatory"}
    assert flagged == {"kueue-queue-label", "ml-service-account-least-privilege"}


def test_a_launched_manifest_unknown_during_preview_leaves_the_rest_of_the_rule_running(
    pack: PackProcess, dev: Capture
) -> None:
    """In a preview the launcher's ConfigMap (it embeds the built image) may be unknown: the rule still
    flags a plain unqueued Job, and notes the launcher as not checkable yet instead of passing silently."""
    rest, distributed = _dev_with_distributed_copies(dev)
    configmap = next(r for r in distributed if r.type.endswith(":ConfigMap"))
    configmap.inputs["data"] = {"jobset.yaml": UNKNOWN_STRING}
    unqueued = captured(workload("Job", "unqueued"))
    diagnostics = pack.analyze_all([*rest, *distributed, unqueued])
    assert mandatory(diagnostics) == [("kueue-queue-label", unqueued.urn)], explain(diagnostics)
    [note] = [d for d in diagnostics if d.policy == "kueue-queue-label" and d.level == "advisory"]
    assert "during preview" in note.message and "jobset.yaml" in note.message


def test_enforcement_levels_change_through_configure(pack: PackProcess, dev: Capture) -> None:
    planted = broken_resources()
    pack.configure(
        {
            "image-pinned": ("advisory", {}),
            "kueue-queue-label": ("disabled", {}),
            "ml-service-account-least-privilege": ("advisory", {}),
        }
    )
    diagnostics = pack.analyze_all([*dev.resources, *map(captured, planted.values())])
    assert mandatory(diagnostics) == [("pod-security-restricted", planted["pod-security-restricted"].urn)]
    assert [d.level for d in diagnostics if d.policy == "image-pinned"] == ["advisory"]
    assert [d.level for d in diagnostics if d.policy == "ml-service-account-least-privilege"] == ["advisory"]
    assert not [d for d in diagnostics if d.policy == "kueue-queue-label"]


def test_rule_settings_travel_through_configure(pack: PackProcess, dev: Capture) -> None:
    lb = captured(service("public", {"app": "x"}, type_="LoadBalancer"))
    assert mandatory(pack.analyze_all([*dev.resources, lb])) == [("no-external-services-in-ml-namespaces", lb.urn)]
    pack.configure({"no-external-services-in-ml-namespaces": (None, {"allowExternalServices": True})})
    assert mandatory(pack.analyze_all([*dev.resources, lb])) == []


def test_a_value_unknown_during_preview_is_an_advisory_not_a_verdict(pack: PackProcess) -> None:
    pending = captured(workload("Deployment", "pending", spec=pod_spec(container(image=UNKNOWN_STRING))))
    diagnostics = pack.analyze_all([pending])
    [note] = [d for d in diagnostics if d.policy == "image-pinned"]
    assert note.level == "advisory" and "during preview" in note.message
    assert mandatory(diagnostics) == [], explain(diagnostics)

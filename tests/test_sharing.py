"""Teams share the GPUs fairly, and CPU work never lands on GPU nodes: asserted on the rendered objects.

Each team gets its own ClusterQueue in one cohort; guarantees plus the cohort's own quota add up
to the pool exactly; a pod set that requests no GPU can never be assigned the GPU flavor (derived
from the rendered ClusterQueues with a model of Kueue's flavor assignment, and shown to catch the
old layout); every new object validates against the vendored Kueue CRDs including their CEL rules.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import yaml

from mlplatform.capture import Capture, capture_stack
from mlplatform.cluster.pools import GPU_TAINT, POOL_LABEL
from mlplatform.config import ConfigError, parse_config
from mlplatform.quantity import parse_quantity
from mlplatform.sharing import COHORT, Pools, Share, TeamConfig, TeamEntry, parse_team_entry, resolve_shares
from tests.stacks import EKS_FROM_HERE
from tests.validation import SchemaError, validate_manifest

GPU = "nvidia.com/gpu"
TWO_TEAMS = ["bookstore-ml gpus=1 gpuBorrowingLimit=1 weight=2", "search-ml gpus=1 gpuLendingLimit=0"]


@pytest.fixture(scope="module")
def two_teams() -> Capture:
    return capture_stack("dev", {"teams": TWO_TEAMS})


@pytest.fixture(scope="module")
def eks_three_teams() -> Capture:
    # Sliced GPUs and an unstated guarantee: 2 nodes x 1 GPU x 3 slices = 6, a remainder in the cohort.
    return capture_stack(
        "eks",
        {
            **EKS_FROM_HERE,
            "gpuTimeSlicingReplicas": 3,
            "teams": ["bookstore-ml gpus=1", "search-ml gpus=2 cpu=2", "vision-ml cpuBorrowingLimit=1"],
        },
    )


def errors_for(**raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, stack="t")
    return info.value.problems


def quotas(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """flavor -> resource -> its quota entry (nominalQuota, borrowingLimit, lendingLimit)."""
    return {
        f["name"]: {r["name"]: r for r in f["resources"]} for g in obj["spec"]["resourceGroups"] for f in g["flavors"]
    }


def total(value: Any) -> Decimal:
    return parse_quantity(str(value))


# --- Kueue's flavor assignment, as a model -----------------------------------------------------


def candidate_flavors(queue: dict[str, Any], requested: set[str]) -> set[str]:
    """The flavors Kueue may assign a pod set that requests ``requested`` in ``queue``.

    Kueue assigns flavors per requested resource from the one resource group that covers it
    (flavorassigner.findFlavorForPodSets: ``RGByResource``, then that group's flavors; resources the
    pod set does not request are never looked up). Flavor taints are no guard here: Kueue checks
    them against the pod's tolerations *plus the flavor's own*, which the GPU flavor carries.
    """
    out: set[str] = set()
    for resource in requested:
        groups = [g for g in queue["spec"]["resourceGroups"] if resource in g["coveredResources"]]
        assert len(groups) <= 1, f"{resource} is covered by {len(groups)} resource groups"
        out |= {f["name"] for g in groups for f in g["flavors"]}
    return out


def is_gpu_flavor(flavor: dict[str, Any], gpu_node_labels: dict[str, str]) -> bool:
    """A flavor that lands pods on GPU nodes: its labels select them, or it tolerates their taint."""
    spec = flavor["spec"]
    labels = spec.get("nodeLabels") or {}
    tolerates = any(t.get("key") in (GPU_TAINT.key, None) for t in spec.get("tolerations") or [])
    return (bool(labels) and labels.items() <= gpu_node_labels.items()) or tolerates


def gpu_node_labels(capture: Capture) -> dict[str, str]:
    if capture.stack == "eks":
        (group,) = [g for g in capture.of_type("aws:eks/nodeGroup:NodeGroup") if g.props["labels"][POOL_LABEL] == "gpu"]
        return dict(group.props["labels"])
    nodes = yaml.safe_load(capture.named("ml-platform-kind").props["environment"]["KIND_CONFIG"])["nodes"]
    return next(n["labels"] for n in nodes if n.get("labels", {}).get(POOL_LABEL) == "gpu")


def cpu_only_can_reach_gpu_nodes(capture: Capture) -> list[str]:
    flavors = {f["metadata"]["name"]: f for f in capture.kind("ResourceFlavor")}
    labels = gpu_node_labels(capture)
    found = []
    for queue in capture.kind("ClusterQueue"):
        for requested in ({"cpu"}, {"memory"}, {"cpu", "memory"}, {"cpu", "memory", "pods"}):
            for name in candidate_flavors(queue, requested):
                if is_gpu_flavor(flavors[name], labels):
                    found.append(f"{queue['metadata']['name']}: {sorted(requested)} -> {name}")
    return found


@pytest.mark.parametrize("stack", ["dev", "two_teams", "eks_three_teams"])
def test_a_pod_set_that_requests_no_gpu_is_never_assigned_the_gpu_flavor(
    stack: str, request: pytest.FixtureRequest
) -> None:
    capture: Capture = request.getfixturevalue(stack)
    assert capture.kind("ClusterQueue")
    assert cpu_only_can_reach_gpu_nodes(capture) == []
    flavors = {f["metadata"]["name"]: f for f in capture.kind("ResourceFlavor")}
    for queue in capture.kind("ClusterQueue"):
        # A GPU pod set gets the GPU flavor for its GPUs, and flavors whose node labels merge
        # without conflict (Kueue refuses conflicting node selectors).
        assigned = candidate_flavors(queue, {"cpu", "memory", GPU})
        assert any(is_gpu_flavor(flavors[f], gpu_node_labels(capture)) for f in assigned)
        merged: dict[str, str] = {}
        for name in sorted(assigned):
            for key, value in (flavors[name]["spec"].get("nodeLabels") or {}).items():
                assert merged.setdefault(key, value) == value, (name, key)


def test_the_model_catches_the_old_single_group_layout(dev: Capture) -> None:
    # One group over cpu, memory and GPUs with the cpu flavor first: a CPU-only job spills onto the
    # GPU flavor (and its toleration) whenever the cpu flavor is full. The check must say so.
    old = Capture(dev.stack, [replace(r, inputs=copy.deepcopy(r.inputs)) for r in dev.resources])
    for resource in old.resources:
        if resource.type.endswith(":ClusterQueue"):
            groups = resource.inputs["spec"]["resourceGroups"]
            resource.inputs["spec"]["resourceGroups"] = [
                {"coveredResources": ["cpu", "memory", GPU], "flavors": [f for g in groups for f in g["flavors"]]}
            ]
    assert cpu_only_can_reach_gpu_nodes(old) == [f"bookstore-ml: {r} -> gpu" for r in (
        ["cpu"], ["memory"], ["cpu", "memory"], ["cpu", "memory", "pods"])]  # fmt: skip


# --- per-team queues in one cohort ---------------------------------------------------------------


def test_each_team_has_its_own_cluster_queue_in_one_cohort(two_teams: Capture) -> None:
    queues = {q["metadata"]["name"]: q["spec"] for q in two_teams.kind("ClusterQueue")}
    assert set(queues) == {"bookstore-ml", "search-ml"}
    (cohort,) = two_teams.kind("Cohort")
    assert cohort["metadata"]["name"] == COHORT
    for team, spec in queues.items():
        assert spec["cohortName"] == COHORT
        # Its own namespace only, by the label the API server sets and nobody can change.
        assert spec["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == team
        # Reclaim its guarantee from borrowers; within the team, priority decides.
        assert spec["preemption"] == {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any"}
        assert "borrowWithinCohort" not in spec["preemption"]  # Kueue: classical preemption only, not fair sharing
    assert queues["bookstore-ml"]["fairSharing"] == {"weight": "2"}
    assert queues["search-ml"]["fairSharing"] == {"weight": "1"}
    local = {q["metadata"]["namespace"]: q for q in two_teams.kind("LocalQueue")}
    assert {ns: q["spec"]["clusterQueue"] for ns, q in local.items()} == {"bookstore-ml": "bookstore-ml",
                                                                           "search-ml": "search-ml"}  # fmt: skip
    assert {q["metadata"]["name"] for q in local.values()} == {"default"}  # what workloads name


def test_guarantees_limits_and_weights_reach_the_cluster_queues(two_teams: Capture) -> None:
    queues = {q["metadata"]["name"]: quotas(q) for q in two_teams.kind("ClusterQueue")}
    assert queues["bookstore-ml"]["gpu"][GPU] == {"name": GPU, "nominalQuota": 1, "borrowingLimit": 1}
    assert queues["search-ml"]["gpu"][GPU] == {"name": GPU, "nominalQuota": 1, "lendingLimit": 0}
    # cpu and memory: not stated, so each gets half of queueCpu and queueMemory.
    assert queues["bookstore-ml"]["cpu"] == {"cpu": {"name": "cpu", "nominalQuota": "4"},
                                             "memory": {"name": "memory", "nominalQuota": "8Gi"}}  # fmt: skip
    # The namespaces' ResourceQuotas hold what the queues may admit: search-ml lends nothing, so
    # bookstore-ml can reach only its own GPU; search-ml may borrow bookstore-ml's.
    hard = {q["metadata"]["namespace"]: q["spec"]["hard"] for q in two_teams.kind("ResourceQuota")}
    assert hard["search-ml"][f"requests.{GPU}"] == "2" and hard["bookstore-ml"][f"requests.{GPU}"] == "2"
    assert {t.name: t.gpus.most for t in two_teams.result.platform.config.teams} == {
        "bookstore-ml": 1,
        "search-ml": 2,
    }


# --- quotas never exceed the pool ----------------------------------------------------------------


def kueue_totals(capture: Capture) -> dict[str, Decimal]:
    """Per resource: every ClusterQueue's nominal quota plus the cohort's own."""
    sums = {"cpu": Decimal(0), "memory": Decimal(0), GPU: Decimal(0)}
    for obj in [*capture.kind("ClusterQueue"), *capture.kind("Cohort")]:
        for resources in quotas(obj).values():
            for name, entry in resources.items():
                sums[name] += total(entry["nominalQuota"])
    return sums


@pytest.mark.parametrize(
    ("stack", "overrides", "gpus"),
    [
        ("dev", {}, 2),
        ("dev", {"teams": TWO_TEAMS, "kindGpuWorkers": 3}, 6),
        ("dev", {"teams": ["a", "b", "c"], "queueCpu": "10", "queueMemory": "10Gi"}, 2),
        ("eks", {**EKS_FROM_HERE, "eksGpuNodesMax": 3, "eksGpusPerNode": 4}, 12),
    ],
)
def test_the_teams_quotas_add_up_to_the_pool_exactly(stack: str, overrides: dict[str, Any], gpus: int) -> None:
    capture = capture_stack(stack, overrides)
    config = capture.result.platform.config
    assert kueue_totals(capture) == {
        "cpu": total(config.queue_cpu),
        "memory": total(config.queue_memory),
        GPU: Decimal(gpus),
    }
    for queue in capture.kind("ClusterQueue"):
        for resources in quotas(queue).values():
            for entry in resources.values():
                assert total(entry["nominalQuota"]) >= 0


def test_three_teams_on_two_gpus_share_them_through_the_cohort() -> None:
    capture = capture_stack("dev", {"teams": ["a", "b", "c"]})
    # 2 GPUs do not split in three: nobody is guaranteed one, all of them are borrowable by anyone.
    assert {q["metadata"]["name"]: quotas(q)["gpu"][GPU]["nominalQuota"] for q in capture.kind("ClusterQueue")} == {
        "a": 0,
        "b": 0,
        "c": 0,
    }
    (cohort,) = capture.kind("Cohort")
    assert quotas(cohort)["gpu"][GPU] == {"name": GPU, "nominalQuota": 2}
    assert quotas(cohort)["cpu"]["cpu"]["nominalQuota"] == "2m"  # 8 cores split in 2666m each, 2m left


# --- config errors name the keys and values ------------------------------------------------------


def test_guaranteed_gpus_beyond_the_pool_are_refused() -> None:
    (problem,) = errors_for(teams=["bookstore-ml gpus=2", "search-ml gpus=1"])
    assert problem.startswith("ml-platform:teams = ['bookstore-ml gpus=2', 'search-ml gpus=1'] is not allowed: ")
    assert (
        "guaranteed gpus add up to 3 (bookstore-ml gpus=2, search-ml gpus=1), more than the 2 the pool has" in problem
    )
    assert "(kindGpuWorkers 1 x kindGpusPerWorker 2 x gpuTimeSlicingReplicas 1)" in problem
    eks = errors_for(clusterProvider="eks", eksPublicAccessCidrs=["203.0.113.0/24"], teams=["a gpus=3"])
    assert any("(eksGpuNodesMax 2 x eksGpusPerNode 1 x gpuTimeSlicingReplicas 1)" in p for p in eks), eks
    cpu = errors_for(teams=["a cpu=6", "b cpu=4"])
    assert any("guaranteed cpu add up to 10 (a cpu=6, b cpu=4), more than the 8 the pool has "
               "(ml-platform:queueCpu '8')" in p for p in cpu), cpu  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("search-ml gpuz=1", "'gpuz' is not a team setting; did you mean 'gpus'?"),
        ("search-ml borrowGpus=1", "'borrowGpus' is not a team setting"),
        ("search-ml gpus", "'gpus' is not a setting=value pair (e.g. gpus=1)"),
        ("search-ml gpus=1.5", "gpus=1.5: GPUs come whole"),
        ("search-ml cpu=-1", "cpu=-1: must not be negative"),
        ("search-ml memory=8 gigs", "'gigs' is not a setting=value pair"),
        ("search-ml memory=lots", "memory=lots: 'lots' is not a Kubernetes quantity"),
        ("search-ml gpus=1 gpus=1", "gpus is set twice"),
        ("search-ml gpus=1 gpuLendingLimit=2", "gpuLendingLimit=2 is more than its guaranteed gpus (1)"),
        ("search-ml weight=1n", "weight=1n: 0, or more than 1e-9"),
    ],
)
def test_a_bad_team_entry_names_the_entry_and_the_setting(entry: str, fragment: str) -> None:
    problems = errors_for(teams=["bookstore-ml", entry])
    assert any(p.startswith(f"ml-platform:teams[1] = {entry!r} is not allowed: ") and fragment in p
               for p in problems), problems  # fmt: skip


def test_team_names_stay_checked_and_the_cohort_name_is_taken() -> None:
    assert any("ml-platform:teams = 'ml-teams' is not allowed: a name other than the teams' Kueue cohort" in p
               for p in errors_for(teams=["ml-teams"]))  # fmt: skip
    assert any("DNS labels" in p for p in errors_for(teams=["Bad_Name gpus=1"]))
    assert any("unique names" in p for p in errors_for(teams=["a gpus=1", "a"]))


def test_eks_gpu_idle_minutes_is_checked() -> None:
    assert any("ml-platform:eksGpuIdleMinutes = 0 is not allowed: 1 to 1440 minutes" in p
               for p in errors_for(eksGpuIdleMinutes="0"))  # fmt: skip


# --- the arithmetic, on its own ------------------------------------------------------------------


def test_unstated_guarantees_split_what_the_stated_ones_leave() -> None:
    pools = Pools(Decimal(8), Decimal(16 * 2**30), Decimal(5))
    entries = [TeamEntry("a", {"gpus": Decimal(3)}), TeamEntry("b"), TeamEntry("c", {"gpuLendingLimit": Decimal(0)})]
    teams, problems = resolve_shares(entries, pools)
    assert problems == []
    by_name = {t.name: t for t in teams}
    assert [by_name[n].gpus.guaranteed for n in "abc"] == [3, 1, 1]
    # a borrows what b lends (1); c lends nothing. c borrows a's 3 and b's 1.
    assert [by_name[n].gpus.most for n in "abc"] == [4, 4, 5]
    assert by_name["b"].cpu.guaranteed == Decimal("2.666")  # millicores, rounded down


def test_parse_team_entry_accepts_commas_and_a_colon() -> None:
    entry, problems = parse_team_entry("search-ml: gpus=1, cpu=500m,weight=0.5")
    assert problems == []
    assert entry == TeamEntry("search-ml", {"gpus": Decimal(1), "cpu": Decimal("0.5"), "weight": Decimal("0.5")},
                              "search-ml: gpus=1, cpu=500m,weight=0.5")  # fmt: skip


def test_the_default_team_is_the_default_config() -> None:
    (team,) = parse_config({}, stack="dev").teams
    assert team == TeamConfig("bookstore-ml")
    assert team.gpus == Share(Decimal(2), most=Decimal(2), namespace_limit=Decimal(2))


# --- every new object validates, CEL rules included ---------------------------------------------


def test_the_new_kueue_objects_validate_with_their_cel_rules(two_teams: Capture, eks_three_teams: Capture) -> None:
    kinds = set()
    evaluated = 0
    for capture in (two_teams, eks_three_teams):
        for manifest in capture.kubernetes_objects():
            if manifest["apiVersion"].startswith(("kueue.x-k8s.io/", "apiextensions.k8s.io/")):
                kinds.add(manifest["kind"])
                evaluated += validate_manifest(manifest).evaluated
    assert {"ClusterQueue", "Cohort", "AdmissionCheck", "ProvisioningRequestConfig", "ResourceFlavor",
            "LocalQueue", "CustomResourceDefinition"} <= kinds  # fmt: skip
    assert evaluated > 10


def test_the_cel_rules_would_refuse_a_broken_team_queue(eks_three_teams: Capture) -> None:
    queue = next(q for q in eks_three_teams.kind("ClusterQueue") if q["metadata"]["name"] == "vision-ml")
    validate_manifest(queue)
    alone = copy.deepcopy(queue)
    del alone["spec"]["cohortName"]  # its cpuBorrowingLimit then borrows from nobody
    with pytest.raises(SchemaError, match="borrowingLimit must be nil when cohort is empty"):
        validate_manifest(alone)
    (cohort,) = eks_three_teams.kind("Cohort")
    short = copy.deepcopy(cohort)
    short["spec"]["resourceGroups"][0]["flavors"][0]["resources"].pop()
    with pytest.raises(SchemaError, match="flavors must have the same number of resources as the coveredResources"):
        validate_manifest(short)

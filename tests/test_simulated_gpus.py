"""Simulated GPUs on kind (fake-gpu-operator) and real ones elsewhere, decided by the cluster.

What the nodes advertise is derived from the rendered simulator values and kind config, the way
fake-gpu-operator v0.2.0 derives it (its status-updater writes ``gpuCount`` GPUs into the topology
of every node whose ``topology.nodePoolLabelKey`` label names a pool; its device plugin serves
``len(topology.gpus)`` devices as ``nvidia.com/gpu``), and compared with Kueue's rendered quotas.
"""

from __future__ import annotations

import filecmp
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import versions
from mlplatform.capture import REPO_ROOT, Capture, capture_stack
from mlplatform.config import ConfigError, parse_config
from mlplatform.helm import deep_merge
from mlplatform.monitoring import SERVICE_MONITOR_LABELS
from mlplatform.quantity import parse_quantity
from mlplatform.render import write_capture
from mlplatform.versions import CrdUpkeep
from tests.stacks import EKS_FROM_HERE
from tests.test_sharing import GPU, kueue_totals
from tests.validation import UPSTREAM, SchemaError, chart_defaults, unknown_release_keys, validate_manifest

RELEASE = "kubernetes:helm.sh/v3:Release"
SIMULATOR = "fake-gpu-operator"
# The eks stack's GPU stack as main rendered it (c96d52d) before simulated GPUs existed: Helm
# releases and the objects of its namespace, byte for byte.
EKS_GPU_STACK = Path(__file__).parent / "fixtures" / "eks-gpu-stack"


def releases(capture: Capture) -> dict[str, dict[str, Any]]:
    return {r.name: r.props for r in capture.of_type(RELEASE)}


def kind_nodes(capture: Capture) -> list[dict[str, Any]]:
    return yaml.safe_load(capture.named("ml-platform-kind").props["environment"]["KIND_CONFIG"])["nodes"]  # type: ignore[no-any-return]


def advertised_gpus(capture: Capture) -> dict[int, int]:
    """kind node index -> the nvidia.com/gpu it will advertise, from the simulator's rendered values
    (with the chart's defaults under them, as Helm merges them)."""
    values = deep_merge(chart_defaults(SIMULATOR), releases(capture)[SIMULATOR]["values"])
    topology = values["topology"]
    pools = {name: pool for name, pool in topology["nodePools"].items() if pool is not None}
    advertised = {}
    for index, node in enumerate(kind_nodes(capture)):
        pool = node.get("labels", {}).get(topology["nodePoolLabelKey"])
        if pool is not None:
            assert pool in pools, f"node {index} is in simulated pool {pool!r}, which has no topology"
            advertised[index] = int(pools[pool]["gpuCount"])
    return advertised


def gpu_flavor_nodes(capture: Capture) -> set[int]:
    """kind node indices the Kueue GPU flavor sends admitted GPU pods to."""
    (flavor,) = [f for f in capture.kind("ResourceFlavor") if f["metadata"]["name"] == "gpu"]
    selector = flavor["spec"]["nodeLabels"]
    nodes = kind_nodes(capture)
    return {i for i, n in enumerate(nodes) if all(n.get("labels", {}).get(k) == v for k, v in selector.items())}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"kindGpuWorkers": 3, "kindGpusPerWorker": 2, "gpuTimeSlicingReplicas": 2},
        {"kindGpusPerWorker": 1, "gpuTimeSlicingReplicas": 4, "teams": ["a gpus=1", "b gpus=2 gpuBorrowingLimit=1"]},
        {
            "kindGpuWorkers": 2,
            "kindGpusPerWorker": 4,
            "kindGpuModel": "NVIDIA-H100-80GB-HBM3",
            "kindGpuMemoryMiB": 81559,
        },
    ],
    ids=["default", "3-workers-sliced-2", "1-gpu-sliced-4-two-teams", "2-workers-h100"],
)
def test_gpu_nodes_advertise_exactly_what_kueues_quota_assumes(overrides: dict[str, Any]) -> None:
    capture = capture_stack("dev", overrides)
    advertised = advertised_gpus(capture)
    # Every node the GPU flavor admits onto is a simulated GPU node, and only those are.
    assert set(advertised) == gpu_flavor_nodes(capture) != set()
    assert kueue_totals(capture)[GPU] == Decimal(sum(advertised.values()))
    # ... and `pulumi up` waits until the live nodes advertise exactly that per node.
    wait = capture.named("ml-platform-gpus-advertised").props["environment"]
    assert {int(wait["EXPECTED_GPUS"])} == set(advertised.values())


def test_a_change_of_the_simulated_gpus_gives_new_nodes() -> None:
    # The simulator writes a node's GPUs down once, when it first sees it: other GPUs need new nodes.
    def triggers(**overrides: Any) -> list[Any]:
        return list(capture_stack("dev", overrides).named("ml-platform-kind").props["triggers"])

    base = triggers()
    for change in ({"gpuTimeSlicingReplicas": 2}, {"kindGpuModel": "Tesla-T4"}, {"kindGpuMemoryMiB": 15360}):
        assert triggers(**change) != base, change
    assert triggers(teamGpuQuota=1) == base
    assert triggers(kindSimulateGpus=False, gpuTimeSlicingReplicas=2) == triggers(kindSimulateGpus=False)


def test_the_cluster_decides_real_or_simulated_and_eks_renders_exactly_as_before(dev: Capture, tmp_path: Path) -> None:
    eks = capture_stack("eks", EKS_FROM_HERE)
    real_kind = capture_stack("dev", {"kindSimulateGpus": False})
    assert {"nvidia-device-plugin", "dcgm-exporter"} <= set(releases(eks)) and SIMULATOR not in releases(eks)
    assert {"nvidia-device-plugin", "dcgm-exporter"} <= set(releases(real_kind)) and SIMULATOR not in releases(
        real_kind
    )
    assert SIMULATOR in releases(dev) and not {"nvidia-device-plugin", "dcgm-exporter"} & set(releases(dev))
    assert eks.result.platform.cluster.simulated_gpus is None
    write_capture(eks, tmp_path)
    rendered = tmp_path / "eks"
    for expected in sorted(EKS_GPU_STACK.iterdir()):
        folder = "helm" if expected.name in ("nvidia-device-plugin.yaml", "dcgm-exporter.yaml") else "kubernetes"
        assert filecmp.cmp(expected, rendered / folder / expected.name, shallow=False), expected.name
    # Nothing else of the eks stack lives in its GPU namespace.
    in_namespace = {p.name for p in (rendered / "kubernetes").iterdir() if ".gpu-system." in p.name}
    assert in_namespace == {p.name for p in EKS_GPU_STACK.iterdir() if ".gpu-system." in p.name}


def test_the_simulator_is_pinned_chart_and_images(dev: Capture) -> None:
    simulator = releases(dev)[SIMULATOR]
    assert (simulator["chart"], simulator["version"]) == (versions.CURRENT.fake_gpu_operator.name, "0.2.0")
    values = simulator["values"]
    for key, component in [("devicePlugin", "device-plugin"), ("statusUpdater", "status-updater"),
                           ("topologyServer", "topology-server"), ("statusExporter", "status-exporter")]:  # fmt: skip
        repository, tag = versions.CURRENT.fake_gpu_operator_image(component)
        assert values[key]["image"] == {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    # Every image the chart would pull with its empty "replaced during CD" tag is pinned here or not
    # rendered (its component off; computeDomainController renders with computeDomainDraPlugin).
    merged = deep_merge(chart_defaults(SIMULATOR), values)
    gate = {"computeDomainController": "computeDomainDraPlugin"}
    for key, section in merged.items():
        if isinstance(section, Mapping) and isinstance(section.get("image"), Mapping):
            rendered = merged[gate.get(key, key)].get("enabled", True)
            tag = str(section["image"].get("tag") or "")
            assert not rendered or (tag and tag != "latest"), key


def test_the_simulator_runs_only_what_dev_needs(dev: Capture) -> None:
    values = releases(dev)[SIMULATOR]["values"]
    for off in ("kwokGpuDevicePlugin", "migFaker", "runtimeClass", "builtinProfiles"):
        assert values[off] == {"enabled": False}, off
    assert values["statusUpdater"]["podPatchRbac"] == {"enabled": False}  # no cluster-wide pod patching
    # Its CRDs (GPU Operator ClusterPolicy, DRA ComputeDomain) serve modes dev does not use.
    assert releases(dev)[SIMULATOR]["skipCrds"] is True
    # Besides it, only releases whose CRDs the program applies itself skip theirs (JobSet on dev).
    program_kept = {c.short_name for c in versions.CURRENT.charts().values() if c.crds.upkeep is CrdUpkeep.PROGRAM}
    skipping = {name for name, r in releases(dev).items() if name != SIMULATOR and r.get("skipCrds")}
    assert skipping and skipping <= program_kept
    # The chart's own defaults leave these on: the values above are not no-ops.
    defaults = chart_defaults(SIMULATOR)
    assert all(
        defaults[off]["enabled"] for off in ("kwokGpuDevicePlugin", "migFaker", "runtimeClass", "builtinProfiles")
    )
    assert defaults["statusUpdater"]["podPatchRbac"]["enabled"] is True


@pytest.fixture(scope="module")
def dev_monitored() -> Capture:
    return capture_stack("dev", {"monitoring": True})


def test_monitoring_on_dev_scrapes_the_simulated_exporter_as_eks_scrapes_dcgm(dev_monitored: Capture) -> None:
    (monitor,) = [m for m in dev_monitored.kind("ServiceMonitor") if m["metadata"]["namespace"] == "gpu-operator"]
    validate_manifest(monitor)
    assert monitor["spec"]["selector"] == {"matchLabels": {"app": "nvidia-dcgm-exporter"}}  # the chart's Service
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "gpu-metrics" and endpoint["path"] == "/metrics"
    # As the DCGM chart's ServiceMonitor on eks: same interval, labels Prometheus selects, and no
    # honorLabels (false), so the GPU's pod arrives as exported_pod on both.
    dcgm_defaults = yaml.safe_load((UPSTREAM / "dcgm-exporter-4.5.3-4.8.2" / "values.yaml").read_text())
    assert endpoint["interval"] == dcgm_defaults["serviceMonitor"]["interval"]
    assert dcgm_defaults["serviceMonitor"]["honorLabels"] is False and "honorLabels" not in endpoint
    assert SERVICE_MONITOR_LABELS.items() <= monitor["metadata"]["labels"].items()
    eks_dcgm = yaml.safe_load((EKS_GPU_STACK / "dcgm-exporter.yaml").read_text())["values"]["serviceMonitor"]
    assert eks_dcgm["additionalLabels"].items() <= monitor["metadata"]["labels"].items()
    # Only Prometheus reaches the exporter's port, as on eks.
    (policy,) = [m for m in dev_monitored.kind("NetworkPolicy") if m["metadata"]["namespace"] == "gpu-operator"]
    validate_manifest(policy)
    assert policy["spec"]["podSelector"]["matchLabels"]["app"] == "nvidia-dcgm-exporter"
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9400}]
    # The ServiceMonitor needs its CRD: it waits for the monitoring stack's release.
    stack = dev_monitored.named("kube-prometheus-stack")
    (monitor_resource,) = [r for r in dev_monitored.resources if r.name == "gpu-exporter-monitor"]
    assert stack.urn in monitor_resource.dependencies


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"kindGpuModel": "NVIDIA A10G"}, "ml-platform:kindGpuModel = 'NVIDIA A10G' is not allowed: letters, digits"),
        ({"kindGpuModel": "-x"}, "ml-platform:kindGpuModel = '-x' is not allowed"),
        ({"kindGpuMemoryMiB": "512"}, "ml-platform:kindGpuMemoryMiB = 512 is not allowed: MiB of one GPU, from 1024"),
        ({"kindGpuMemoryMiB": "lots"}, "ml-platform:kindGpuMemoryMiB = 'lots' is not allowed: an integer"),
    ],
)
def test_bad_simulated_gpu_settings_are_refused_naming_the_key(raw: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, stack="t")
    assert any(p.startswith(says) for p in info.value.problems), info.value.problems


def test_simulated_gpu_settings_reach_the_simulator() -> None:
    config = {"kindGpuModel": "Tesla-T4", "kindGpuMemoryMiB": 15360, "kindGpusPerWorker": 4}
    capture = capture_stack("dev", config)
    (pool,) = [p for p in releases(capture)[SIMULATOR]["values"]["topology"]["nodePools"].values() if p]
    assert pool == {"gpuProduct": "Tesla-T4", "gpuMemory": 15360, "gpuCount": 4}
    assert json.loads(json.dumps(pool)) == pool  # plain values: what Helm receives


def _memory_mib(resources: Mapping[str, Any], kind: str) -> int:
    return int(parse_quantity(resources[kind]["memory"]) / 2**20)


def test_readme_states_the_memory_dev_requests_for_simulated_gpus_and_monitoring(dev_monitored: Capture) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    values = releases(dev_monitored)
    simulator = deep_merge(chart_defaults(SIMULATOR), values[SIMULATOR]["values"])
    per_node = [simulator["devicePlugin"]["resources"], simulator["statusExporter"]["resources"]]
    once = [simulator[k]["resources"] for k in ("statusUpdater", "topologyServer")]
    once.append(simulator["statusExporter"]["kwok"]["resources"])
    node = {kind: sum(_memory_mib(r, kind) for r in per_node) for kind in ("requests", "limits")}
    first = {kind: node[kind] + sum(_memory_mib(r, kind) for r in once) for kind in ("requests", "limits")}
    assert (
        f"simulated GPU stack itself requests {first['requests']}Mi (limits {first['limits']}Mi) with one GPU "
        f"worker, {node['requests']}Mi ({node['limits']}Mi) more" in " ".join(readme.split())
    )
    # Monitoring on the 3-node cluster: node-exporter on every node, everything else once.
    stack = values["kube-prometheus-stack"]["values"]
    nodes = len(kind_nodes(dev_monitored))
    parts = [
        (stack["prometheus"]["prometheusSpec"]["resources"], 1),
        (stack["grafana"]["resources"], 1),
        (stack["alertmanager"]["alertmanagerSpec"]["resources"], 1),
        (stack["prometheusOperator"]["resources"], 1),
        (stack["kube-state-metrics"]["resources"], 1),
        (stack["prometheus-node-exporter"]["resources"], nodes),
        (values["prometheus-adapter"]["values"]["resources"], 1),
    ]
    requests = sum(_memory_mib(r, "requests") * n for r, n in parts)
    limits = sum(_memory_mib(r, "limits") * n for r, n in parts)
    stated = " ".join(readme.split())
    assert f"Monitoring requests about {round(requests / 50) * 50}Mi of memory on the {nodes}-node" in stated
    assert f"(limits about {round(limits / 1024, 1)}Gi, {limits}Mi:" in stated


def test_the_simulator_values_are_checked_against_the_chart_of_its_published_version() -> None:
    chart = versions.CURRENT.fake_gpu_operator.name
    # The chart in git says 0.0.1 ("replaced during CD"); the vendored values are those of tag v0.2.0.
    with pytest.raises(SchemaError, match=r"the vendored values are of 0\.2\.0"):
        unknown_release_keys(chart, {}, "0.0.1")
    ours = {
        "devicePlugin": {"imag": {"tag": "0.2.0"}},
        "topology": {"nodePools": {"any-pool": {"gpuCount": 1}}, "nodePoolLabelKy": "x"},  # pools: free-form
        "statusExporter": {"kwok": {"resources": {"request": {"memory": "1Mi"}}}},
    }
    assert unknown_release_keys(chart, ours, "0.2.0") == [
        "devicePlugin.imag",
        "topology.nodePoolLabelKy",
        "statusExporter.kwok.resources.request",
    ]

"""The dev stack's guarantees, asserted on what the program actually registers under mocks."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mlplatform.capture import Capture, capture_stack, run_under_mocks, stack_file_config
from mlplatform.cluster.kind import MODEL_STORE_NODE_PATH, kind_config
from mlplatform.cluster.pools import GPU_TAINT, POOL_LABEL
from mlplatform.config import default_model_store_path, parse_config
from mlplatform.versions import KIND_NODE_IMAGE
from stack import build as build_stack

RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def real() -> Capture:
    """dev with real GPUs on kind: the NVIDIA device plugin and DCGM exporter."""
    return capture_stack("dev", {"kindSimulateGpus": False})


def tolerates(tolerations: list[dict[str, Any]], key: str, value: str, effect: str) -> bool:
    for t in tolerations:
        if t.get("key") not in (key, None) or t.get("effect") not in (effect, None, ""):
            continue
        if t.get("operator") == "Exists" or t.get("value") == value:
            return True
    return False


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def kind_nodes(capture: Capture) -> list[dict[str, Any]]:
    env = capture.named("ml-platform-kind").props["environment"]
    return yaml.safe_load(env["KIND_CONFIG"])["nodes"]  # type: ignore[no-any-return]


def join_taints(node: dict[str, Any]) -> list[str]:
    flags = []
    for patch in node.get("kubeadmConfigPatches", []):
        doc = yaml.safe_load(patch)
        assert doc["kind"] == "JoinConfiguration"
        flags += doc["nodeRegistration"]["kubeletExtraArgs"]["register-with-taints"].split(",")
    return flags


def release(capture: Capture, name: str) -> dict[str, Any]:
    return next(r.props for r in capture.of_type(RELEASE) if r.name == name)


def test_kind_cluster_has_a_tainted_gpu_pool_and_pinned_node_image(dev: Capture) -> None:
    nodes = kind_nodes(dev)
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker"]
    assert all(n["image"] == KIND_NODE_IMAGE and "@sha256:" in n["image"] for n in nodes)
    cpu = [n for n in nodes if n.get("labels", {}).get(POOL_LABEL) == "cpu"]
    gpu = [n for n in nodes if n.get("labels", {}).get(POOL_LABEL) == "gpu"]
    assert len(cpu) == 1 and len(gpu) == 1
    assert all(join_taints(n) == ["nvidia.com/gpu=present:NoSchedule"] for n in gpu)
    assert all(join_taints(n) == [] for n in cpu)
    # Every node sees the same model store directory.
    store = default_model_store_path()
    assert all(n["extraMounts"] == [{"hostPath": store, "containerPath": MODEL_STORE_NODE_PATH}] for n in nodes)


def test_kind_config_scales_with_config() -> None:
    config = parse_config({"kindCpuWorkers": "2", "kindGpuWorkers": "3", "kindSimulateGpus": "false"}, stack="t")
    nodes = kind_config(config)["nodes"]
    assert len(nodes) == 6
    gpu = [n for n in nodes if n.get("labels", {}).get(POOL_LABEL) == "gpu"]
    assert len(gpu) == 3 and all(n["labels"]["nvidia.com/gpu.present"] == "true" for n in gpu)


def test_simulated_gpus_come_from_the_simulator_on_gpu_nodes_only(dev: Capture, real: Capture) -> None:
    values = release(dev, "fake-gpu-operator")["values"]
    key = values["topology"]["nodePoolLabelKey"]
    pools = {name for name, pool in values["topology"]["nodePools"].items() if pool is not None}
    by_pool = {n["labels"][POOL_LABEL]: n["labels"] for n in kind_nodes(dev) if n.get("labels")}
    assert by_pool["gpu"][key] in pools  # the simulator has a topology for the GPU workers...
    assert key not in by_pool["cpu"]  # ...and nothing else is a simulated GPU node
    assert values["topology"]["nodePools"]["default"] is None  # the chart's example pool is dropped
    # One source of nvidia.com/gpu: the simulated device plugin, no patch of the node status.
    assert not [r for r in dev.resources if "simulated-gpus" in r.name]
    # Real GPUs: no simulator, and no GPU node in a simulated pool.
    assert not [r for r in real.of_type(RELEASE) if r.name == "fake-gpu-operator"]
    assert all(key not in n.get("labels", {}) for n in kind_nodes(real))


def test_kubeconfig_is_secret_and_every_kubernetes_resource_uses_the_cluster_provider(dev: Capture) -> None:
    provider = dev.named("ml-platform-provider")
    assert provider.inputs["kubeconfig"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    # The CRDs the program takes over from Helm go through a provider adopting existing objects
    # (mlplatform.crds); nothing else does.
    adopting = dev.named("ml-platform-crd-provider")
    assert adopting.props["upsertExistingObjects"] == "true"
    assert adopting.inputs["kubeconfig"] == provider.inputs["kubeconfig"]
    crd = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
    k8s_resources = [r for r in dev.resources if r.custom and r.type.startswith("kubernetes:")]
    assert k8s_resources and any(r.type == crd for r in k8s_resources)
    for r in k8s_resources:
        expected = adopting if r.type == crd else provider
        assert r.provider.startswith(expected.urn + "::"), (
            f"{r.type} {r.name} uses {r.provider or 'the default provider'}"
        )


def test_gpu_daemonsets_tolerate_the_taint_and_select_only_real_gpu_nodes(dev: Capture, real: Capture) -> None:
    simulated_gpu_labels = next(n["labels"] for n in kind_nodes(dev) if n.get("labels", {}).get(POOL_LABEL) == "gpu")
    real_gpu_labels = next(n["labels"] for n in kind_nodes(real) if n.get("labels", {}).get(POOL_LABEL) == "gpu")
    for name in ("nvidia-device-plugin", "dcgm-exporter"):
        values = release(real, name)["values"]
        assert tolerates(values["tolerations"], GPU_TAINT.key, GPU_TAINT.value, GPU_TAINT.effect), name
        assert selects(values["nodeSelector"], real_gpu_labels), name
        # The device plugin would crash on a node without a driver: simulated nodes must not match.
        assert not selects(values["nodeSelector"], simulated_gpu_labels), name
        assert release(real, name)["namespace"] == "gpu-system"
        assert not [r for r in dev.of_type(RELEASE) if r.name == name]  # simulated: not installed at all


@pytest.mark.parametrize(
    ("stack", "namespace", "releases"),
    [("dev", "gpu-operator", ["fake-gpu-operator"]), ("real", "gpu-system", ["dcgm-exporter", "nvidia-device-plugin"])],
)
def test_gpu_namespace_is_privileged_and_holds_nothing_but_the_gpu_stack(
    request: pytest.FixtureRequest, stack: str, namespace: str, releases: list[str]
) -> None:
    capture: Capture = request.getfixturevalue(stack)
    ns = next(m for m in capture.kind("Namespace") if m["metadata"]["name"] == namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert [m for m in capture.kubernetes_objects() if m["metadata"].get("namespace") == namespace] == []
    assert sorted(r.name for r in capture.of_type(RELEASE) if r.props["namespace"] == namespace) == releases


def test_gpu_service_monitors_are_off_without_the_prometheus_operator(dev: Capture, real: Capture) -> None:
    assert release(real, "dcgm-exporter")["values"]["serviceMonitor"] == {"enabled": False}
    assert dev.kind("ServiceMonitor") == []


def test_time_slicing_goes_through_the_device_plugin_config_map(real: Capture) -> None:
    capture = capture_stack("dev", {"gpuTimeSlicingReplicas": 4, "kindSimulateGpus": False})
    values = release(capture, "nvidia-device-plugin")["values"]
    config = yaml.safe_load(values["config"]["map"][values["config"]["default"]])
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert "config" not in release(real, "nvidia-device-plugin")["values"]  # 1 replica: no sharing config
    # Kueue's GPU quota counts the shared slices.
    (queue,) = capture.kind("ClusterQueue")
    (gpu_group,) = [g for g in queue["spec"]["resourceGroups"] if "nvidia.com/gpu" in g["coveredResources"]]
    (gpu_flavor,) = gpu_group["flavors"]
    assert gpu_flavor["name"] == "gpu" and gpu_flavor["resources"] == [{"name": "nvidia.com/gpu", "nominalQuota": 8}]


def test_gpu_flavor_matches_the_gpu_pool_labels_and_taint(dev: Capture) -> None:
    flavors = {m["metadata"]["name"]: m["spec"] for m in dev.kind("ResourceFlavor")}
    gpu_node = next(n for n in kind_nodes(dev) if n.get("labels", {}).get(POOL_LABEL) == "gpu")
    cpu_node = next(n for n in kind_nodes(dev) if n.get("labels", {}).get(POOL_LABEL) == "cpu")
    assert selects(flavors["gpu"]["nodeLabels"], gpu_node["labels"])
    assert not selects(flavors["gpu"]["nodeLabels"], cpu_node["labels"])
    assert tolerates(flavors["gpu"]["tolerations"], GPU_TAINT.key, GPU_TAINT.value, GPU_TAINT.effect)
    assert flavors["gpu"]["nodeTaints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    # cpu and memory are counted wherever a pod runs (a GPU pod's too): no labels to conflict with
    # the GPU flavor's, no toleration that would let a CPU-only pod onto GPU nodes.
    assert flavors["cpu"] == {}


def test_cluster_queue_covers_cpu_and_memory_in_one_group_and_gpus_in_another(dev: Capture) -> None:
    (queue,) = dev.kind("ClusterQueue")
    groups = queue["spec"]["resourceGroups"]
    assert [g["coveredResources"] for g in groups] == [["cpu", "memory"], ["nvidia.com/gpu"]]
    for group in groups:
        # Kueue rejects a flavor whose resources differ in length or order from coveredResources.
        for flavor in group["flavors"]:
            assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]
    quotas = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for g in groups for f in g["flavors"]}
    assert quotas == {"cpu": {"cpu": "8", "memory": "16Gi"}, "gpu": {"nvidia.com/gpu": 2}}
    assert queue["spec"]["namespaceSelector"] == {
        "matchLabels": {"mlplatform.io/ml-namespace": "true", "kubernetes.io/metadata.name": "bookstore-ml"}
    }


def test_kueue_is_pinned_with_all_or_nothing_admission(dev: Capture) -> None:
    kueue = release(dev, "kueue")
    assert (kueue["chart"], kueue["version"], kueue["namespace"]) == (
        "oci://registry.k8s.io/kueue/charts/kueue",
        "0.19.2",
        "kueue-system",
    )
    manager = yaml.safe_load(kueue["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert manager["waitForPodsReady"]["timeout"] == "10m"  # no node to wait for on kind
    assert manager["fairSharing"] == {"preemptionStrategies": ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]}
    assert manager["integrations"]["frameworks"] == ["batch/job", "jobset.x-k8s.io/jobset"]
    assert kueue["values"]["controllerManager"]["manager"]["image"]["tag"] == "v0.19.2"


def test_kueue_objects_wait_for_the_kueue_release(dev: Capture) -> None:
    kueue_release = next(r for r in dev.of_type(RELEASE) if r.name == "kueue")
    by_name = {r.name: r for r in dev.resources if r.type.startswith("kubernetes:kueue.x-k8s.io/")}
    for r in by_name.values():
        assert kueue_release.urn in r.dependencies, r.name
    # A team's queue needs its flavors and the cohort; its LocalQueue needs the queue.
    queue = by_name["kueue-cq-bookstore-ml"]
    for needed in ("kueue-flavor-cpu", "kueue-flavor-gpu", "kueue-cohort"):
        assert by_name[needed].urn in queue.dependencies, needed
    assert queue.urn in by_name["bookstore-ml-local-queue"].dependencies


def test_every_helm_release_is_pinned_and_awaited(dev: Capture) -> None:
    releases = dev.of_type(RELEASE)
    assert sorted(r.name for r in releases) == ["fake-gpu-operator", "jobset", "kueue", "metrics-server"]
    for r in releases:
        props = r.props
        assert props["version"] and props["version"][0].isdigit(), r.name
        assert not props.get("skipAwait"), r.name
    assert release(dev, "metrics-server")["values"]["args"] == ["--kubelet-insecure-tls"]


def test_ml_namespace_is_restricted_with_a_pinned_version(dev: Capture) -> None:
    ns = next(m for m in dev.kind("Namespace") if m["metadata"]["name"] == "bookstore-ml")
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"
    assert labels["mlplatform.io/ml-namespace"] == "true"


def test_team_quota_covers_gpus_and_forbids_external_services(dev: Capture) -> None:
    (quota,) = dev.kind("ResourceQuota")
    hard = quota["spec"]["hard"]
    assert hard["requests.nvidia.com/gpu"] == "2"
    assert hard["requests.cpu"] == "8" and hard["requests.memory"] == "16Gi"
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"


def test_limit_range_gives_requests_to_containers_without_them(dev: Capture) -> None:
    (lr,) = dev.kind("LimitRange")
    (limit,) = lr["spec"]["limits"]
    assert limit["type"] == "Container"
    assert set(limit["defaultRequest"]) == {"cpu", "memory"} and set(limit["default"]) == {"cpu", "memory"}


def test_default_deny_both_ways_and_only_dns_egress(dev: Capture) -> None:
    policies = {
        p["metadata"]["name"]: p["spec"]
        for p in dev.kind("NetworkPolicy")
        if p["metadata"]["namespace"] == "bookstore-ml"
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns"]
    assert dns["policyTypes"] == ["Egress"]
    (rule,) = dns["egress"]
    assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert rule["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_local_queue_and_tokenless_default_service_account(dev: Capture) -> None:
    (queue,) = dev.kind("LocalQueue")
    assert queue["metadata"] == {"name": "default", "namespace": "bookstore-ml"}
    assert queue["spec"] == {"clusterQueue": "bookstore-ml"}  # the team's own ClusterQueue
    sa = next(m for m in dev.kind("ServiceAccount") if m["metadata"]["name"] == "default")
    assert sa["automountServiceAccountToken"] is False


def test_each_team_gets_its_own_namespace_and_queue() -> None:
    capture = capture_stack("dev", {"teams": ["bookstore-ml", "search-ml"]})
    assert sorted(q["metadata"]["namespace"] for q in capture.kind("LocalQueue")) == ["bookstore-ml", "search-ml"]
    assert sorted(q["metadata"]["namespace"] for q in capture.kind("ResourceQuota")) == ["bookstore-ml", "search-ml"]


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # Pulumi's wire sentinel for an unknown value


def test_preview_needs_no_cluster(dev: Capture) -> None:
    # In a preview `kind create cluster` does not run: the kubeconfig is unknown, and the program
    # must still register every resource (pulumi-kubernetes previews against an unknown provider).
    config = stack_file_config("dev")
    preview = run_under_mocks(lambda: build_stack("dev"), stack="dev", config=config, preview=True)
    kubeconfig = preview.named("ml-platform-provider").inputs["kubeconfig"]
    assert UNKNOWN in str(kubeconfig)
    assert sorted(r.name for r in preview.resources) == sorted(r.name for r in dev.resources)


def test_jobset_is_installed_pinned_restricted_and_before_kueue(dev: Capture) -> None:
    (jobset,) = [r for r in dev.of_type("kubernetes:helm.sh/v3:Release") if r.props["chart"].endswith("/jobset")]
    assert jobset.props["chart"] == "oci://registry.k8s.io/jobset/charts/jobset" and jobset.props["version"] == "0.12.0"
    assert jobset.props["values"]["image"] == {
        "repository": "registry.k8s.io/jobset/jobset", "tag": "v0.12.0", "pullPolicy": "IfNotPresent"
    }  # fmt: skip
    (namespace,) = [m for m in dev.kind("Namespace") if m["metadata"]["name"] == "jobset-system"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Kueue manages JobSets only if their API exists when it starts.
    (kueue,) = [r for r in dev.of_type("kubernetes:helm.sh/v3:Release") if r.props["chart"].endswith("/kueue")]
    assert jobset.urn in kueue.dependencies

"""Stack configuration, parsed once into frozen dataclasses and validated before any resource.

Every key lives in the project namespace (``ml-platform:<key>``) and is declared in ``KEYS``
with its type, default and meaning. ``Pulumi.yaml`` declares the same keys for the CLI; a test
keeps the two identical, and because Pulumi mocks never read ``Pulumi.yaml`` the defaults here
are the ones that apply. All problems are reported at once, each naming the key, the value
and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .eks_versions import EKS_RELEASES
from .quantity import QuantityError, parse_quantity
from .sharing import COHORT, Pools, TeamConfig, TeamEntry, parse_team_entry, quantity_text, resolve_shares
from .versions import COMPONENT_VERSIONS, CURRENT, ComponentVersions

__all__ = [
    "KEYS",
    "NAMESPACE",
    "ClusterProvider",
    "ConfigError",
    "EksConfig",
    "KindConfig",
    "PlatformConfig",
    "RecommenderConfig",
    "TeamConfig",
    "default_model_store_path",
    "load_config",
    "parse_config",
]

NAMESPACE = "ml-platform"

# Namespaces the platform itself owns: a team with one of these names would collide with them.
RESERVED_NAMESPACES = frozenset(
    {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "kueue-system",
        "gpu-system",
        "gpu-operator",
        "monitoring",
        "local-path-storage",
    }
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GPU_MODEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class ConfigError(ValueError):
    """Stack configuration that cannot be deployed; ``problems`` lists each bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


class ClusterProvider(StrEnum):
    KIND = "kind"
    EKS = "eks"


@dataclass(frozen=True)
class Key:
    """One configuration key: its Pulumi.yaml type, default and meaning."""

    type: str  # "string" | "integer" | "boolean" | "array"
    default: Any
    description: str


KEYS: dict[str, Key] = {
    "clusterProvider": Key("string", "kind", "Where the cluster runs: kind (local) or eks (AWS)."),
    "clusterName": Key("string", "ml-platform", "Name of the kind or EKS cluster."),
    "kubernetesVersion": Key(
        "string",
        "1.34",
        "eks: Kubernetes minor of the control plane, add-ons and nodes; upgrade one minor per pulumi up (README, "
        "Upgrading).",
    ),
    "kindCpuWorkers": Key("integer", 1, "kind: CPU worker nodes."),
    "kindGpuWorkers": Key("integer", 1, "kind: GPU-pool worker nodes (tainted nvidia.com/gpu)."),
    "kindGpusPerWorker": Key("integer", 2, "kind: GPUs per GPU worker (time-slicing multiplies what it advertises)."),
    "kindSimulateGpus": Key(
        "boolean",
        True,
        "kind: SIMULATED GPUs (fake-gpu-operator: a device plugin, a DCGM-compatible exporter and nvidia-smi; "
        "no real GPU); false = real GPUs with the NVIDIA device plugin and DCGM exporter.",
    ),
    "kindGpuModel": Key(
        "string",
        "NVIDIA-A10G",
        "kind, simulated GPUs: the model they report (DCGM modelName, node label nvidia.com/gpu.product); "
        "default the GPU of the eks stack's g5.xlarge.",
    ),
    "kindGpuMemoryMiB": Key(
        "integer", 23028, "kind, simulated GPUs: memory of each GPU in MiB (DCGM_FI_DEV_FB_USED + FB_FREE)."
    ),
    "kindModelStorePath": Key(
        "string",
        "",
        "kind: host directory shared by all nodes as the model store; empty = "
        "$XDG_DATA_HOME/ml-platform/models (~/.local/share/ml-platform/models), which survives reboots.",
    ),
    "gpuTimeSlicingReplicas": Key(
        "integer", 1, "Pods sharing one physical GPU via device-plugin time-slicing (1 = off)."
    ),
    "teams": Key(
        "array",
        ["bookstore-ml"],
        "ML namespaces, one per team, each with its own ClusterQueue in one cohort: '<name>' or '<name> "
        "gpus=1 cpu=4 memory=8Gi gpuBorrowingLimit=1 gpuLendingLimit=0 weight=2' (README, Teams).",
    ),
    "teamCpuQuota": Key(
        "string", "8", "Per-team ResourceQuota for CPU requests (raised to what the team's ClusterQueue may admit)."
    ),
    "teamMemoryQuota": Key(
        "string",
        "16Gi",
        "Per-team ResourceQuota for memory requests (raised to what the team's ClusterQueue may admit).",
    ),
    "teamGpuQuota": Key(
        "integer", 2, "Per-team ResourceQuota for nvidia.com/gpu (raised to what the team's ClusterQueue may admit)."
    ),
    "queueCpu": Key("string", "8", "CPU Kueue admits across all teams: their guarantees plus a shared remainder."),
    "queueMemory": Key(
        "string", "16Gi", "Memory Kueue admits across all teams: their guarantees plus a shared remainder."
    ),
    "monitoring": Key("boolean", False, "Install kube-prometheus-stack and wire scraping."),
    # -- GPU idle alerts (monitoring on): one block, read by mlplatform/monitoring/gpu_usage.py --
    "gpuIdleAlertPercent": Key(
        "integer",
        10,
        "Monitoring: a GPU (GpuAllocatedButIdle) or a team's admitted GPUs (TeamGpusIdle) count as idle below "
        "this utilisation, in percent (1-99).",
    ),
    "gpuIdleAlertMinutes": Key(
        "integer", 30, "Monitoring: minutes GPUs stay idle before GpuAllocatedButIdle and TeamGpusIdle fire (5-1440)."
    ),
    "componentVersions": Key(
        "string",
        "current",
        "Pinned chart and image versions to deploy: current, or previous (the release before, to rehearse an "
        "upgrade: up at previous, then at current; docs/upgrades.md).",
    ),
    "recommenderEnabled": Key("boolean", True, "Deploy the Bookstore recommender."),
    "recommenderImage": Key(
        "string", "", "Prebuilt recommender image (tag or digest); empty = build recommender/Dockerfile."
    ),
    "recommenderMinReplicas": Key("integer", 2, "Serving HPA minimum replicas (2 keeps serving through a node drain)."),
    "recommenderMaxReplicas": Key("integer", 4, "Serving HPA maximum replicas."),
    "recommenderTrainingCpu": Key("string", "1", "CPU request (= limit) of a training pod."),
    "recommenderTrainingMemory": Key("string", "2Gi", "Memory request (= limit) of a training pod."),
    "recommenderTrainingGpus": Key("integer", 0, "nvidia.com/gpu per training pod (0 = CPU flavor)."),
    "recommenderEaseMemory": Key(
        "string",
        "1Gi",
        "Memory a training pod may give EASE's dense books x books matrix (16 bytes x books squared; 1Gi: up to "
        "8,192 books); larger catalogues skip EASE. At most half of recommenderTrainingMemory; 0 = no EASE.",
    ),
    "recommenderTrainingWorkers": Key(
        "integer", 1, "Training workers: 1 = one batch Job; more = a JobSet of sharded workers admitted as one."
    ),
    "recommenderRetrainSchedule": Key("string", "0 3 * * *", "Cron schedule of the retraining job."),
    "eksVpcCidr": Key("string", "10.0.0.0/16", "eks: VPC CIDR block."),
    "eksAvailabilityZones": Key("integer", 2, "eks: availability zones to spread subnets over."),
    "eksCpuInstanceTypes": Key("array", ["m6i.xlarge"], "eks: CPU node group instance types."),
    "eksCpuNodesMin": Key("integer", 2, "eks: CPU node group minimum size."),
    "eksCpuNodesDesired": Key("integer", 2, "eks: CPU node group desired size."),
    "eksCpuNodesMax": Key("integer", 4, "eks: CPU node group maximum size."),
    "eksGpuInstanceTypes": Key("array", ["g5.xlarge"], "eks: GPU node group instance types."),
    "eksGpuNodesMin": Key("integer", 0, "eks: GPU node group minimum size (0 = scale from zero)."),
    "eksGpuNodesDesired": Key(
        "integer",
        0,
        "eks: GPU node group size at creation; cluster-autoscaler owns it afterwards (0: no GPU node until a GPU "
        "job is admitted).",
    ),
    "eksGpuNodesMax": Key("integer", 2, "eks: GPU node group maximum size."),
    "eksGpusPerNode": Key("integer", 1, "eks: GPUs per GPU instance (g5.xlarge has 1)."),
    "eksGpuIdleMinutes": Key(
        "integer", 5, "eks: minutes a GPU node runs no GPU pod before cluster-autoscaler removes it (GPUs cost money)."
    ),
    "eksPublicAccessCidrs": Key(
        "array", [], "eks: CIDRs allowed to reach the public API endpoint (your address, e.g. 203.0.113.7/32)."
    ),
    "eksPrivateEndpointOnly": Key(
        "boolean", False, "eks: no public API endpoint; pulumi runs inside the VPC (VPN, bastion, in-VPC CI)."
    ),
}


def default_model_store_path(env: Mapping[str, str] | None = None) -> str:
    """The per-user data directory for kind's model store (XDG base directory spec)."""
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "ml-platform", "models")


@dataclass(frozen=True)
class KindConfig:
    cpu_workers: int = 1
    gpu_workers: int = 1
    gpus_per_worker: int = 2  # GPUs on each GPU worker (time-slicing multiplies what it advertises)
    simulate_gpus: bool = True  # fake-gpu-operator instead of the NVIDIA device plugin and DCGM
    gpu_model: str = "NVIDIA-A10G"  # simulated GPUs: the model they report (the eks default's g5.xlarge)
    gpu_memory_mib: int = 23028  # simulated GPUs: memory of each, as an A10G reports it
    # Not /tmp: cleared at reboot, and Docker would then recreate the mount root-owned and empty.
    model_store_path: str = field(default_factory=lambda: default_model_store_path())


@dataclass(frozen=True)
class EksConfig:
    vpc_cidr: str = "10.0.0.0/16"
    availability_zones: int = 2
    cpu_instance_types: tuple[str, ...] = ("m6i.xlarge",)
    cpu_nodes_min: int = 2
    cpu_nodes_desired: int = 2
    cpu_nodes_max: int = 4
    gpu_instance_types: tuple[str, ...] = ("g5.xlarge",)
    gpu_nodes_min: int = 0
    gpu_nodes_desired: int = 0  # at creation only: cluster-autoscaler owns the size afterwards
    gpu_nodes_max: int = 2
    gpus_per_node: int = 1
    gpu_idle_minutes: int = 5  # an idle GPU node is removed after this long
    public_access_cidrs: tuple[str, ...] = ()
    private_endpoint_only: bool = False  # pulumi itself runs inside the VPC


@dataclass(frozen=True)
class RecommenderConfig:
    enabled: bool = True
    image: str = ""  # empty: built from recommender/Dockerfile and loaded into kind
    min_replicas: int = 2  # with the PDB, one replica always serves during a drain or rollout
    max_replicas: int = 4
    training_cpu: str = "1"
    training_memory: str = "2Gi"
    training_gpus: int = 0  # per worker
    training_workers: int = 1  # > 1: a JobSet (prepare, N workers, finish), gang-admitted by Kueue
    # EASE's budget in a training pod: it is a selection candidate only if 16·books² bytes fit.
    ease_memory: str = "1Gi"

    @property
    def ease_memory_mib(self) -> int:
        """`ease_memory` in whole MiB, as the recommender's --ease-memory-mib takes it."""
        return int(parse_quantity(self.ease_memory) // 2**20)

    @property
    def training_pods(self) -> int:
        """Pods Kueue reserves quota for at admission: all of a JobSet's steps at once."""
        return self.training_workers + 2 if self.training_workers > 1 else 1

    retrain_schedule: str = "0 3 * * *"
    team: str = "bookstore-ml"  # the first configured team hosts the recommender


@dataclass(frozen=True)
class PlatformConfig:
    """The whole validated stack configuration."""

    stack: str
    provider: ClusterProvider = ClusterProvider.KIND
    cluster_name: str = "ml-platform"
    kubernetes_version: str = "1.34"
    kind: KindConfig = field(default_factory=KindConfig)
    eks: EksConfig = field(default_factory=EksConfig)
    gpu_time_slicing_replicas: int = 1
    teams: tuple[TeamConfig, ...] = (TeamConfig("bookstore-ml"),)
    queue_cpu: str = "8"
    queue_memory: str = "16Gi"
    monitoring: bool = False
    # GPU idle alerts: below this utilisation (percent) for this long (minutes)
    gpu_idle_alert_percent: int = 10
    gpu_idle_alert_minutes: int = 30
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)
    versions: ComponentVersions = CURRENT  # every chart and image pin (ml-platform:componentVersions)

    @property
    def gpu_nodes(self) -> int:
        """GPU nodes the cluster starts with (EKS: the desired size)."""
        if self.provider is ClusterProvider.KIND:
            return self.kind.gpu_workers
        return self.eks.gpu_nodes_desired

    @property
    def gpus_per_node(self) -> int:
        if self.provider is ClusterProvider.KIND:
            return self.kind.gpus_per_worker
        return self.eks.gpus_per_node

    @property
    def schedulable_gpus_per_node(self) -> int:
        """nvidia.com/gpu one GPU node advertises: its GPUs, times the time-slicing replicas (the device
        plugin slices real GPUs; simulated capacity is multiplied the same way)."""
        return self.gpus_per_node * self.gpu_time_slicing_replicas

    @property
    def schedulable_gpus(self) -> int:
        """nvidia.com/gpu the GPU pool can hand out at its largest: on EKS what cluster-autoscaler can
        reach (eksGpuNodesMax nodes), on kind the GPU workers."""
        nodes = self.kind.gpu_workers if self.provider is ClusterProvider.KIND else self.eks.gpu_nodes_max
        return nodes * self.schedulable_gpus_per_node

    @property
    def pools(self) -> Pools:
        """What Kueue may admit across all teams: split into the teams' guarantees and a shared remainder."""
        return Pools(parse_quantity(self.queue_cpu), parse_quantity(self.queue_memory), Decimal(self.schedulable_gpus))


class _Reader:
    """Turns raw config strings into typed values, collecting every problem instead of stopping."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def _fail(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key} = {value!r} is not allowed: {allowed}")

    def get(self, key: str) -> Any:
        spec = KEYS[key]
        if key not in self.raw or self.raw[key] is None:
            return spec.default
        value = self.raw[key]
        if spec.type == "string":
            return str(value)
        if spec.type == "integer":
            if isinstance(value, bool):
                self._fail(key, value, "an integer")
                return spec.default
            try:
                return int(str(value).strip())
            except ValueError:
                self._fail(key, value, "an integer")
                return spec.default
        if spec.type == "boolean":
            text = str(value).strip().lower()
            if text in ("true", "false"):
                return text == "true"
            self._fail(key, value, "true or false")
            return spec.default
        # array: the CLI hands arrays to the program as JSON text
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            self._fail(key, value, "a list of strings, e.g. ['a', 'b']")
            return spec.default
        return parsed

    def check(self, ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            self._fail(key, value, allowed)

    def at_least(self, key: str, value: int, minimum: int) -> None:
        self.check(value >= minimum, key, value, f"an integer >= {minimum}")

    def quantity(self, key: str, value: str, *, positive: bool = True) -> Any:
        """``value`` parsed, or None after recording why not; ``positive``: 0 and less are refused too."""
        try:
            parsed = parse_quantity(value)
        except QuantityError as err:
            self._fail(key, value, str(err))
            return None
        if positive:
            self.check(parsed > 0, key, value, "a positive Kubernetes quantity")
        return parsed


def _unknown_keys(raw: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in sorted(raw):
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {NAMESPACE}:{close[0]}?" if close else ""
            problems.append(f"{NAMESPACE}:{key} is not a known key{hint} (known keys are declared in Pulumi.yaml)")
    return problems


def _valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        return fields[0] in {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
    return len(fields) == 5 and all(re.fullmatch(r"[0-9A-Za-z*/,\-?]+", f) for f in fields)


def _valid_image(ref: str) -> bool:
    """A pinned image reference: a digest, or a tag that is not 'latest'."""
    if "@sha256:" in ref:
        return re.fullmatch(r".+@sha256:[0-9a-f]{64}", ref) is not None
    last = ref.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def parse_config(raw: Mapping[str, Any], *, stack: str) -> PlatformConfig:
    """Validate raw ``ml-platform:*`` values (keys without the namespace) into a PlatformConfig.

    Raises ConfigError listing every problem found.
    """
    r = _Reader(raw)
    r.problems.extend(_unknown_keys(raw))

    provider_text = r.get("clusterProvider")
    try:
        provider = ClusterProvider(provider_text)
    except ValueError:
        r._fail("clusterProvider", provider_text, "one of: kind, eks")
        provider = ClusterProvider.KIND

    cluster_name = r.get("clusterName")
    r.check(
        bool(_DNS_LABEL.match(cluster_name)) and len(cluster_name) <= 40,
        "clusterName",
        cluster_name,
        "lowercase letters, digits and '-', at most 40 characters",
    )
    k8s_version = r.get("kubernetesVersion")
    r.check(
        bool(re.fullmatch(r"1\.[0-9]{2}", k8s_version)),
        "kubernetesVersion",
        k8s_version,
        "a minor version such as '1.34'",
    )

    kind = KindConfig(
        cpu_workers=r.get("kindCpuWorkers"),
        gpu_workers=r.get("kindGpuWorkers"),
        gpus_per_worker=r.get("kindGpusPerWorker"),
        simulate_gpus=r.get("kindSimulateGpus"),
        gpu_model=r.get("kindGpuModel"),
        gpu_memory_mib=r.get("kindGpuMemoryMiB"),
        model_store_path=r.get("kindModelStorePath") or default_model_store_path(),
    )
    # The control plane is tainted and GPU workers repel untolerating pods: platform services
    # (Kueue, metrics-server, serving) need at least one CPU worker to run anywhere.
    r.at_least("kindCpuWorkers", kind.cpu_workers, 1 if provider is ClusterProvider.KIND else 0)
    r.at_least("kindGpuWorkers", kind.gpu_workers, 0)
    r.at_least("kindGpusPerWorker", kind.gpus_per_worker, 1)
    # The model becomes a node label value and a Prometheus label: a label-safe name, as NVIDIA's own
    # feature discovery writes it (spaces as '-').
    r.check(
        bool(_GPU_MODEL.match(kind.gpu_model)),
        "kindGpuModel",
        kind.gpu_model,
        "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters "
        "(e.g. NVIDIA-A10G, Tesla-T4)",
    )
    r.check(
        1024 <= kind.gpu_memory_mib <= 1048576,
        "kindGpuMemoryMiB",
        kind.gpu_memory_mib,
        "MiB of one GPU, from 1024 to 1048576 (e.g. 23028 for an A10G, 81559 for an 80 GB H100)",
    )
    r.check(kind.model_store_path.startswith("/"), "kindModelStorePath", kind.model_store_path, "an absolute host path")

    eks = _parse_eks(r)
    if provider is ClusterProvider.EKS:
        _check_eks_endpoint(r, eks)
        r.check(
            k8s_version in EKS_RELEASES,
            "kubernetesVersion",
            k8s_version,
            f"a minor pinned in mlplatform.eks_versions.EKS_RELEASES ({', '.join(EKS_RELEASES)}); to add one, pin its "
            f"add-ons (aws eks describe-addon-versions --kubernetes-version {k8s_version}), node AMI release and "
            "cluster-autoscaler there (docs/eks.md, Upgrading EKS)",
        )

    slicing = r.get("gpuTimeSlicingReplicas")
    r.check(1 <= slicing <= 32, "gpuTimeSlicingReplicas", slicing, "an integer from 1 (off) to 32")

    queue_cpu, queue_memory = r.get("queueCpu"), r.get("queueMemory")
    queue_cpu_q = r.quantity("queueCpu", queue_cpu)
    queue_memory_q = r.quantity("queueMemory", queue_memory)
    # The GPU pool follows from the cluster's shape: parse that first, then split the pools.
    shape = PlatformConfig(stack=stack, provider=provider, kind=kind, eks=eks, gpu_time_slicing_replicas=slicing)
    pools = Pools(
        queue_cpu_q or Decimal(0),
        queue_memory_q or Decimal(0),
        Decimal(shape.schedulable_gpus),
        sources=_pool_sources(shape, queue_cpu, queue_memory),
    )
    team_cpu, team_memory, team_gpus = r.get("teamCpuQuota"), r.get("teamMemoryQuota"), r.get("teamGpuQuota")
    r.at_least("teamGpuQuota", team_gpus, 0)
    floor = {
        "cpu": r.quantity("teamCpuQuota", team_cpu) or Decimal(0),
        "memory": r.quantity("teamMemoryQuota", team_memory) or Decimal(0),
        "gpus": Decimal(max(team_gpus, 0)),
    }
    teams = _parse_teams(r, pools, floor)
    team_names = [t.name for t in teams]

    rec = RecommenderConfig(
        enabled=r.get("recommenderEnabled"),
        image=r.get("recommenderImage"),
        min_replicas=r.get("recommenderMinReplicas"),
        max_replicas=r.get("recommenderMaxReplicas"),
        training_cpu=r.get("recommenderTrainingCpu"),
        training_memory=r.get("recommenderTrainingMemory"),
        training_gpus=r.get("recommenderTrainingGpus"),
        training_workers=r.get("recommenderTrainingWorkers"),
        ease_memory=r.get("recommenderEaseMemory"),
        retrain_schedule=r.get("recommenderRetrainSchedule"),
        team=team_names[0] if team_names else "bookstore-ml",
    )
    _check_recommender(r, rec, next((t for t in teams if t.name == rec.team), None))

    config = PlatformConfig(
        stack=stack,
        provider=provider,
        cluster_name=cluster_name,
        kubernetes_version=k8s_version,
        kind=kind,
        eks=eks,
        gpu_time_slicing_replicas=slicing,
        teams=teams,
        queue_cpu=queue_cpu,
        queue_memory=queue_memory,
        monitoring=r.get("monitoring"),
        gpu_idle_alert_percent=r.get("gpuIdleAlertPercent"),
        gpu_idle_alert_minutes=r.get("gpuIdleAlertMinutes"),
        recommender=rec,
        versions=_component_versions(r),
    )
    _check_gpu_idle_alerts(r, config)
    if rec.enabled and rec.training_gpus > 0 and config.schedulable_gpus < rec.training_gpus:
        r._fail(
            "recommenderTrainingGpus",
            rec.training_gpus,
            f"at most the {config.schedulable_gpus} GPU(s) the GPU pool can offer; add GPU nodes or lower it",
        )
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _check_gpu_idle_alerts(r: _Reader, config: PlatformConfig) -> None:
    # 0 would never fire and 100 would fire on every GPU; under 5 minutes a data loader's pause pages someone.
    percent, minutes = config.gpu_idle_alert_percent, config.gpu_idle_alert_minutes
    r.check(1 <= percent <= 99, "gpuIdleAlertPercent", percent, "a utilisation from 1 to 99 (percent)")
    r.check(5 <= minutes <= 1440, "gpuIdleAlertMinutes", minutes, "5 to 1440 minutes (a day)")


def _component_versions(r: _Reader) -> ComponentVersions:
    name = r.get("componentVersions")
    r.check(name in COMPONENT_VERSIONS, "componentVersions", name, f"one of: {', '.join(COMPONENT_VERSIONS)}")
    return COMPONENT_VERSIONS.get(name, CURRENT)


def _parse_eks(r: _Reader) -> EksConfig:
    eks = EksConfig(
        vpc_cidr=r.get("eksVpcCidr"),
        availability_zones=r.get("eksAvailabilityZones"),
        cpu_instance_types=tuple(r.get("eksCpuInstanceTypes")),
        cpu_nodes_min=r.get("eksCpuNodesMin"),
        cpu_nodes_desired=r.get("eksCpuNodesDesired"),
        cpu_nodes_max=r.get("eksCpuNodesMax"),
        gpu_instance_types=tuple(r.get("eksGpuInstanceTypes")),
        gpu_nodes_min=r.get("eksGpuNodesMin"),
        gpu_nodes_desired=r.get("eksGpuNodesDesired"),
        gpu_nodes_max=r.get("eksGpuNodesMax"),
        gpus_per_node=r.get("eksGpusPerNode"),
        gpu_idle_minutes=r.get("eksGpuIdleMinutes"),
        public_access_cidrs=tuple(r.get("eksPublicAccessCidrs")),
        private_endpoint_only=r.get("eksPrivateEndpointOnly"),
    )
    try:
        net = ipaddress.ip_network(eks.vpc_cidr)
        r.check(
            net.version == 4 and 16 <= net.prefixlen <= 20, "eksVpcCidr", eks.vpc_cidr, "an IPv4 CIDR from /16 to /20"
        )
    except ValueError:
        r._fail("eksVpcCidr", eks.vpc_cidr, "an IPv4 CIDR such as 10.0.0.0/16")
    r.check(
        2 <= eks.availability_zones <= 6,
        "eksAvailabilityZones",
        eks.availability_zones,
        "2 to 6 (EKS needs subnets in two zones)",
    )
    for pool, types in (("Cpu", eks.cpu_instance_types), ("Gpu", eks.gpu_instance_types)):
        r.check(len(types) > 0, f"eks{pool}InstanceTypes", list(types), "at least one instance type")
    for pool, lo, want, hi in (
        ("Cpu", eks.cpu_nodes_min, eks.cpu_nodes_desired, eks.cpu_nodes_max),
        ("Gpu", eks.gpu_nodes_min, eks.gpu_nodes_desired, eks.gpu_nodes_max),
    ):
        r.at_least(f"eks{pool}NodesMin", lo, 0)
        r.check(
            lo <= want <= hi,
            f"eks{pool}NodesDesired",
            want,
            f"between eks{pool}NodesMin ({lo}) and eks{pool}NodesMax ({hi})",
        )
        r.at_least(f"eks{pool}NodesMax", hi, 1)
    r.at_least("eksGpusPerNode", eks.gpus_per_node, 1)
    r.check(1 <= eks.gpu_idle_minutes <= 1440, "eksGpuIdleMinutes", eks.gpu_idle_minutes, "1 to 1440 minutes (a day)")
    for cidr in eks.public_access_cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            r._fail("eksPublicAccessCidrs", cidr, "CIDR blocks such as 203.0.113.0/24")
    return eks


def _check_eks_endpoint(r: _Reader, eks: EksConfig) -> None:
    """Pulumi installs the platform through the Kubernetes API: it must be able to reach it."""
    if eks.private_endpoint_only and eks.public_access_cidrs:
        r._fail(
            "eksPublicAccessCidrs",
            list(eks.public_access_cidrs),
            "empty when ml-platform:eksPrivateEndpointOnly is true (a private-only endpoint has no public CIDRs)",
        )
    elif not eks.private_endpoint_only and not eks.public_access_cidrs:
        r._fail(
            "eksPublicAccessCidrs",
            [],
            "your address, so pulumi can reach the API: pulumi config set --path "
            "'ml-platform:eksPublicAccessCidrs[0]' <your-ip>/32; or set ml-platform:eksPrivateEndpointOnly "
            "true when pulumi runs inside the VPC (VPN, bastion, in-VPC CI)",
        )


def _pool_sources(shape: PlatformConfig, queue_cpu: str, queue_memory: str) -> dict[str, str]:
    """Where each pool's size comes from, in config keys (for error messages)."""
    slicing = f"gpuTimeSlicingReplicas {shape.gpu_time_slicing_replicas}"
    if shape.provider is ClusterProvider.KIND:
        gpus = f"kindGpuWorkers {shape.kind.gpu_workers} x kindGpusPerWorker {shape.kind.gpus_per_worker} x {slicing}"
    else:
        gpus = f"eksGpuNodesMax {shape.eks.gpu_nodes_max} x eksGpusPerNode {shape.eks.gpus_per_node} x {slicing}"
    return {"cpu": f"ml-platform:queueCpu {queue_cpu!r}", "memory": f"ml-platform:queueMemory {queue_memory!r}",
            "gpus": gpus}  # fmt: skip


def _parse_teams(r: _Reader, pools: Pools, namespace_floor: Mapping[str, Decimal]) -> tuple[TeamConfig, ...]:
    """Each ``ml-platform:teams`` entry, its settings checked and its share of every pool resolved."""
    raw = r.get("teams")
    r.check(len(raw) > 0, "teams", raw, "at least one team name")
    entries: list[TeamEntry] = []
    for i, text in enumerate(raw):
        entry, problems = parse_team_entry(text)
        for problem in problems:
            r._fail(f"teams[{i}]", text, problem)
        entries.append(entry)
    names = [e.name for e in entries]
    r.check(len(set(names)) == len(names), "teams", names, "unique names")
    for name in names:
        r.check(
            bool(_DNS_LABEL.match(name)) and len(name) <= 63,
            "teams",
            name,
            "DNS labels: lowercase letters, digits and '-', at most 63 characters",
        )
        r.check(
            name not in RESERVED_NAMESPACES,
            "teams",
            name,
            f"a name not reserved by the platform ({', '.join(sorted(RESERVED_NAMESPACES))})",
        )
        r.check(name != COHORT, "teams", name, f"a name other than the teams' Kueue cohort ({COHORT})")
    teams, share_problems = resolve_shares(entries, pools, namespace_floor)
    for key, value, allowed in share_problems:
        r._fail(key, value, allowed)
    return teams


def _check_ease_memory(r: _Reader, ease: str, pod_memory: Decimal | None) -> None:
    """EASE's matrix must leave half the pod for the data and the item-kNN fits (0 disables it)."""
    parsed = r.quantity("recommenderEaseMemory", ease, positive=False)
    if parsed is not None and pod_memory is not None:
        r.check(0 <= parsed <= pod_memory / 2, "recommenderEaseMemory", ease,
                f"a quantity from 0 to half of recommenderTrainingMemory ({quantity_text('memory', pod_memory / 2)});"
                " raise recommenderTrainingMemory for a larger EASE budget")  # fmt: skip


def _check_recommender(r: _Reader, rec: RecommenderConfig, team: TeamConfig | None) -> None:
    if rec.image:
        r.check(
            _valid_image(rec.image),
            "recommenderImage",
            rec.image,
            "a pinned reference: name:tag (not latest) or name@sha256:<digest>",
        )
    r.at_least("recommenderMinReplicas", rec.min_replicas, 1)
    r.check(
        rec.max_replicas >= rec.min_replicas,
        "recommenderMaxReplicas",
        rec.max_replicas,
        f">= recommenderMinReplicas ({rec.min_replicas})",
    )
    r.check(
        _valid_cron(rec.retrain_schedule),
        "recommenderRetrainSchedule",
        rec.retrain_schedule,
        "a 5-field cron expression such as '0 3 * * *'",
    )
    r.at_least("recommenderTrainingGpus", rec.training_gpus, 0)
    r.at_least("recommenderTrainingWorkers", rec.training_workers, 1)
    cpu = r.quantity("recommenderTrainingCpu", rec.training_cpu)
    memory = r.quantity("recommenderTrainingMemory", rec.training_memory)
    _check_ease_memory(r, rec.ease_memory, memory)
    # Kueue reserves every pod of a run at admission (a JobSet's prepare and finish steps too).
    pods = rec.training_pods
    cpu = cpu * pods if cpu is not None else None
    memory = memory * pods if memory is not None else None
    if team is None:  # the team entry itself is broken, and reported
        return
    # A run larger than the most its team can ever hold (its guarantee plus all it may borrow) is
    # never admitted: say so now, not as a Workload pending forever.
    fits: list[tuple[str, Any, str]] = [
        ("recommenderTrainingCpu", cpu, "cpu"),
        ("recommenderTrainingMemory", memory, "memory"),
        ("recommenderTrainingGpus", Decimal(rec.training_gpus * rec.training_workers), "gpus"),
    ]
    for key, need, resource in fits:
        share = team.share(resource)
        if need is not None and need > share.most:
            r._fail(
                key,
                r.raw.get(key, KEYS[key].default),
                f"at most {quantity_text(resource, share.most)} {resource} for all {pods} pods of a run: the most team "
                f"{team.name} can ever get (guaranteed {quantity_text(resource, share.guaranteed)} plus "
                f"{quantity_text(resource, share.most - share.guaranteed)} it may borrow); raise the team's "
                f"{resource} in ml-platform:teams, grow the pool, or ask less",
            )


ConfigSource = Callable[[], Mapping[str, Any]]


def stack_config_values() -> dict[str, Any]:
    """The ``ml-platform:*`` values the engine (or the mocks) handed to this program."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix)}


def load_config(stack: str, source: ConfigSource = stack_config_values) -> PlatformConfig:
    """Read and validate this stack's configuration (once, at program start)."""
    return parse_config(source(), stack=stack)

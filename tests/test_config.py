"""Configuration: defaults, the Pulumi.yaml contract, and a clear error for each kind of bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlplatform.capture import run_under_mocks, stack_file_config
from mlplatform.config import KEYS, NAMESPACE, ClusterProvider, ConfigError, PlatformConfig, parse_config
from stack import build as build_stack
from tests.stacks import EKS_FROM_HERE

ROOT = Path(__file__).resolve().parent.parent


def errors_for(**raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, stack="t")
    return info.value.problems


def test_defaults_describe_the_dev_platform() -> None:
    config = parse_config({}, stack="dev")
    assert config == PlatformConfig(stack="dev")
    assert config.provider is ClusterProvider.KIND
    assert [t.name for t in config.teams] == ["bookstore-ml"]
    assert config.schedulable_gpus == 2  # one GPU worker x two simulated GPUs


def test_pulumi_yaml_declares_exactly_the_parsed_keys_with_the_same_defaults() -> None:
    # Mocks never read Pulumi.yaml, so the code's defaults are the ones tests see: they must match the CLI's.
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert set(declared) == set(KEYS)
    for key, spec in KEYS.items():
        assert declared[key]["type"] == spec.type, key
        assert declared[key]["default"] == spec.default, key


def test_project_uses_pip_virtualenv_and_a_local_backend() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == NAMESPACE
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert project["backend"]["url"].startswith("file://")


def stack_file_values(stack: str) -> dict[str, str]:
    """The stack file's ml-platform keys, as the CLI hands them to the program."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :]: v for k, v in stack_file_config(stack).items() if k.startswith(prefix)}


def test_every_stack_file_parses() -> None:
    assert parse_config(stack_file_values("dev"), stack="dev").provider is ClusterProvider.KIND
    # eks: each user adds their own address first (README); with one, the file is valid.
    eks = {**stack_file_values("eks"), "eksPublicAccessCidrs": json.dumps(EKS_FROM_HERE["eksPublicAccessCidrs"])}
    assert parse_config(eks, stack="eks").provider is ClusterProvider.EKS


def test_eks_without_a_reachable_api_endpoint_is_refused_before_anything_is_created() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(stack_file_values("eks"), stack="eks")
    (problem,) = info.value.problems
    assert problem.startswith("ml-platform:eksPublicAccessCidrs = [] is not allowed: your address")
    assert "pulumi config set --path 'ml-platform:eksPublicAccessCidrs[0]' <your-ip>/32" in problem
    assert "eksPrivateEndpointOnly" in problem
    private = parse_config({**stack_file_values("eks"), "eksPrivateEndpointOnly": "true"}, stack="eks")
    assert private.eks.private_endpoint_only and private.eks.public_access_cidrs == ()
    problems = errors_for(
        clusterProvider="eks", eksPrivateEndpointOnly="true", eksPublicAccessCidrs=["198.51.100.0/24"]
    )
    assert any("empty when ml-platform:eksPrivateEndpointOnly is true" in p for p in problems), problems


def test_values_arrive_as_strings_like_the_cli_sends_them() -> None:
    config = parse_config(
        {"kindGpuWorkers": "3", "kindSimulateGpus": "false", "teams": '["a-team", "b-team"]', "monitoring": "true"},
        stack="t",
    )
    assert config.kind.gpu_workers == 3 and config.kind.simulate_gpus is False and config.monitoring is True
    assert [t.name for t in config.teams] == ["a-team", "b-team"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"clusterProvider": "gke"}, "ml-platform:clusterProvider = 'gke' is not allowed: one of: kind, eks"),
        ({"kindCpuWorkers": "-1"}, "ml-platform:kindCpuWorkers = -1 is not allowed: an integer >= 1"),
        ({"kindGpuWorkers": "two"}, "ml-platform:kindGpuWorkers = 'two' is not allowed: an integer"),
        ({"kindSimulateGpus": "yes"}, "ml-platform:kindSimulateGpus = 'yes' is not allowed: true or false"),
        (
            {"teamMemoryQuota": "16 gigs"},
            "ml-platform:teamMemoryQuota = '16 gigs' is not allowed: '16 gigs' is not a Kubernetes quantity",
        ),
        ({"queueCpu": "-4"}, "ml-platform:queueCpu = '-4' is not allowed: a positive Kubernetes quantity"),
        ({"teams": "bookstore-ml"}, "ml-platform:teams = 'bookstore-ml' is not allowed: a list of strings"),
        ({"teams": ["Bookstore_ML"]}, "ml-platform:teams = 'Bookstore_ML' is not allowed: DNS labels"),
        ({"teams": ["kube-system"]}, "ml-platform:teams = 'kube-system' is not allowed: a name not reserved"),
        ({"teams": ["a", "a"]}, "unique names"),
        ({"teams": []}, "at least one team name"),
        (
            {"recommenderImage": "bookstore:latest"},
            "ml-platform:recommenderImage = 'bookstore:latest' is not allowed: a pinned reference",
        ),
        ({"recommenderImage": "bookstore"}, "a pinned reference"),
        (
            {"recommenderMaxReplicas": "0"},
            "ml-platform:recommenderMaxReplicas = 0 is not allowed: >= recommenderMinReplicas (2)",
        ),
        ({"recommenderRetrainSchedule": "every night"}, "a 5-field cron expression"),
        (
            {"recommenderEaseMemory": "1536Mi"},
            "ml-platform:recommenderEaseMemory = '1536Mi' is not allowed: a quantity from 0 to half of "
            "recommenderTrainingMemory (1Gi)",
        ),
        ({"recommenderEaseMemory": "lots"}, "ml-platform:recommenderEaseMemory = 'lots' is not allowed"),
        ({"gpuTimeSlicingReplicas": "0"}, "an integer from 1 (off) to 32"),
        ({"eksVpcCidr": "10.0.0.0/8"}, "an IPv4 CIDR from /16 to /20"),
        ({"eksGpuNodesDesired": "5"}, "between eksGpuNodesMin (0) and eksGpuNodesMax (2)"),
        (
            {"eksPublicAccessCidrs": ["not-a-cidr"]},
            "ml-platform:eksPublicAccessCidrs = 'not-a-cidr' is not allowed: CIDR blocks",
        ),
        ({"clusterName": "My Cluster"}, "ml-platform:clusterName = 'My Cluster' is not allowed"),
        (
            {"gpuIdleAlertPercent": "0"},
            "ml-platform:gpuIdleAlertPercent = 0 is not allowed: a utilisation from 1 to 99 (percent)",
        ),
        ({"gpuIdleAlertPercent": "100"}, "ml-platform:gpuIdleAlertPercent = 100 is not allowed"),
        ({"gpuIdleAlertPercent": "ten"}, "ml-platform:gpuIdleAlertPercent = 'ten' is not allowed: an integer"),
        ({"gpuIdleAlertMinutes": "2"}, "ml-platform:gpuIdleAlertMinutes = 2 is not allowed: 5 to 1440 minutes"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(raw: dict[str, object], fragment: str) -> None:
    problems = errors_for(**raw)
    assert any(fragment in p for p in problems), problems


def test_gpu_idle_alert_thresholds_reach_the_monitoring_args() -> None:
    from mlplatform.monitoring import MonitoringArgs

    config = parse_config({"gpuIdleAlertPercent": "25", "gpuIdleAlertMinutes": "60"}, stack="dev")
    args = MonitoringArgs.for_platform(config, cluster=None)  # type: ignore[arg-type]
    assert (args.gpu_idle_percent, args.gpu_idle_minutes) == (25, 60)
    raw = {**stack_file_values("eks"), "eksPublicAccessCidrs": json.dumps(EKS_FROM_HERE["eksPublicAccessCidrs"])}
    eks_config = parse_config({**raw, "gpuIdleAlertMinutes": "15"}, stack="eks")
    eks = MonitoringArgs.for_platform(eks_config, cluster=None)  # type: ignore[arg-type]
    assert (eks.gpu_idle_minutes, eks.retention) == (15, "7d")


def test_unknown_key_is_rejected_with_a_suggestion() -> None:
    problems = errors_for(kindGpuWorker="2")
    assert problems == [
        "ml-platform:kindGpuWorker is not a known key; did you mean ml-platform:kindGpuWorkers? "
        "(known keys are declared in Pulumi.yaml)"
    ]


def test_a_training_job_larger_than_the_team_can_ever_get_is_refused() -> None:
    # Two teams, 2 GPUs: bookstore-ml is guaranteed 1 and may borrow at most 0 more.
    teams = ["bookstore-ml gpus=1 gpuBorrowingLimit=0", "search-ml"]
    problems = errors_for(recommenderTrainingGpus="2", teams=teams)
    assert any(
        p.startswith("ml-platform:recommenderTrainingGpus = '2' is not allowed: at most 1 gpus for all 1 pods of a run")
        and "team bookstore-ml can ever get (guaranteed 1 plus 0 it may borrow)" in p
        for p in problems
    ), problems
    problems = errors_for(recommenderTrainingMemory="32Gi", queueMemory="16Gi")
    assert any("recommenderTrainingMemory = '32Gi'" in p and "at most 16Gi memory" in p for p in problems), problems
    # Borrowing counts: the same run fits once the team may borrow the other team's GPU.
    assert parse_config({"recommenderTrainingGpus": "2", "teams": json.dumps(["bookstore-ml gpus=1", "search-ml"])},
                        stack="t").recommender.training_gpus == 2  # fmt: skip


def test_a_gpu_job_needs_gpus_in_the_pool() -> None:
    problems = errors_for(recommenderTrainingGpus="1", kindGpuWorkers="0")
    assert any("the 0 GPU(s) the GPU pool can offer" in p for p in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    problems = errors_for(clusterProvider="gke", kindCpuWorkers="-1", teams=["BAD"])
    assert len(problems) == 3
    assert str(ConfigError(problems)).startswith("invalid stack configuration (3 problem(s)):")


def test_bad_config_fails_before_any_resource_is_registered() -> None:
    with pytest.raises(ConfigError):
        run_under_mocks(lambda: build_stack("dev"), stack="dev", config={"ml-platform:kindCpuWorkers": "-1"})
    captured: list[object] = []

    def program() -> None:
        captured.append(build_stack("dev"))

    with pytest.raises(ConfigError):
        run_under_mocks(program, stack="dev", config={"ml-platform:nope": "1"})
    assert captured == []

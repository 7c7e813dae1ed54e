"""Run PromQL on Prometheus's own engine: ``promtool test rules`` over sample series.

Recording rules, alerts and dashboard queries are written out as a rule file plus a unit-test
file (input_series, alert_rule_test, promql_expr_test; Prometheus's documented format) and
handed to the real ``promtool``. scripts/test.sh installs it (Debian's ``prometheus`` package)
when it is missing; without it these tests fail, they never skip.

The sample series carry the labels the simulated GPU exporter (fake-gpu-operator's
status-exporter) really emits, as Prometheus stores them after a ServiceMonitor scrape.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = [
    "EKS_DCGM",
    "SIMULATED_DCGM",
    "gpu_series",
    "promtool",
    "run_promtool",
    "series",
]

INSTALL_HINT = (
    "promtool (Prometheus' rule tester) is not on PATH: these tests run PromQL on Prometheus' real engine. "
    "Run `bash scripts/install-promtool.sh` (as root or with sudo on Debian/Ubuntu; scripts/test.sh does), or "
    "`apt-get install prometheus`, or put a promtool 2.x binary on PATH."
)

# Target labels a ServiceMonitor scrape adds; the exporter's own pod/namespace/container
# then arrive as exported_pod/exported_namespace/exported_container (honorLabels: false).
# dev: fake-gpu-operator v0.2.0's status-exporter (Service nvidia-dcgm-exporter, port gpu-metrics;
# Hostname is a made-up "nvidia-dcgm-exporter-<sha1 of the node name>").
SIMULATED_DCGM = {
    "job": "nvidia-dcgm-exporter",
    "service": "nvidia-dcgm-exporter",
    "endpoint": "gpu-metrics",
    "namespace": "gpu-operator",
    "pod": "nvidia-dcgm-exporter-7xk2p",
    "container": "nvidia-dcgm-exporter",
    "instance": "10.244.2.7:9400",
    "Hostname": "nvidia-dcgm-exporter-1f3a9c",
    "modelName": "NVIDIA-A100-SXM4-40GB",
}
# EKS: NVIDIA dcgm-exporter 4.5.3-4.8.2 and its chart's ServiceMonitor (extra labels, real hostname).
EKS_DCGM = {
    "job": "dcgm-exporter",
    "service": "dcgm-exporter",
    "endpoint": "metrics",
    "namespace": "gpu-system",
    "pod": "dcgm-exporter-q8w4d",
    "container": "exporter",
    "instance": "10.0.3.17:9400",
    "Hostname": "ip-10-0-3-17.ec2.internal",
    "modelName": "NVIDIA A10G",
    "DCGM_FI_DRIVER_VERSION": "570.172.08",
    "pci_bus_id": "00000000:00:1E.0",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    """One input series in promtool's notation (``values``: e.g. ``"2+0x120"``, ``"0 1 _ 3"``)."""
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def gpu_series(
    name: str, exporter: Mapping[str, str], gpu: int, values: str, holder: tuple[str, str] | None = None
) -> dict[str, str]:
    """A DCGM series for GPU ``gpu`` of ``exporter``'s node, held by ``holder`` (namespace, pod) or free."""
    labels = {**exporter, "gpu": str(gpu), "device": f"nvidia{gpu}", "UUID": f"GPU-{exporter['Hostname']}-{gpu}"}
    if holder is not None:
        labels |= {"exported_namespace": holder[0], "exported_pod": holder[1], "exported_container": "main"}
    return series(name, labels, values)


def run_promtool(
    tmp_path: Path, groups: Sequence[Mapping[str, Any]], tests: Sequence[Mapping[str, Any]], *, interval: str = "1m"
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of ``tests`` against a rule file holding ``groups``; returns the run."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [dict(g) for g in groups]}, sort_keys=False))
    spec = tmp_path / "tests.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": interval, "tests": [dict(t) for t in tests]},
            sort_keys=False,
        )
    )
    return subprocess.run(
        [promtool(), "test", "rules", spec.name], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )


def assert_passes(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, f"promtool test rules failed:\n{run.stdout}\n{run.stderr}"

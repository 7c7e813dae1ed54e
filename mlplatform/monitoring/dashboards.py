"""Grafana dashboards as code: ``dashboards/*.json`` shipped in ConfigMaps for Grafana's sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..objects import MANAGED_BY
from .values import DASHBOARD_LABEL

__all__ = ["DASHBOARD_DIR", "dashboard_config_map", "load_dashboards"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
FOLDER = "ML platform"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` in ``directory`` by file stem, parsed (a malformed file fails here, not in Grafana)."""
    dashboards = {}
    for path in sorted(directory.glob("*.json")):
        try:
            dashboards[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"dashboard {path.name} is not valid JSON: {err}") from err
    return dashboards


def dashboard_config_map(namespace: str, stem: str, dashboard: dict[str, Any]) -> dict[str, Any]:
    """A ConfigMap the sidecar loads into Grafana's "ML platform" folder (1 MiB ConfigMap limit applies)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"dashboard-{stem}",
            "namespace": namespace,
            "labels": {**MANAGED_BY, DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]},
            "annotations": {"grafana_folder": FOLDER},
        },
        "data": {f"{stem}.json": json.dumps(dashboard, indent=1, sort_keys=True)},
    }

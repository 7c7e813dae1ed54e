"""The composition root: this stack's platform, then the apps on it.

``__main__.py`` runs ``build`` for ``pulumi up``; tests and ``python -m mlplatform.render`` run it
under mocks. Dependencies point one way: apps (``workloads/``) use the platform (``mlplatform/``),
which knows nothing of them; what the platform must know up front (the custom metrics an app
scales on) is handed to it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlplatform.config import PlatformConfig, load_config
from mlplatform.program import Platform, deploy

__all__ = ["Deployment", "build", "deploy_stack"]


@dataclass
class Deployment:
    """What one run of the program registered: the platform and, by name, the apps on it."""

    platform: Platform
    apps: dict[str, Any] = field(default_factory=dict)


def deploy_stack(config: PlatformConfig) -> Deployment:
    """Register the platform described by ``config`` and the apps it enables."""
    adapter_rules: list[dict[str, Any]] = []
    if config.recommender.enabled:
        from workloads.bookstore_monitoring import adapter_rules as bookstore_adapter_rules

        adapter_rules += bookstore_adapter_rules()
    deployment = Deployment(deploy(config, adapter_rules=adapter_rules))
    if config.recommender.enabled:
        from workloads.bookstore import deploy_bookstore

        deployment.apps["bookstore"] = deploy_bookstore(deployment.platform)
    return deployment


def build(stack: str) -> Deployment:
    """Read ``Pulumi.<stack>.yaml`` (as the CLI hands it over) and deploy it: the program's entry point."""
    return deploy_stack(load_config(stack))

"""The fixed contract with the platform (Kubernetes manifests depend on exactly these values).

Importable without numpy/scipy so platform tests can read it cheaply.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_POLL_SECONDS",
    "DEFAULT_PORT",
    "ENV_MODEL",
    "ENV_REGISTRY",
    "ENV_SHARD_INDEX",
    "EXIT_BAD_INPUT",
    "EXIT_GATE_FAILED",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_REGISTRY",
    "LIVE_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "RUN_AS_UID",
    "WRITABLE_PATHS",
]

DEFAULT_PORT = 8080
READY_PATH = "/ready"
LIVE_PATH = "/live"
METRICS_PATH = "/metrics"
DEFAULT_ALIAS = "production"
DEFAULT_POLL_SECONDS = 5.0

ENV_REGISTRY = "RECOMMENDER_REGISTRY"
ENV_MODEL = "RECOMMENDER_MODEL"
# `train --shards N` reads its shard index from here: Kubernetes sets it in each pod of an
# indexed Job (completionMode: Indexed), which is what a JobSet's worker job is.
ENV_SHARD_INDEX = "JOB_COMPLETION_INDEX"

RUN_AS_UID = 10001
WRITABLE_PATHS = ("/models", "/work", "/tmp")

# Exit codes of `python -m recommender ...` (documented in recommender/README.md).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception
EXIT_BAD_INPUT = 2  # bad flags, missing/malformed input files (argparse also uses 2)
EXIT_GATE_FAILED = 3  # evaluate --min-lift: the model did not beat popularity by the margin
EXIT_REGISTRY = 4  # registry: unknown model/version/alias, corrupt version, nothing to roll back to

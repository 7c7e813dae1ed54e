"""A trained model on disk: model.npz (arrays, ids) + metadata.json.

The content digest covers the arrays and the deterministic part of the metadata (not timings),
so retraining with the same data and parameters reproduces the same digest: the registry's
version id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender import __version__
from recommender.errors import InputError
from recommender.files import write_atomic
from recommender.hashing import content_digest
from recommender.model import MODEL_FILE, ItemKNN

__all__ = ["METADATA_FILE", "VOLATILE_KEYS", "Artifact", "load_artifact", "write_artifact"]

METADATA_FILE = "metadata.json"
ARTIFACT_FILES = (MODEL_FILE, METADATA_FILE)
# Metadata that differs between identical retrainings and so stays out of the digest.
VOLATILE_KEYS = frozenset({"timings", "content_sha256", "peak_memory_mib"})


@dataclass(frozen=True)
class Artifact:
    model: ItemKNN
    item_ids: np.ndarray
    metadata: dict[str, Any]
    digest: str


def _stable(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k not in VOLATILE_KEYS}


def _arrays(model: ItemKNN, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    return {**model.arrays(), "item_ids": item_ids, "params": model.param_array(),
            "similarity": np.array(model.similarity)}  # fmt: skip


def write_artifact(
    directory: Path, model: ItemKNN, item_ids: np.ndarray | Sequence[str], metadata: dict[str, Any]
) -> str:
    """Write model.npz and metadata.json; return the content digest (also in the metadata)."""
    ids = np.asarray(item_ids, dtype=str)
    meta = {**metadata, "package_version": __version__, "params": model.params(), "n_items": model.n_items}
    digest = content_digest(_arrays(model, ids), _stable(meta))
    meta["content_sha256"] = digest
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory, extra={"item_ids": ids})
    # Each file is replaced whole; a crash between the two leaves a checksum mismatch that
    # `register` refuses, and a retried step rewrites both.
    write_atomic(directory / METADATA_FILE, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return digest


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{directory} is not a model artifact: {METADATA_FILE} is missing") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise InputError(f"{path} must hold a JSON object")
    return meta


def load_artifact(directory: Path, expected_digest: str | None = None) -> Artifact:
    """Load and verify: the recomputed digest must match the metadata (and `expected_digest`)."""
    meta = read_metadata(directory)
    try:
        with np.load(directory / MODEL_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise InputError(f"{directory} is not a model artifact: {MODEL_FILE} is missing") from None
    except Exception as err:  # zip/CRC/format errors of a damaged file come in many types
        raise InputError(f"{directory / MODEL_FILE} is unreadable or corrupt: {err}") from err
    missing = {"neighbours", "scores", "popularity", "item_ids", "params", "similarity"} - arrays.keys()
    if missing:
        raise InputError(f"{directory / MODEL_FILE} lacks arrays {sorted(missing)}")
    digest = content_digest({k: arrays[k] for k in sorted(arrays)}, _stable(meta))
    recorded = meta.get("content_sha256")
    if digest != recorded:
        raise InputError(f"{directory}: checksum mismatch (content {digest[:12]}, recorded {str(recorded)[:12]})")
    if expected_digest is not None and digest != expected_digest:
        raise InputError(f"{directory}: checksum {digest[:12]} does not match version {expected_digest[:12]}")
    model = ItemKNN.from_arrays(arrays)
    item_ids = arrays["item_ids"]
    if item_ids.shape != (model.n_items,):
        raise InputError(f"{directory}: {item_ids.size} item ids for {model.n_items} books")
    return Artifact(model, item_ids, meta, digest)

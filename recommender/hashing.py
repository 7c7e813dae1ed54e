"""SHA-256 helpers: files, and a canonical digest of a model's arrays and metadata."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["canonical_json", "content_digest", "sha256_bytes", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_digest(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> str:
    """Digest over array names, dtypes, shapes and bytes plus canonical metadata JSON.

    Hashing content rather than the .npz file bytes makes the id reproducible: numpy stamps
    the current time into the zip entries, so identical models give different files.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(canonical_json([name, arr.dtype.str, list(arr.shape)]))
        h.update(arr.tobytes())
    h.update(canonical_json(dict(metadata)))
    return h.hexdigest()

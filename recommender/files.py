"""Files that appear whole or not at all, and .npz files whose bytes depend only on content.

A killed process must never leave a half-written file under the final name: a retried pod
would take it for a finished one. Everything is written to a temporary name in the same
directory, fsynced, then renamed (atomic on POSIX). The temporary name starts with a dot
and ends in `.tmp`, so directory scans ignore what a killed writer leaves behind.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["fsync_dir", "write_atomic", "write_npz"]

# numpy stamps the current time into each zip entry; a fixed stamp (the zip epoch) makes equal
# arrays give equal files, so a model trained twice, or merged from shards, is the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (the directory itself is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[IO[bytes]], None] | bytes) -> None:
    """Write `path` through a temporary file and one rename; the directory must exist."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            if isinstance(write, bytes):
                fh.write(write)
            else:
                write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _npz_writer(arrays: Mapping[str, np.ndarray]) -> Callable[[IO[bytes]], None]:
    def write(fh: IO[bytes]) -> None:
        # Same layout as np.savez (stored entries NAME.npy, zip64), minus the clock.
        with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                with zf.open(info, mode="w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asanyarray(value), allow_pickle=False)

    return write


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write a reproducible .npz (loadable with np.load(allow_pickle=False))."""
    write_atomic(path, _npz_writer(arrays))

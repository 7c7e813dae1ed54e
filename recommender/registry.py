"""A model registry in a directory (the model store the cluster mounts).

Layout under ROOT:
    NAME/versions/<sha256>/{model.npz,metadata.json,lineage.json}   immutable, content-addressed
    NAME/aliases/<alias>.json   {"version": ..., "history": [previous versions, newest first]}
    NAME/.staging/              temporary directories, renamed into versions/ when complete

A version directory appears only through one `rename` of a complete, fsynced staging
directory, and an alias moves only through `os.replace` of a complete file, so a crash at any
point leaves either the old state or the new one, never a half model behind a name.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommender.artifact import ARTIFACT_FILES, load_artifact, read_metadata
from recommender.errors import InputError, RegistryError
from recommender.files import fsync_dir

__all__ = ["AliasState", "Registry", "validate_name"]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[0-9a-f]{64}$")
LINEAGE_FILE = "lineage.json"
HISTORY_LIMIT = 50


def validate_name(value: str, field: str) -> str:
    """Model and alias names: 1-63 chars of a-z 0-9 . _ - starting and ending alphanumeric."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise InputError(
            f"{field} {value!r} is not a valid name: use 1-63 characters a-z, 0-9, '.', '_', '-',"
            " starting and ending with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class AliasState:
    version: str
    history: tuple[str, ...]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Registry:
    """Register, promote, roll back and list model versions under a root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths ----------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.root / validate_name(name, "--model")

    def version_dir(self, name: str, version: str) -> Path:
        if not _VERSION.match(version):
            raise InputError(f"version {version!r} is not a 64-character SHA-256 hex digest")
        return self._model_dir(name) / "versions" / version

    def _alias_file(self, name: str, alias: str) -> Path:
        return self._model_dir(name) / "aliases" / f"{validate_name(alias, '--alias')}.json"

    # -- queries --------------------------------------------------------------------------

    def versions(self, name: str) -> list[str]:
        vdir = self._model_dir(name) / "versions"
        if not vdir.is_dir():
            return []
        return sorted(p.name for p in vdir.iterdir() if _VERSION.match(p.name))

    def resolve_version(self, name: str, ref: str) -> str:
        """A full version id, a unique prefix of at least 6 characters, or an alias name."""
        versions = self.versions(name)
        if ref in versions:
            return ref
        if len(ref) >= 6 and re.fullmatch(r"[0-9a-f]+", ref):
            found = [v for v in versions if v.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RegistryError(f"version prefix {ref!r} is ambiguous in model {name!r}")
        if _NAME.match(ref):
            state = self.alias(name, ref)
            if state is not None:
                return state.version
        raise RegistryError(f"model {name!r} has no version or alias {ref!r} (see `list --model {name}`)")

    def alias(self, name: str, alias: str) -> AliasState | None:
        path = self._alias_file(name, alias)
        try:
            doc = json.loads(path.read_text())
            return AliasState(str(doc["version"]), tuple(str(v) for v in doc.get("history", [])))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RegistryError(f"alias file {path} is unreadable: {err}") from err

    def aliases(self, name: str) -> dict[str, str]:
        adir = self._model_dir(name) / "aliases"
        if not adir.is_dir():
            return {}
        out = {}
        for p in sorted(adir.glob("*.json")):
            if _NAME.match(p.stem) and (state := self.alias(name, p.stem)) is not None:
                out[p.stem] = state.version
        return out

    def lineage(self, name: str, version: str) -> dict[str, Any]:
        path = self.version_dir(name, version) / LINEAGE_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def describe(self, name: str) -> dict[str, Any]:
        aliases = self.aliases(name)
        return {
            "model": name,
            "aliases": aliases,
            "versions": [
                {"version": v, "aliases": sorted(a for a, t in aliases.items() if t == v), **self.lineage(name, v)}
                for v in self.versions(name)
            ],
        }

    # -- changes --------------------------------------------------------------------------

    def register(self, name: str, artifact_dir: Path, *, parent_alias: str = "production") -> tuple[str, bool]:
        """Copy a verified artifact in as an immutable version. Returns (version, created).

        Registering the same content again is a no-op that returns the existing version.
        """
        artifact = load_artifact(Path(artifact_dir))
        version = artifact.digest
        target = self.version_dir(name, version)
        if target.is_dir():
            try:
                load_artifact(target, version)
                return version, False
            except InputError:
                self._quarantine(name, target)  # damaged from outside: replace it with good content
        staging_root = self._model_dir(name) / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f"{version[:12]}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for fname in ARTIFACT_FILES:
                shutil.copyfile(Path(artifact_dir) / fname, staging / fname)
            parent = self.alias(name, parent_alias)
            meta = artifact.metadata
            lineage = {
                "version": version,
                "registered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parent_version": parent.version if parent else None,
                "dataset_sha256": meta.get("dataset_sha256"),
                "params": meta.get("params"),
                "metrics": meta.get("metrics"),
                # every candidate's validation figures and the winner (absent without selection)
                "selection": meta.get("selection"),
                "package_version": meta.get("package_version"),
            }
            (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
            for fname in (*ARTIFACT_FILES, LINEAGE_FILE):
                with (staging / fname).open("rb") as fh:
                    os.fsync(fh.fileno())
            fsync_dir(staging)
            try:
                os.rename(staging, target)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return version, False  # a concurrent writer registered the same content first
            fsync_dir(target.parent)
            return version, True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _quarantine(self, name: str, path: Path) -> None:
        dest = self._model_dir(name) / ".staging" / f"corrupt-{path.name[:12]}-{uuid.uuid4().hex}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, dest)

    def promote(self, name: str, ref: str, alias: str = "production") -> tuple[str, bool]:
        """Point `alias` at a verified version. Returns (version, changed); same target is a no-op."""
        version = self.resolve_version(name, ref)
        try:
            load_artifact(self.version_dir(name, version), version)
        except InputError as err:
            raise RegistryError(f"refusing to promote {version[:12]}: {err}") from err
        current = self.alias(name, alias)
        if current is not None and current.version == version:
            return version, False
        history: tuple[str, ...] = ()
        if current is not None:
            history = (current.version, *current.history)[:HISTORY_LIMIT]
        self._set_alias(name, alias, AliasState(version, history))
        return version, True

    def rollback(self, name: str, alias: str = "production") -> str:
        """Move `alias` back to the version it pointed at before the last promote."""
        current = self.alias(name, alias)
        if current is None:
            raise RegistryError(f"alias {alias!r} of model {name!r} does not exist; nothing to roll back")
        if not current.history:
            raise RegistryError(f"alias {alias!r} of model {name!r} has no earlier version to roll back to")
        self._set_alias(name, alias, AliasState(current.history[0], current.history[1:]))
        return current.history[0]

    def _set_alias(self, name: str, alias: str, state: AliasState) -> None:
        path = self._alias_file(name, alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": state.version, "history": list(state.history)}
        _write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        return read_metadata(self.version_dir(name, version))

"""Reading orders (and optionally a catalogue) into a customer x book sparse matrix.

Any CSV with a header holding `customer_id` and `book_id` (ids are strings) and optionally
`ordered_at` (ISO 8601) is accepted, not only generated ones.

Parsing a large CSV costs far more than training on it (5.6M orders: ~15 s against a ~4 s
fit), and in a distributed run every worker reads the same files. `load_interactions`
therefore keeps the parsed arrays next to the CSV, in `.recommender-cache/`, under the SHA-256
of the CSV bytes: a changed file never meets a stale cache. `generate` writes that cache
directly, so workers of a generated data set never parse at all.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.errors import InputError
from recommender.files import write_npz
from recommender.hashing import canonical_json, sha256_bytes, sha256_file

__all__ = ["DataIdentity", "Interactions", "load_interactions", "read_catalog_ids", "read_orders", "write_cache"]

REQUIRED = ("customer_id", "book_id")
CACHE_DIR = ".recommender-cache"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class DataIdentity:
    """The content of the input files: what a model, a shard and the parse cache are keyed by."""

    orders_sha256: str
    catalog_sha256: str | None

    @classmethod
    def of(cls, orders: Path, catalog: Path | None = None) -> DataIdentity:
        for path, flag in ((orders, "--orders"), (catalog, "--catalog")):
            if path is not None and not path.is_file():
                raise InputError(f"{flag}: file not found: {path} (pass an existing CSV)")
        return cls(sha256_file(orders), sha256_file(catalog) if catalog is not None else None)

    def as_dict(self) -> dict[str, Any]:
        return {"orders_sha256": self.orders_sha256, "catalog_sha256": self.catalog_sha256}


@dataclass(frozen=True)
class Interactions:
    """Orders as integer codes into sorted id arrays; one entry per order row."""

    user_ids: np.ndarray  # unicode, sorted unique customer ids
    item_ids: np.ndarray  # unicode, sorted unique book ids (catalogue and orders)
    users: np.ndarray  # int64 code per order
    items: np.ndarray  # int64 code per order
    ordered_at: np.ndarray | None  # datetime64[s] per order when the file has timestamps

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    def matrix(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary customer x book CSR matrix (float32) of the selected orders."""
        users, items = (self.users, self.items) if mask is None else (self.users[mask], self.items[mask])
        m = sp.csr_matrix(
            (np.ones(users.size, dtype=np.float32), (users, items)),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0  # a repeat purchase is still one co-purchase signal
        return m


def _read_columns(path: Path, wanted: tuple[str, ...], optional: tuple[str, ...], what: str) -> dict[str, list[str]]:
    if not path.is_file():
        raise InputError(f"{what}: file not found: {path} (pass an existing CSV)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"{what}: {path} is empty; expected a header with {', '.join(wanted)}") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{what}: {path} is not a readable CSV: {err}") from err
        missing = [c for c in wanted if c not in header]
        if missing:
            raise InputError(
                f"{what}: {path} has no column {', '.join(missing)}; header is {','.join(header)}"
                f" (need {','.join(wanted)})"
            )
        cols = [c for c in wanted + optional if c in header]
        idx = [header.index(c) for c in cols]
        out: dict[str, list[str]] = {c: [] for c in cols}
        appenders = [out[c].append for c in cols]
        width = max(idx) + 1
        try:
            for lineno, row in enumerate(reader, start=2):
                if len(row) < width:
                    if not row:
                        continue
                    raise InputError(f"{what}: {path} line {lineno} has {len(row)} fields, expected {len(header)}")
                for append, i in zip(appenders, idx, strict=True):
                    append(row[i])
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{what}: {path} is not a readable CSV: {err}") from err
    return out


def read_catalog_ids(path: Path) -> np.ndarray:
    cols = _read_columns(path, ("book_id",), (), "--catalog")
    ids = np.array(cols["book_id"], dtype=str)
    if ids.size and (np.char.str_len(ids) == 0).any():
        raise InputError(f"--catalog: {path} has an empty book_id")
    return np.unique(ids)


def _parse_times(values: list[str], path: Path) -> np.ndarray:
    raw = np.array(values, dtype=str)
    stripped = np.char.rstrip(raw, "Z")
    try:
        return stripped.astype("datetime64[s]")
    except ValueError:
        for i, v in enumerate(stripped.tolist()):
            try:
                np.datetime64(v, "s")
            except ValueError:
                raise InputError(
                    f"--orders: {path} line {i + 2}: ordered_at {raw[i]!r} is not ISO 8601 "
                    "(e.g. 2025-01-31T12:00:00Z)"
                ) from None
        raise  # pragma: no cover - every value parsed one by one yet not together


def read_orders(path: Path, catalog: Path | None = None) -> Interactions:
    """Read orders (and the catalogue's book ids, so unsold books are still known)."""
    cols = _read_columns(path, REQUIRED, ("ordered_at",), "--orders")
    customers = np.array(cols["customer_id"], dtype=str)
    books = np.array(cols["book_id"], dtype=str)
    if customers.size == 0:
        raise InputError(f"--orders: {path} has a header but no orders")
    for name, arr in (("customer_id", customers), ("book_id", books)):
        empty = np.flatnonzero(np.char.str_len(arr) == 0)
        if empty.size:
            raise InputError(f"--orders: {path} line {int(empty[0]) + 2} has an empty {name}")
    user_ids, users = np.unique(customers, return_inverse=True)
    item_ids = np.unique(books)
    if catalog is not None:
        item_ids = np.union1d(item_ids, read_catalog_ids(catalog))
    items = np.searchsorted(item_ids, books)
    times = _parse_times(cols["ordered_at"], path) if "ordered_at" in cols else None
    return Interactions(user_ids, item_ids, users.astype(np.int64), items.astype(np.int64), times)


def _cache_path(orders: Path, identity: DataIdentity) -> Path:
    key = sha256_bytes(canonical_json({"format": CACHE_FORMAT, **identity.as_dict()}))
    return orders.parent / CACHE_DIR / f"interactions-{key[:32]}.npz"


def write_cache(orders: Path, identity: DataIdentity, data: Interactions) -> None:
    """Keep parsed orders for the next reader; best effort (a read-only directory only costs time)."""
    path = _cache_path(orders, identity)
    times = data.ordered_at
    arrays = {
        "user_ids": data.user_ids, "item_ids": data.item_ids, "users": data.users, "items": data.items,
        "ordered_at": np.zeros(0, dtype=np.int64) if times is None else times.astype(np.int64),
        "has_times": np.array(times is not None),
    }  # fmt: skip
    try:
        path.parent.mkdir(exist_ok=True)
        write_npz(path, arrays)
    except OSError:
        pass


def _read_cache(path: Path) -> Interactions | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            a = {k: npz[k] for k in npz.files}
        times = a["ordered_at"].astype("datetime64[s]") if bool(a["has_times"]) else None
        data = Interactions(a["user_ids"], a["item_ids"], a["users"], a["items"], times)
    except Exception:  # missing, damaged or from another layout: parse the CSV instead
        return None
    n = data.users.shape
    if data.items.shape != n or (times is not None and times.shape != n) or data.users.dtype != np.int64:
        return None
    if n[0] and (data.users.max() >= data.n_users or data.items.max() >= data.n_items):
        return None
    return data


def load_interactions(orders: Path, catalog: Path | None = None, identity: DataIdentity | None = None) -> Interactions:
    """`read_orders` through the parse cache (see the module docstring)."""
    identity = identity or DataIdentity.of(orders, catalog)
    path = _cache_path(orders, identity)
    cached = _read_cache(path) if path.is_file() else None
    if cached is not None:
        return cached
    data = read_orders(orders, catalog)
    write_cache(orders, identity, data)
    return data

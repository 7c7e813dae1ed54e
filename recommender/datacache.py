"""The parse cache: orders parsed once, kept next to the CSV under its SHA-256.

Parsing a large CSV costs far more than training on it (5.6M orders: ~15 s of CPU against a
~4 s fit), and in a distributed run every worker reads the same files. `load_interactions`
keeps the parsed arrays, with the purchase matrix in both layouts and its index
(`data.PurchaseIndex`), in
`.recommender-cache/` next to the orders file, under the SHA-256 of the CSV bytes, so a
changed file never meets a stale cache, and a damaged cache is ignored and rewritten.
`generate` writes the cache directly, so readers of a generated data set never parse at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.data import Interactions, PurchaseIndex, read_orders
from recommender.errors import InputError
from recommender.files import write_npz
from recommender.hashing import canonical_json, sha256_bytes, sha256_file

__all__ = ["CACHE_DIR", "DataIdentity", "load_interactions", "write_cache"]

CACHE_DIR = ".recommender-cache"
CACHE_FORMAT = 3


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


def _cache_path(orders: Path, identity: DataIdentity) -> Path:
    key = sha256_bytes(canonical_json({"format": CACHE_FORMAT, **identity.as_dict()}))
    return orders.parent / CACHE_DIR / f"interactions-{key[:32]}.npz"


def write_cache(orders: Path, identity: DataIdentity, data: Interactions) -> Interactions:
    """Keep parsed orders for the next reader; best effort (a read-only directory only costs
    time). Returns the orders with their purchase index."""
    path = _cache_path(orders, identity)
    times, index = data.ordered_at, data.index or PurchaseIndex.build(data)
    arrays = {
        "user_ids": data.user_ids, "item_ids": data.item_ids, "users": data.users, "items": data.items,
        "ordered_at": np.zeros(0, dtype=np.int64) if times is None else times.astype(np.int64),
        "has_times": np.array(times is not None),
        "purchases_indptr": index.matrix.indptr, "purchases_indices": index.matrix.indices,
        "purchase_of_order": index.entry,
        "by_book_indptr": index.by_book.indptr, "by_book_indices": index.by_book.indices,
    }  # fmt: skip
    try:
        path.parent.mkdir(exist_ok=True)
        write_npz(path, arrays)
    except OSError:
        pass
    return replace(data, index=index)


def _read_cache(path: Path) -> Interactions | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            a = {k: npz[k] for k in npz.files}
        times = a["ordered_at"].astype("datetime64[s]") if bool(a["has_times"]) else None
        data = Interactions(a["user_ids"], a["item_ids"], a["users"], a["items"], times)
        shape = (data.n_users, data.n_items)
        indices = a["purchases_indices"]
        ones = np.ones(indices.size, dtype=np.float32)  # both layouts' values: shared
        matrix = sp.csr_matrix((ones, indices, a["purchases_indptr"]), shape=shape)
        by_book = sp.csr_matrix((ones, a["by_book_indices"], a["by_book_indptr"]), shape=shape[::-1])
        index = PurchaseIndex(matrix, a["purchase_of_order"], by_book)
        n = data.users.shape
        if data.items.shape != n or (times is not None and times.shape != n) or data.users.dtype != np.int64:
            return None
        if n[0] and (data.users.max() >= data.n_users or data.items.max() >= data.n_items):
            return None
        return replace(data, index=index) if index.valid_for(data) else None
    except Exception:  # missing, damaged or from another layout: parse the CSV instead
        return None


def load_interactions(orders: Path, catalog: Path | None = None, identity: DataIdentity | None = None) -> Interactions:
    """`read_orders` through the parse cache (see the module docstring)."""
    identity = identity or DataIdentity.of(orders, catalog)
    path = _cache_path(orders, identity)
    cached = _read_cache(path) if path.is_file() else None
    if cached is not None:
        return cached
    return write_cache(orders, identity, read_orders(orders, catalog))

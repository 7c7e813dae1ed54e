"""Reading orders (and optionally a catalogue) into a customer x book sparse matrix.

Any CSV with a header holding `customer_id` and `book_id` (ids are strings) and optionally
`ordered_at` (ISO 8601) is accepted, not only generated ones.

`recommender.datacache` keeps what this module parses and builds, so it is done once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommender.errors import InputError

__all__ = ["Interactions", "PurchaseIndex", "read_catalog_ids", "read_orders"]

REQUIRED = ("customer_id", "book_id")


@dataclass(frozen=True)
class PurchaseIndex:
    """All orders' binary customer x book matrix, and the entry of each order in it.

    Building a matrix sorts the orders (~0.2 s per million); with this index, the matrix of
    any subset of orders (a train split) is one pass that keeps the entries they hit.
    """

    matrix: sp.csr_matrix  # canonical: sorted columns, no repeats, every value 1
    entry: np.ndarray  # int64 per order: its position in matrix.indices
    # The same matrix as books x customers: every training process needs both layouts, and
    # converting costs each of them a pass over all purchases (see `Interactions.purchases`).
    by_book: sp.csr_matrix

    @classmethod
    def build(cls, data: Interactions) -> PurchaseIndex:
        m = data.matrix() if data.index is None else data.index.matrix
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        keys = rows * m.shape[1] + m.indices  # increasing: rows in order, sorted columns
        entry = np.searchsorted(keys, data.users * m.shape[1] + data.items)
        t = m.tocsc()
        return cls(m, entry, sp.csr_matrix((m.data, t.indices, t.indptr), shape=m.shape[::-1]))

    def valid_for(self, data: Interactions) -> bool:
        """Consistent with these orders (a damaged cache must never pass)."""
        m, e, t = self.matrix, self.entry, self.by_book
        if m.shape != (data.n_users, data.n_items) or e.shape != data.users.shape or m.indptr[-1] != m.indices.size:
            return False
        if e.size and (e.min() < 0 or e.max() >= m.indices.size):
            return False
        if not m.has_canonical_format:
            return False
        # The transpose: per book, as many buyers as the matrix has, with the same sum of customer
        # numbers; sorted, no repeats (zip CRCs catch damaged bytes; this catches a wrong matrix).
        if t.shape != m.shape[::-1] or t.indptr[-1] != t.indices.size or t.indices.size != m.indices.size:
            return False
        if t.indices.size and (t.indices.min() < 0 or t.indices.max() >= m.shape[0]):
            return False
        if (np.diff(t.indptr) != np.bincount(m.indices, minlength=m.shape[1])).any() or not t.has_canonical_format:
            return False
        rows = np.repeat(np.arange(m.shape[0], dtype=np.float64), np.diff(m.indptr))
        sums = np.concatenate(([0], np.cumsum(t.indices, dtype=np.int64)))
        per_book = np.bincount(m.indices, weights=rows, minlength=m.shape[1])
        if (per_book != sums[t.indptr[1:]] - sums[t.indptr[:-1]]).any():
            return False
        rows_ok = (m.indptr[data.users] <= e) & (e < m.indptr[data.users + 1])
        return bool(rows_ok.all() and (m.indices[e] == data.items).all())

    def select(self, mask: np.ndarray | None) -> sp.csr_matrix:
        if mask is None:
            return self.matrix.copy()
        keep = np.zeros(self.matrix.indices.size, dtype=bool)
        keep[self.entry[mask]] = True
        kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
        indptr = kept[self.matrix.indptr].astype(self.matrix.indptr.dtype)
        indices = self.matrix.indices[keep]
        return sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=self.matrix.shape)


@dataclass(frozen=True)
class Interactions:
    """Orders as integer codes into sorted id arrays; one entry per order row."""

    user_ids: np.ndarray  # unicode, sorted unique customer ids
    item_ids: np.ndarray  # unicode, sorted unique book ids (catalogue and orders)
    users: np.ndarray  # int64 code per order
    items: np.ndarray  # int64 code per order
    ordered_at: np.ndarray | None  # datetime64[s] per order when the file has timestamps
    # Set when the parse cache had one: matrix() then selects instead of building.
    index: PurchaseIndex | None = field(default=None, compare=False, repr=False)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    def purchases(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """All orders' binary matrix, as customers x books and as books x customers. From the
        parse cache, its own arrays, read-only (no copy, no conversion); else built."""
        if self.index is None:
            x = self.matrix()
            return x, x.tocsc().T
        for arr in (*_arrays(self.index.matrix), *_arrays(self.index.by_book)):
            arr.flags.writeable = False
        return self.index.matrix, self.index.by_book

    def matrix(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary customer x book CSR matrix (float32) of the selected orders."""
        if self.index is not None:
            return self.index.select(mask)
        users, items = (self.users, self.items) if mask is None else (self.users[mask], self.items[mask])
        m = sp.csr_matrix(
            (np.ones(users.size, dtype=np.float32), (users, items)),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0  # a repeat purchase is still one co-purchase signal
        return m


def _arrays(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return m.data, m.indices, m.indptr


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


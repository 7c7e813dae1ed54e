"""Top-K per row of a CSR matrix without a Python loop per row.

Rows are grouped by length; each group becomes a dense padded block (built by scipy in C),
one `argpartition` finds a few candidates per row, and only those few are sorted. Rows where a
tie straddles the K-th place are re-ranked exactly, so results never depend on partition order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["csr_from_triples", "csr_rows", "csr_topk", "csr_view"]

_PAD_BUDGET = 1 << 21  # elements per padded block (8 MiB of float32)
_SAMPLE = 512  # entries sampled per long row to bound its k-th largest value from below


def _prefilter(m: sp.csr_matrix, need: int) -> sp.csr_matrix:
    """Drop entries that cannot be in a row's top `need`, exactly and cheaply.

    The `need`-th largest of any subset of a row is <= the row's own `need`-th largest, so
    entries below it are never selected; entries equal to it stay (ties remain exact). A
    strided sample of S entries (S up to _SAMPLE, at most half the row) bounds it tightly
    enough to keep about need*len/S entries.
    """
    lens = np.diff(m.indptr)
    bound = np.zeros(m.shape[0], dtype=m.data.dtype)
    size = _SAMPLE
    any_long = False
    while size > need:
        # Rows longer than twice the sample size; the largest size takes all longer rows.
        longer = lens > 2 * size
        rows = np.flatnonzero(longer if size == _SAMPLE else longer & (lens <= 4 * size))
        if rows.size:
            any_long = True
            steps = np.arange(size, dtype=np.int64)
            pos = m.indptr[rows, None] + (steps[None, :] * lens[rows, None]) // size
            bound[rows] = np.partition(m.data[pos], size - need, axis=1)[:, size - need]
        size //= 2
    if not any_long:
        return m
    # Positions of kept entries in one pass; row pointers follow by binary search (no full cumsum).
    kept = np.flatnonzero(m.data >= np.repeat(bound, lens))
    indptr = np.searchsorted(kept, m.indptr)
    return sp.csr_matrix((m.data[kept], m.indices[kept], indptr), shape=m.shape)


def csr_from_triples(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR of (row, col, value) triples with no repeated (row, col), grouped by row in one
    counting pass. Columns stay in input order within a row: `csr_topk` does not need them
    sorted, so the sort scipy's constructor does would be wasted."""
    try:
        from scipy.sparse._sparsetools import coo_tocsr
    except ImportError:  # pragma: no cover - scipy internals changed; correct, just slower
        return sp.csr_matrix((vals, (rows, cols)), shape=shape)
    idx_dtype = np.int32 if max(shape) < np.iinfo(np.int32).max and rows.size < np.iinfo(np.int32).max else np.int64
    indptr = np.empty(shape[0] + 1, dtype=idx_dtype)
    indices = np.empty(rows.size, dtype=idx_dtype)
    data = np.empty(rows.size, dtype=vals.dtype)
    coo_tocsr(shape[0], shape[1], rows.size, rows.astype(idx_dtype, copy=False), cols.astype(idx_dtype, copy=False),
              vals, indptr, indices, data)  # fmt: skip
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def csr_view(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix on exactly these arrays, unchecked. scipy's constructor copies any array
    that is a view of one more than twice its size ("pruning"): a row slice of a large matrix,
    or a product in a reused buffer, would be copied every time."""
    m = sp.csr_matrix(shape, dtype=data.dtype)
    m.data, m.indices, m.indptr = data, indices, indptr
    return m


def csr_rows(m: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows [start, stop) as views of `m`'s arrays (scipy's slicing copies them)."""
    p0, p1 = int(m.indptr[start]), int(m.indptr[stop])
    return csr_view(m.data[p0:p1], m.indices[p0:p1], m.indptr[start : stop + 1] - p0, (stop - start, m.shape[1]))


def csr_topk(
    m: sp.csr_matrix, k: int, *, exclude_col_offset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top `k` positive entries per row, best first (ties: lower column first).

    Returns (indices int32, scores float32), both (rows, k); missing slots are -1 / 0.
    `exclude_col_offset=o` drops column `row + o` (the diagonal of a row block starting at o).
    """
    n_rows = m.shape[0]
    out_idx = np.full((n_rows, k), -1, dtype=np.int32)
    out_val = np.zeros((n_rows, k), dtype=np.float32)
    if k == 0 or m.nnz == 0:
        return out_idx, out_val
    m = _prefilter(m if type(m) is sp.csr_matrix else sp.csr_matrix(m), k + 2)  # (a new one would prune a view)
    lengths = np.diff(m.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_len = lengths[order]
    # Power-of-two length classes: a chunk never pads a row to more than twice its length.
    class_end = np.searchsorted(sorted_len, 2 ** np.ceil(np.log2(sorted_len)), side="right")
    start = 0
    while start < order.size:
        # Largest chunk in this class whose padded size (rows x widest row) fits the budget.
        window = sorted_len[start : min(int(class_end[start]), start + _PAD_BUDGET)]
        cost = np.arange(1, window.size + 1) * window
        stop = start + max(1, int(np.searchsorted(cost, _PAD_BUDGET, side="right")))
        rows = order[start:stop]
        own = None if exclude_col_offset is None else rows + exclude_col_offset
        idx, val = _topk_rows(m[rows], k, own)
        out_idx[rows], out_val[rows] = idx, val
        start = stop
    return out_idx, out_val


def _padded(sub: sp.csr_matrix, width: int) -> np.ndarray:
    """Row i's values at columns 0..len_i-1, zeros after (values are positive similarities)."""
    lens = np.diff(sub.indptr)
    pos = np.arange(sub.nnz, dtype=np.int32) - np.repeat(sub.indptr[:-1], lens).astype(np.int32)
    return sp.csr_matrix((sub.data, pos, sub.indptr), shape=(sub.shape[0], width)).toarray()


def _rank(vals: np.ndarray, cols: np.ndarray, own: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort candidates best first (ties by column), drop `own` columns and non-positive values."""
    if own is not None:
        vals = np.where(cols == own[:, None], 0.0, vals)
    vals = np.where((cols >= 0) & (vals > 0), vals, 0.0)  # also turns -0.0 and NaN into +0.0
    if vals.dtype == np.float32 and cols.size and cols.max() < 2**32 - 1:
        # One uint64 key per entry, sorted once (~3x faster than lexsort on two keys): the bits of a
        # non-negative float32 order like its value, so their complement sorts it descending, and
        # the column breaks ties ascending. Zeros (not candidates) may order differently; they are dropped.
        key = (~vals.view(np.uint32)).astype(np.uint64) << np.uint64(32)
        key |= cols.astype(np.uint32)
        srt = np.argsort(key, axis=1)
    else:
        srt = np.lexsort((cols, -vals), axis=1)
    vals = np.take_along_axis(vals, srt, axis=1)[:, :k]
    cols = np.take_along_axis(cols, srt, axis=1)[:, :k]
    valid = vals > 0
    return np.where(valid, cols, -1).astype(np.int32), np.where(valid, vals, 0.0).astype(np.float32)


def _topk_rows(sub: sp.csr_matrix, k: int, own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    lens = np.diff(sub.indptr)
    width = int(lens.max())
    vals = _padded(sub, width)
    # k candidates, one more in case the row's own column is among them, one more to see ties.
    kk = k + 2 if own is not None else k + 1
    if width <= kk:
        cols = _padded_cols(sub, width)
        idx, val = _rank(vals, cols, own, k)
        return _pad_to(idx, val, k)
    part = np.argpartition(vals, width - kk, axis=1)[:, width - kk :]
    cand_vals = np.take_along_axis(vals, part, axis=1)
    inside = part < lens[:, None]  # positions past a row's end are padding
    cand_cols = np.where(inside, sub.indices[sub.indptr[:-1, None] + np.minimum(part, lens[:, None] - 1)], -1)
    idx, val = _rank(cand_vals, cand_cols, own, k + 1)
    # A tie straddles the k-th place when the next candidate scores the same: equal entries
    # outside the candidates may have lower columns, so rank those rows over all their entries.
    tied = (val[:, k] > 0) & (val[:, k] == val[:, k - 1])
    if tied.any():
        t = np.flatnonzero(tied)
        full_idx, full_val = _rank(vals[t], _padded_cols(sub[t], width), None if own is None else own[t], k)
        idx[t, :k], val[t, :k] = full_idx, full_val
    return idx[:, :k], val[:, :k]


def _padded_cols(sub: sp.csr_matrix, width: int) -> np.ndarray:
    lens = np.diff(sub.indptr)
    cols = np.full((sub.shape[0], width), -1, dtype=np.int64)
    pos = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], lens)
    cols[np.repeat(np.arange(sub.shape[0]), lens), pos] = sub.indices
    return cols


def _pad_to(idx: np.ndarray, val: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if idx.shape[1] >= k:
        return idx[:, :k], val[:, :k]
    extra = k - idx.shape[1]
    return (np.pad(idx, ((0, 0), (0, extra)), constant_values=-1), np.pad(val, ((0, 0), (0, extra))))

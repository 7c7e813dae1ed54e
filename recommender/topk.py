"""Top-K per row of a CSR matrix without a Python loop per row.

Rows are grouped by length and copied into a dense padded block, so one `argpartition`
call handles many rows. Sorting rows by length keeps padding (wasted work) small.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["csr_topk"]

_PAD_BUDGET = 1 << 21  # elements per padded block (8 MiB of float32)


def csr_topk(
    m: sp.csr_matrix, k: int, *, exclude_col_offset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top `k` columns per row, best first (ties: lower column first).

    Returns (indices int32, scores float32), both (rows, k); missing slots are -1 / 0.
    `exclude_col_offset=o` drops column `row + o` (the diagonal of a row block starting at o).
    """
    n_rows = m.shape[0]
    out_idx = np.full((n_rows, k), -1, dtype=np.int32)
    out_val = np.zeros((n_rows, k), dtype=np.float32)
    if k == 0 or m.nnz == 0:
        return out_idx, out_val
    indptr, indices, data = m.indptr, m.indices, m.data
    lengths = np.diff(indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_len = lengths[order]
    start = 0
    while start < order.size:
        # Largest chunk whose padded size (rows x widest row) stays within the budget.
        window = sorted_len[start : start + _PAD_BUDGET]
        cost = np.arange(1, window.size + 1) * window
        stop = start + max(1, int(np.searchsorted(cost, _PAD_BUDGET, side="right")))
        rows = order[start:stop]
        width = int(sorted_len[stop - 1])
        _topk_block(rows, indptr, indices, data, lengths, width, k, exclude_col_offset, out_idx, out_val)
        start = stop
    return out_idx, out_val


def _topk_block(
    rows: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    lengths: np.ndarray,
    width: int,
    k: int,
    exclude_col_offset: int | None,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    lens = lengths[rows]
    total = int(lens.sum())
    ends = np.cumsum(lens)
    offs = np.arange(total) - np.repeat(ends - lens, lens)
    src = np.repeat(indptr[rows], lens) + offs
    dst = np.repeat(np.arange(rows.size) * width, lens) + offs
    flat_vals = np.full(rows.size * width, -np.inf, dtype=np.float32)
    flat_cols = np.full(rows.size * width, -1, dtype=np.int32)
    flat_vals[dst] = data[src]
    flat_cols[dst] = indices[src]
    vals = flat_vals.reshape(rows.size, width)
    cols = flat_cols.reshape(rows.size, width)
    if exclude_col_offset is not None:
        vals[cols == (rows + exclude_col_offset)[:, None]] = -np.inf
    if width > k:
        part = np.argpartition(-vals, k - 1, axis=1)[:, :k]
        top_vals = np.take_along_axis(vals, part, axis=1)
        top_cols = np.take_along_axis(cols, part, axis=1)
        # A tie straddling the k-th place was cut arbitrarily: sort those rows fully instead.
        kth = top_vals.min(axis=1, keepdims=True)
        tied = ((vals == kth).sum(axis=1) > (top_vals == kth).sum(axis=1)) & np.isfinite(kth[:, 0])
        if tied.any():
            full = np.lexsort((cols[tied], -vals[tied]), axis=1)[:, :k]
            top_vals[tied] = np.take_along_axis(vals[tied], full, axis=1)
            top_cols[tied] = np.take_along_axis(cols[tied], full, axis=1)
        vals, cols = top_vals, top_cols
    # Best first; ties broken by column so results do not depend on partition order.
    srt = np.lexsort((cols, -vals), axis=1)
    vals = np.take_along_axis(vals, srt, axis=1)
    cols = np.take_along_axis(cols, srt, axis=1)
    keep = min(k, width)
    valid = np.isfinite(vals[:, :keep]) & (vals[:, :keep] > 0)
    out_idx[rows, :keep] = np.where(valid, cols[:, :keep], -1)
    out_val[rows, :keep] = np.where(valid, vals[:, :keep], 0.0)

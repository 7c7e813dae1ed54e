"""Exact top-K neighbours of every book from half of the book x book product.

The similarity S = WᵀW is symmetric. Books are cut into G superblocks processed in order;
rows of superblock s are multiplied only against columns before its end e_s (W[:, :e_s], one
column-sliced copy per superblock), which is about (G+1)/2G of the full product's work.

Each row then sees every column before e_s. The rest of row j (columns at or after e_s) is
exactly what later rows i compute as S[i, j] for columns j in an earlier superblock: those
entries are passed back to row j and merged into its running top-K. Before merging, each is
compared with row j's current K-th score, a lower bound of its final one, so almost all are
dropped in one vectorised pass; ties with the bound are kept, so the result stays exact,
ties included (lower book index first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from recommender.topk import csr_topk

__all__ = ["block_product", "top_k_neighbours"]

BLOCK_WORK = 3_000_000  # multiply-adds per block: bounds a block product's memory (~24 MB)
SUPERBLOCKS = 4  # tuned on the standard data: more cut product work but cost more in merges and barriers

ProgressFn = Callable[[int, int], None]


def block_product(a: sp.csr_matrix, b: sp.csr_matrix, max_nnz: int) -> sp.csr_matrix:
    """a @ b given an upper bound on the result's non-zeros.

    scipy's `@` first runs a symbolic pass only to count the result's non-zeros (a third of
    the product's time here); the caller already knows a bound (the multiply-add count), so
    this calls the numeric kernel directly. Falls back to `@` if scipy's internals move.
    """
    try:
        from scipy.sparse._sparsetools import csr_matmat
    except ImportError:  # pragma: no cover - scipy internals changed; correct, just slower
        return sp.csr_matrix(a @ b)
    if max_nnz >= np.iinfo(np.int32).max or a.shape[0] == 0:
        return sp.csr_matrix(a @ b)
    idx = np.int32
    indptr = np.empty(a.shape[0] + 1, dtype=idx)
    indices = np.empty(max(max_nnz, 1), dtype=idx)
    data = np.empty(max(max_nnz, 1), dtype=np.result_type(a.dtype, b.dtype))
    csr_matmat(a.shape[0], b.shape[1], a.indptr.astype(idx, copy=False), a.indices.astype(idx, copy=False),
               a.data, b.indptr.astype(idx, copy=False), b.indices.astype(idx, copy=False), b.data,
               indptr, indices, data)  # fmt: skip
    nnz = int(indptr[-1])
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=(a.shape[0], b.shape[1]))


def _split(work: np.ndarray, start: int, stop: int, budget: float) -> list[tuple[int, int]]:
    """Consecutive row ranges of [start, stop) with about `budget` work each (work[0] is row start)."""
    cum = np.cumsum(work[: stop - start])
    blocks, a = [], 0
    while a < cum.size:
        base = cum[a - 1] if a else 0.0
        b = min(cum.size, max(a + 1, int(np.searchsorted(cum, base + budget, side="right"))))
        blocks.append((start + a, start + b))
        a = b
    return blocks


def _merge(idx: np.ndarray, val: np.ndarray, handed: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Exact top-K over each row's current K and the entries handed to it (no pair occurs twice)."""
    if not handed:
        return
    rows = np.concatenate([h[0] for h in handed])
    if rows.size == 0:
        return
    targets = np.unique(rows)
    local = np.searchsorted(targets, rows)
    old_idx, old_val = idx[targets], val[targets]
    valid = old_idx >= 0
    m = sp.csr_matrix(
        (np.concatenate([old_val[valid], *[h[2] for h in handed]]),
         (np.concatenate([np.repeat(np.arange(targets.size), valid.sum(axis=1)), local]),
          np.concatenate([old_idx[valid], *[h[1] for h in handed]]))),
        shape=(targets.size, idx.shape[0]),
    )  # fmt: skip
    idx[targets], val[targets] = csr_topk(m, idx.shape[1])


def top_k_neighbours(
    w: sp.csc_matrix, k: int, *, threads: int = 2, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of WᵀW per book, excluding the book itself: (indices int32, scores float32)."""
    n = w.shape[1]
    wt = w.T.tocsr()  # books x customers (reinterprets the CSC arrays)
    wr = w.tocsr()  # customers x books, column indices sorted
    bin_t = sp.csr_matrix((np.ones(wt.nnz, dtype=np.float32), wt.indices, wt.indptr), shape=wt.shape)
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.zeros((n, k), dtype=np.float32)
    cuts = np.linspace(0, n, min(SUPERBLOCKS, max(n, 1)) + 1).astype(int)
    plans = [(int(s0), int(e)) for s0, e in pairwise(cuts) if e > s0]
    total = len(plans)
    # Entries handed back to rows of earlier superblocks: (row, col, value) arrays.
    handed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lock = threading.Lock()

    def run(s0: int, wr_e: sp.csr_matrix, work: np.ndarray, block: tuple[int, int]) -> None:
        a, b = block
        prod = block_product(wt[a:b], wr_e, int(np.ceil(work[a - s0 : b - s0].sum())))
        idx[a:b], val[a:b] = csr_topk(prod, k, exclude_col_offset=a)
        if s0 == 0:
            return
        # Columns of earlier superblocks: S[i, j] = S[j, i] belongs to row j as well. Row j's
        # own K-th score so far bounds its final one from below: anything lower never gets in.
        cols, vals = prod.indices, prod.data
        bound = np.full(n, np.inf, dtype=np.float32)  # columns not handed back never pass
        bound[:s0] = np.where(idx[:s0, k - 1] >= 0, val[:s0, k - 1], np.float32(np.finfo(np.float32).tiny))
        send = np.flatnonzero(vals >= bound[cols])
        rows = np.searchsorted(prod.indptr, send, side="right").astype(np.int32) - 1 + a
        with lock:
            handed.append((cols[send], rows, vals[send]))

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for done, (s0, e) in enumerate(plans, start=1):
            wr_e = wr[:, :e]  # columns before the superblock's end (sorted indices: a prefix per row)
            user_deg = np.diff(wr_e.indptr).astype(np.float32)
            work = np.asarray(bin_t[s0:e] @ user_deg, dtype=np.float64)  # >= each row's non-zeros
            blocks = _split(work, s0, e, BLOCK_WORK)
            list(pool.map(lambda blk, s0=s0, wr_e=wr_e, work=work: run(s0, wr_e, work, blk), blocks))
            # At the barrier (workers idle): fold what was handed back into the earlier rows, which
            # also raises their K-th scores, so later superblocks hand back less.
            _merge(idx, val, handed)
            handed.clear()
            if progress:
                progress(done, total)
    return idx, val

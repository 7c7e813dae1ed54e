"""Exact top-K neighbours of every book from half of the book x book product.

The similarity S = WᵀW is symmetric. Books are cut into G superblocks processed in order;
rows of superblock s are multiplied only against columns before its end e_s (W[:, :e_s], read
in place: see `top_k_neighbours`), which is about (G+1)/2G of the full product's work.

Each row then sees every column before e_s. The rest of row j (columns at or after e_s) is
exactly what later rows i compute as S[i, j] for columns j in an earlier superblock: those
entries are passed back to row j and merged into its running top-K. Before merging, each is
compared with row j's current K-th score, a lower bound of its final one, so almost all are
dropped in one vectorised pass; ties with the bound are kept, so the result stays exact,
ties included (lower book index first).

The same staircase computes one shard of a distributed fit (`rows=(a, b)`, see
`top_k_neighbours` and `recommender.shards`): a shard's books go through it over their own
columns only, and the pairs with earlier shards' books are computed from the earlier books'
side, which hands back to the shard's fewer rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import partial
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from recommender.topk import csr_from_triples, csr_rows, csr_topk, csr_view

__all__ = ["block_product", "top_k_neighbours"]

BLOCK_WORK = 3_000_000  # multiply-adds per block: bounds a block product's memory (~24 MB)
SUPERBLOCKS = 4  # 8 cut the product by another 10%, but not a shard's cross pairs: see docs/benchmarks.md

ProgressFn = Callable[[int, int], None]
_Handed = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (row, col, value) arrays handed back to rows
_BlockFn = Callable[[tuple[int, int]], None]


class _Scratch(threading.local):
    """Each thread's output buffers for `block_product`, reused from block to block: a fresh
    ~24 MB pair per block costs the kernel zeroing new pages every time (system CPU time
    that grows with the number of worker processes)."""

    indices: np.ndarray | None = None
    data: np.ndarray | None = None


def _buffer(scratch: _Scratch | None, name: str, size: int, dtype: type | np.dtype) -> np.ndarray:
    if scratch is None:
        return np.empty(size, dtype=dtype)
    buf = getattr(scratch, name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype=dtype)
        setattr(scratch, name, buf)
    return buf[:size]


def block_product(a: sp.csr_matrix, b: sp.csr_matrix, max_nnz: int, scratch: _Scratch | None = None) -> sp.csr_matrix:
    """a @ b given an upper bound on the result's non-zeros.

    scipy's `@` first runs a symbolic pass only to count the result's non-zeros (a third of
    the product's time here); the caller already knows a bound (the multiply-add count), so
    this calls the numeric kernel directly. Falls back to `@` if scipy's internals move.
    With `scratch`, the result lives in this thread's buffers: valid until its next call.
    """
    try:
        from scipy.sparse._sparsetools import csr_matmat
    except ImportError:  # pragma: no cover - scipy internals changed; correct, just slower
        return sp.csr_matrix(a @ b)
    if max(max_nnz, a.shape[1]) >= np.iinfo(np.int32).max or a.shape[0] == 0:
        return sp.csr_matrix(a @ b)
    idx = np.int32
    indptr = np.empty(a.shape[0] + 1, dtype=idx)
    indices = _buffer(scratch, "indices", max(max_nnz, 1), idx)
    data = _buffer(scratch, "data", max(max_nnz, 1), np.result_type(a.dtype, b.dtype))
    csr_matmat(a.shape[0], b.shape[1], a.indptr.astype(idx, copy=False), a.indices.astype(idx, copy=False),
               a.data, b.indptr.astype(idx, copy=False), b.indices.astype(idx, copy=False), b.data,
               indptr, indices, data)  # fmt: skip
    nnz = int(indptr[-1])
    return csr_view(data[:nnz], indices[:nnz], indptr, (a.shape[0], b.shape[1]))


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
    present = np.zeros(idx.shape[0], dtype=bool)
    present[rows] = True
    targets = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[rows]
    old_idx, old_val = idx[targets], val[targets]
    valid = old_idx >= 0
    m = csr_from_triples(
        np.concatenate([np.repeat(np.arange(targets.size), valid.sum(axis=1)), local]),
        np.concatenate([old_idx[valid], *[h[1] for h in handed]]),
        np.concatenate([old_val[valid], *[h[2] for h in handed]]),
        (targets.size, idx.shape[0]),
    )
    idx[targets], val[targets] = csr_topk(m, idx.shape[1])


def _segments(blocks: list[tuple[int, int]], threads: int) -> list[list[tuple[int, int]]]:
    """Blocks between merges: one wave of `threads` blocks, then doubling runs of waves.

    In a shard's phase 2 the receiving rows start with bounds from their own columns only;
    merging early and then ever less often tightens them quickly, so little is handed back,
    for a few more barriers (log2 of the block count).
    """
    out, start, waves = [], 0, 1
    while start < len(blocks):
        stop = start + waves * max(1, threads)
        out.append(blocks[start:stop])
        start, waves = stop, waves * 2
    return out


def top_k_neighbours(
    w: sp.csc_matrix,
    k: int,
    *,
    threads: int = 2,
    progress: ProgressFn | None = None,
    rows: tuple[int, int] | None = None,
    wr: sp.csr_matrix | None = None,
    pattern: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of WᵀW per book, excluding the book itself: (indices int32, scores float32).

    `rows=(a, b)` computes one shard of the books and returns rows [0, b):
    - rows [a, b), the shard's own books: their top-k over columns [a, b), from the
      superblock staircase over that square (phase 1) plus what phase 2 hands back, so in
      the end over columns [0, b);
    - rows [0, a), earlier shards' books: the exact top-k of their entries in columns [a, b),
      computed as rows of Wᵀ[:a] W[:, a:b] (phase 2). That block is the same product as the
      shard's own rows against columns [0, a), seen the other way round, so the side with
      fewer rows (the shard's own) is the one that receives hand-backs.
    The top-k of the union of every shard's list for a row is its exact answer (see
    `recommender.shards`); rows=(0, n) is the whole single-process fit.

    Callers that have them pass `wr` = w[:, a:b] as CSR (customers x the shard's books) and
    `pattern` = the binary books x customers matrix with w's structure (rows [0, b) at least),
    which saves converting w here (`model.Weights` builds both from the purchases directly).
    """
    n = w.shape[1]
    a, b = (0, n) if rows is None else rows
    if not 0 <= a <= b <= n:
        raise ValueError(f"rows {rows} outside 0..{n}")
    idx = np.full((b, k), -1, dtype=np.int32)
    val = np.zeros((b, k), dtype=np.float32)
    if b == a:
        return idx, val
    wt = w.T.tocsr()  # books x customers (reinterprets the CSC arrays)
    wr_ab = w[:, a:b].tocsr() if wr is None else wr  # customers x the shard's books, column indices sorted
    bin_t = (sp.csr_matrix((np.ones(wt.nnz, dtype=np.float32), wt.indices, wt.indptr), shape=wt.shape)
             if pattern is None else pattern)  # fmt: skip
    cuts = np.unique(np.linspace(a, b, min(SUPERBLOCKS, b - a) + 1).astype(int))
    plans = [(int(s0), int(e)) for s0, e in pairwise(cuts)]
    total = len(plans) + (a > 0)
    lock = threading.Lock()
    scratch = _Scratch()  # a block's product is consumed before the same thread's next block
    tiny = np.float32(np.finfo(np.float32).tiny)

    def hand_back(prod: sp.csr_matrix, lo: int, targets: slice, handed: _Handed) -> None:
        """Entries of block rows lo.. whose column (offset by a) is a row in `targets`: S[i, j]
        = S[j, i] belongs to row j too. Row j's K-th score so far bounds its final one from
        below, so anything lower never gets in (ties pass: the result stays exact). A merge may
        be raising those scores meanwhile: an older one is still a lower bound."""
        cols, vals = prod.indices, prod.data
        bound = np.full(prod.shape[1], np.inf, dtype=np.float32)  # columns not handed back never pass
        kth = idx[targets, k - 1]
        bound[targets.start - a : targets.stop - a] = np.where(kth >= 0, val[targets, k - 1], tiny)
        send = np.flatnonzero(vals >= bound[cols])
        rows_ = np.searchsorted(prod.indptr, send, side="right").astype(np.int32) - 1 + lo
        with lock:
            handed.append((cols[send] + np.int32(a), rows_, vals[send]))

    def store(lo: int, hi: int, found: tuple[np.ndarray, np.ndarray]) -> None:
        i, v = found
        idx[lo:hi], val[lo:hi] = (np.where(i >= 0, i + np.int32(a), -1) if a else i), v

    def own(s0: int, wr_e: sp.csr_matrix, work: np.ndarray, handed: _Handed, block: tuple[int, int]) -> None:
        lo, hi = block  # phase 1: rows of the shard against its columns [a, e)
        prod = block_product(csr_rows(wt2, lo - a, hi - a), wr_e, int(np.ceil(work[lo - s0 : hi - s0].sum())), scratch)
        store(lo, hi, csr_topk(prod, k, exclude_col_offset=lo - a))
        if s0 > a:
            hand_back(prod, lo, slice(a, s0), handed)

    def foreign(wr_ab: sp.csr_matrix, work: np.ndarray, handed: _Handed, block: tuple[int, int]) -> None:
        lo, hi = block  # phase 2: earlier shards' rows against the shard's columns [a, b)
        prod = block_product(csr_rows(wt, lo, hi), wr_ab, int(np.ceil(work[lo:hi].sum())), scratch)
        store(lo, hi, csr_topk(prod, k))
        hand_back(prod, lo, slice(a, b), handed)

    # Phase 1 multiplies by the shard's columns before each superblock's end e. Rather than copy
    # them out of wr_ab per superblock, every customer's row is split at e into two rows of the
    # same arrays, 2u (columns before e) and 2u + 1 (the rest): only the row pointer is new. The
    # left operand (`wt2`, rows [a, b) of wt) names customer u as column 2u, so only the first
    # halves are read.
    n_cust, n_cols = wr_ab.shape
    pa, pb = int(wt.indptr[a]), int(wt.indptr[b])
    wide = 2 * n_cust >= np.iinfo(np.int32).max  # block_product then multiplies through scipy
    doubled = np.multiply(wt.indices[pa:pb], 2, dtype=np.int64 if wide else wt.indices.dtype)
    wt2 = csr_view(wt.data[pa:pb], doubled, wt.indptr[a : b + 1] - pa, (b - a, 2 * n_cust))
    # Where each customer's columns reach each superblock's end: count the entries per
    # (customer, superblock of their column), in one pass for all superblocks.
    slot = np.repeat(np.arange(n_cust, dtype=np.int64) * len(plans), np.diff(wr_ab.indptr))
    slot += np.searchsorted(cuts[1:-1] - a, wr_ab.indices, side="right")
    starts = wr_ab.indptr[:-1].astype(np.int64)
    ends = starts[:, None] + np.cumsum(np.bincount(slot, minlength=n_cust * len(plans)).reshape(n_cust, -1), axis=1)
    del slot

    def superblock(s: int, s0: int, e: int, handed: _Handed) -> tuple[_BlockFn, list[tuple[int, int]]]:
        """Superblock s = [s0, e)'s block function and its blocks."""
        indptr = np.empty(2 * n_cust + 1, dtype=wr_ab.indptr.dtype)
        indptr[0:-1:2], indptr[1::2], indptr[-1] = starts, ends[:, s], wr_ab.nnz
        wr_e = csr_view(wr_ab.data, wr_ab.indices, indptr, (2 * n_cust, n_cols))
        user_deg = (ends[:, s] - starts).astype(np.float32)
        work = np.asarray(csr_rows(bin_t, s0, e) @ user_deg, dtype=np.float64)  # >= each row's non-zeros
        return partial(own, s0, wr_e, work, handed), _split(work, s0, e, BLOCK_WORK)

    # Phase 1 without barriers: while the workers compute superblock s, this thread prepares
    # s + 1 and queues its blocks; the worker that finishes s's last block merges what s's
    # blocks handed back. Merges run one at a time, in superblock order: s's hand-backs go to
    # rows that s - 1's blocks store.
    merged = [threading.Event() for _ in plans]
    left = [0] * len(plans)
    handed: list[_Handed] = [[] for _ in plans]

    def run(s: int, fn: Callable[[tuple[int, int]], None], block: tuple[int, int]) -> None:
        try:
            fn(block)
        finally:
            with lock:
                left[s] -= 1
                last = left[s] == 0
            if last:
                try:
                    if s:
                        merged[s - 1].wait()
                    _merge(idx, val, handed[s])
                    handed[s].clear()
                finally:
                    merged[s].set()

    # One thread runs inline: a worker pod given one CPU pays no thread hand-offs.
    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        queued = []
        for s, (s0, e) in enumerate(plans):
            fn, blocks = superblock(s, s0, e, handed[s])
            left[s] = len(blocks)
            for block in blocks:
                if pool:
                    queued.append(pool.submit(run, s, fn, block))
                else:
                    run(s, fn, block)
        for s in range(len(plans)):
            merged[s].wait()
            if progress:
                progress(s + 1, total)
        for future in queued:
            future.result()  # re-raises a block's error
        if a:
            # Phase 2 with barriers: the shard's own rows start with bounds from their own columns
            # only; merging early, then ever less often, tightens them quickly (see `_segments`).
            work = np.asarray(csr_rows(bin_t, 0, a) @ np.diff(wr_ab.indptr).astype(np.float32), dtype=np.float64)
            rest: _Handed = []
            fn = partial(foreign, wr_ab, work, rest)
            for segment in _segments(_split(work, 0, a, BLOCK_WORK), threads):
                list(pool.map(fn, segment) if pool else map(fn, segment))
                _merge(idx, val, rest)
                rest.clear()
            if progress:
                progress(total, total)
    return idx, val

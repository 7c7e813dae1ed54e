"""EASE: a closed-form linear item-item model, served as a top-K neighbour list per book.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019): with X the binary
customer x book matrix and G = XᵀX, the item-item weights minimising ‖X - XB‖² + λ‖B‖² with
diag(B) = 0 are

    P = (G + λI)⁻¹,    B = I - P · diag(1/diag(P)),   i.e.  B[i, j] = -P[i, j] / P[j, j]  (i ≠ j).

A customer's score for book j is Σ_i x_i B[i, j]: the same "sum the neighbour weights of the
basket" that `ItemKNN.recommend` computes, so row i of B, cut to its K largest positive weights,
is an ordinary neighbour list and serving does not change. Negative weights (books that
substitute rather than complement) are dropped by the cut, like every non-positive similarity.

Cost and memory: G and P are dense books x books float64 matrices, factored and inverted in
place (LAPACK potrf + potri, about n³ flops), so a fit holds about `ease_bytes(n)` = 16·n² bytes
(the n² matrix and the row-block temporaries and LAPACK's workspace, bounded by another n²).
`ease_skip_reason` keeps EASE out of a selection whose catalogue would not fit the budget.

Shards: the inverse is the cost, and every row of B needs all of P, so a shard computes whole
EASE fits (one per split and λ, round robin over the shards, `recommender.shards`) instead of
every shard repeating the inverse for its own rows. A fit computed by a worker is the same
function of the same matrix as in one process, so the merged model is the same bytes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from recommender.errors import InputError
from recommender.model import binary
from recommender.topk import csr_topk

__all__ = [
    "DEFAULT_EASE_MEMORY_MIB",
    "EASE_BYTES_PER_CELL",
    "ease_bytes",
    "ease_skip_reason",
    "ease_top_k",
    "ease_weights",
    "inverse_gram",
]

EASE_BYTES_PER_CELL = 16  # 8 bytes per float64 cell of P, twice: P plus the row blocks and workspace
# 16·n² bytes <= 1 GiB: up to 8,192 books. Half of a 2Gi training pod (the platform's default
# recommenderTrainingMemory); the other half holds the data and the item-kNN fits.
DEFAULT_EASE_MEMORY_MIB = 1024
_ROW_BLOCK_CELLS = 1 << 22  # cells of B computed at once (32 MiB of float64): bounds the temporaries


def ease_bytes(n_items: int) -> int:
    """Memory an EASE fit of `n_items` books needs beyond the data: 16 · n² bytes."""
    return EASE_BYTES_PER_CELL * n_items * n_items


def ease_skip_reason(n_items: int, budget_mib: int) -> str | None:
    """Why EASE stays out of the selection for this catalogue (None: it fits the budget)."""
    need = ease_bytes(n_items)
    if need <= budget_mib * 2**20:
        return None
    return (f"EASE skipped: {n_items} books need {EASE_BYTES_PER_CELL}·n² = {need / 2**20:,.0f} MiB for the dense "
            f"books x books matrix, over the --ease-memory-mib budget of {budget_mib} MiB")  # fmt: skip


def inverse_gram(user_items: sp.spmatrix, l2: float) -> np.ndarray:
    """The lower triangle of P = (XᵀX + λI)⁻¹ as a dense float64 array (upper triangle: garbage).

    The Gram matrix is sparse (books x books co-purchase counts) and made dense once; Cholesky
    factor and inverse run in place on it (the array is F-ordered, as LAPACK wants).
    """
    if not l2 > 0:
        raise InputError(f"--ease-l2-grid values must be > 0, got {l2}")
    x = binary(user_items).astype(np.float64)  # any non-zero as one purchase
    gram = (x.T @ x).tocsc()  # books x books, symmetric
    n = gram.shape[0]
    dense = gram.toarray(order="F")
    dense[np.diag_indices(n)] += l2
    factor, info = lapack.dpotrf(dense, lower=1, overwrite_a=1, clean=0)
    if info == 0:
        factor, info = lapack.dpotri(factor, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover - G + λI with λ > 0 is positive definite
        raise InputError(f"EASE: the Gram matrix plus λ={l2:g} is not positive definite (LAPACK info {info})")
    return factor


def _block(low: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """P[r0:r1, c0:c1] from its lower triangle (P is symmetric)."""
    rows = np.arange(r0, r1)[:, None]
    cols = np.arange(c0, c1)[None, :]
    return np.where(rows >= cols, low[r0:r1, c0:c1], low[c0:c1, r0:r1].T)


def ease_weights(low: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """B[r0:r1, c0:c1] = -P[i, j] / P[j, j], zero on the diagonal (float64)."""
    diag = np.diagonal(low)[c0:c1]
    b = -_block(low, r0, r1, c0, c1) / diag[None, :]
    rows = np.arange(r0, r1)
    on = (rows >= c0) & (rows < c1)
    b[rows[on] - r0, rows[on] - c0] = 0.0
    return b


def _topk_rows(low: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k positive weights of every row of B over all books, a block of rows at a time."""
    n = low.shape[0]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.zeros((n, k), dtype=np.float32)
    step = max(1, _ROW_BLOCK_CELLS // n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        w = ease_weights(low, lo, hi, 0, n).astype(np.float32)
        np.maximum(w, 0.0, out=w)  # only positive weights can be neighbours
        idx[lo:hi], val[lo:hi] = csr_topk(sp.csr_matrix(w), k)
    return idx, val


def ease_top_k(user_items: sp.spmatrix, l2: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k positive weights of each row of EASE's B, the book itself excluded: (indices int32,
    scores float32), both (books, k), -1 / 0 where a book has fewer (ties: lower book first)."""
    n = user_items.shape[1]
    if n == 0:
        return np.full((0, k), -1, dtype=np.int32), np.zeros((0, k), dtype=np.float32)
    # Whole rows over all books: one shard computes an EASE fit whole (`shards.ease_owner`).
    return _topk_rows(inverse_gram(user_items, l2), k)

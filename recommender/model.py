"""Item-to-item co-purchase model in the style of implicit's ItemItemRecommender.

`fit` weights the customer x book matrix for the chosen similarity and hands it to
`knn_fit.top_k_neighbours`, which never forms the full book x book product (see there). The
top-K neighbours of each book are kept as dense (books x K) arrays: compact, fast to load, and
the basis of a sparse similarity matrix for `recommend`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommender.errors import InputError
from recommender.files import write_npz
from recommender.knn_fit import top_k_neighbours
from recommender.topk import csr_rows, csr_topk, csr_view

__all__ = ["MODEL_KINDS", "SIMILARITIES", "ItemKNN", "Weights", "binary"]

SIMILARITIES = ("cosine", "bm25", "tfidf")  # item-kNN weightings of the co-purchase product
MODEL_KINDS = (*SIMILARITIES, "ease")  # plus EASE's closed-form weights (`recommender.ease`)
MODEL_FILE = "model.npz"

ProgressFn = Callable[[int, int], None]


def binary(user_items: sp.spmatrix) -> sp.csr_matrix:
    """Any non-zero as one purchase: canonical float32 CSR of ones. A matrix that already is
    one comes back as it is (shared, never written): the parse cache's copy needs no copy."""
    x = user_items
    if isinstance(x, sp.csr_matrix) and x.dtype == np.float32 and x.has_canonical_format and bool((x.data == 1).all()):
        return x
    x = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


@dataclass(frozen=True)
class Weights:
    """The similarity's weights of binary purchases: w[u, i] = num[u] / den[i].

    The dot products of two books' weight columns are their similarity. Each weight depends
    only on its customer and its book, so it is the same float32 whichever layout computes it:
    the book-major rows (`by_book`) and the customer-major rows (`by_customer`) share the
    binary matrices' index arrays and need no conversion of one into the other.
    """

    num: np.ndarray | None  # float32 per customer; None: 1 (cosine)
    den: np.ndarray  # float32 per book

    @classmethod
    def of(cls, x: sp.csr_matrix, xt: sp.csr_matrix, similarity: str, k1: float, b: float) -> Weights:
        """`x` binary customers x books, `xt` the same as books x customers."""
        n_items = x.shape[1]
        per_book = np.diff(xt.indptr)
        num = None
        if similarity in ("bm25", "tfidf"):
            # idf over customers: a customer who buys everything says little about any pair.
            user_deg = np.diff(x.indptr).astype(np.float64)
            num = np.maximum((np.log(max(n_items, 1)) - np.log1p(user_deg)).astype(np.float32), 1e-3)
        if similarity == "bm25":
            # Damp popular books: BM25 length normalisation over each book's buyer count.
            item_deg = per_book.astype(np.float32)
            avg = float(item_deg.mean()) if item_deg.size else 1.0
            length_norm = (1 - b) + b * item_deg / max(avg, 1e-9)
            assert num is not None
            return cls(num * (k1 + 1), k1 * length_norm + 1.0)
        if similarity == "cosine":
            # Every weight is 1: a column's sum of squares is its length.
            norms = np.sqrt(per_book.astype(np.float64))
        else:
            # Column L2 norms from a running sum of squares, in book-major order.
            assert num is not None
            sq = np.concatenate(([0.0], np.cumsum(np.square(num[xt.indices], dtype=np.float64))))
            norms = np.sqrt(sq[xt.indptr[1:]] - sq[xt.indptr[:-1]])
        norms[norms == 0] = 1.0
        return cls(num, norms.astype(np.float32))  # divide by it: reciprocals round differently

    def by_book(self, xt: sp.csr_matrix, stop: int | None = None) -> sp.csr_matrix:
        """Weighted books x customers, rows [0, stop) (all by default)."""
        stop = xt.shape[0] if stop is None else stop
        indptr, end = xt.indptr[: stop + 1], int(xt.indptr[stop])
        per_book = np.diff(indptr)
        if self.num is None:
            data = np.repeat(np.float32(1) / self.den[:stop], per_book)
        else:
            data = self.num[xt.indices[:end]] / np.repeat(self.den[:stop], per_book)
        return csr_view(data, xt.indices[:end], indptr, (stop, xt.shape[1]))  # the indices stay shared

    def by_customer(
        self, x: sp.csr_matrix, a: int = 0, b: int | None = None, xt: sp.csr_matrix | None = None
    ) -> sp.csr_matrix:
        """Weighted customers x books [a, b) (all by default), column indices sorted. Given `xt`
        (x as books x customers), a range is transposed from its rows: a pass over the range's
        purchases, where slicing x's columns passes over all of them."""
        b = x.shape[1] if b is None else b
        if (a, b) == (0, x.shape[1]):
            xs = x
        elif xt is not None:
            xs = csr_rows(xt, a, b).T.tocsr()
        else:
            xs = x[:, a:b]
        den = self.den[a:b]
        if self.num is None:
            data = (np.float32(1) / den)[xs.indices]
        else:
            data = np.repeat(self.num, np.diff(xs.indptr)) / den[xs.indices]
        return sp.csr_matrix((data, xs.indices, xs.indptr), shape=xs.shape)


class ItemKNN:
    """Top-K item-item neighbours with a popularity fallback.

    fit(user_items) -> self; similar_items(ids, N) and recommend(user_items, N) -> arrays;
    save(dir) / load(dir) as a plain .npz (no pickle).
    """

    def __init__(
        self,
        *,
        K: int = 20,  # noqa: N803 - implicit's spelling
        similarity: str = "cosine",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        ease_l2: float = 0.0,  # EASE's λ; used (and required > 0) only with similarity="ease"
        num_threads: int = 2,
    ) -> None:
        if K < 1:
            raise InputError(f"--k must be >= 1, got {K}")
        if similarity not in MODEL_KINDS:
            raise InputError(f"--similarity must be one of {', '.join(MODEL_KINDS)}, got {similarity!r}")
        if similarity == "ease" and not ease_l2 > 0:
            raise InputError(f"EASE needs a regularisation λ > 0, got {ease_l2}")
        self.K = K
        self.similarity = similarity
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.ease_l2 = float(ease_l2) if similarity == "ease" else 0.0
        self.num_threads = max(1, num_threads)
        self.neighbours = np.zeros((0, K), dtype=np.int32)
        self.scores = np.zeros((0, K), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.int64)
        self._sim: sp.csr_matrix | None = None

    @property
    def n_items(self) -> int:
        return int(self.popularity.size)

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {"K": self.K, "similarity": self.similarity, "bm25_k1": self.bm25_k1,
                                  "bm25_b": self.bm25_b}  # fmt: skip
        if self.similarity == "ease":  # only then: item-kNN artifacts keep their bytes and version ids
            out["ease_l2"] = self.ease_l2
        return out

    def param_array(self) -> np.ndarray:
        """The numeric parameters as stored in model.npz: K, bm25_k1, bm25_b[, ease_l2]."""
        extra = [self.ease_l2] if self.similarity == "ease" else []
        return np.array([self.K, self.bm25_k1, self.bm25_b, *extra], dtype=np.float64)

    # -- training -------------------------------------------------------------------------

    def weighting(self, x: sp.csr_matrix, xt: sp.csr_matrix) -> Weights:
        """This model's weights of binary purchases `x` (`xt`: the same, books x customers).
        Shards call this too, so every shard weighs alike."""
        return Weights.of(x, xt, self.similarity, self.bm25_k1, self.bm25_b)

    def fit(
        self, user_items: sp.spmatrix, *, progress: ProgressFn | None = None, by_book: sp.csr_matrix | None = None
    ) -> ItemKNN:
        """Learn neighbours from a customer x book matrix (any non-zero counts as a purchase).
        `by_book`: the same purchases as binary books x customers, if the caller has it (the
        parse cache does), saves converting one into the other."""
        x = binary(user_items)  # never writes the caller's matrix
        if self.similarity == "ease":
            from recommender.ease import ease_top_k

            self.popularity = np.bincount(x.indices, minlength=x.shape[1]).astype(np.int64)  # buyers per book
            self.neighbours, self.scores = ease_top_k(x, self.ease_l2, self.K)
            self._sim = None
            return self
        xt = x.tocsc().T if by_book is None else by_book
        weights = self.weighting(x, xt)
        self.popularity = np.diff(xt.indptr).astype(np.int64)  # buyers per book
        self.neighbours, self.scores = top_k_neighbours(
            weights.by_book(xt).T, self.K, threads=self.num_threads, progress=progress,
            wr=weights.by_customer(x), pattern=xt,
        )  # fmt: skip
        self._sim = None
        return self

    # -- inference ------------------------------------------------------------------------

    def similarity_matrix(self) -> sp.csr_matrix:
        """Sparse book x book matrix of the kept neighbours (cached)."""
        if self._sim is None:
            n = self.n_items
            valid = self.neighbours >= 0
            rows = np.repeat(np.arange(n), valid.sum(axis=1))
            self._sim = sp.csr_matrix(
                (self.scores[valid], (rows, self.neighbours[valid])), shape=(n, n), dtype=np.float32
            )
        return self._sim

    def similar_items(self, itemid: int | np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """Neighbours of one book (1-D arrays) or a batch (2-D); -1 pads books with fewer."""
        if N > self.K:
            raise InputError(f"N must be <= K={self.K}, got {N}")
        ids = np.asarray(itemid)
        return self.neighbours[ids, :N], self.scores[ids, :N]

    def popular(self, n: int) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")[:n].astype(np.int32)

    def recommend(
        self, user_items: sp.spmatrix, N: int = 10, *, filter_already_liked_items: bool = True  # noqa: N803
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N books per row of a customer x book matrix, filled up with popular books.

        Scores are summed neighbour similarities; a popularity fill-in has score 0.
        """
        u = sp.csr_matrix(user_items, dtype=np.float32)
        u.data[:] = 1.0
        scores = (u @ self.similarity_matrix()).tocsr()
        if filter_already_liked_items:
            scores = scores - scores.multiply(u)
            scores.eliminate_zeros()
        ids, vals = csr_topk(scores, N)
        return self._fill_popular(ids, vals, u if filter_already_liked_items else None, N)

    def recommend_popular(self, user_items: sp.spmatrix, N: int = 10) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """The popularity baseline: most bought books the customer has not bought."""
        u = sp.csr_matrix(user_items, dtype=np.float32)
        ids = np.full((u.shape[0], N), -1, dtype=np.int32)
        vals = np.zeros((u.shape[0], N), dtype=np.float32)
        return self._fill_popular(ids, vals, u, N)

    def _fill_popular(
        self, ids: np.ndarray, vals: np.ndarray, liked: sp.csr_matrix | None, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        short = np.flatnonzero((ids < 0).any(axis=1))
        if short.size == 0:
            return ids, vals
        ranked = self.popular(self.n_items)
        head = ranked[: n + 64]
        # Vectorised for the common case: the first n+64 popular books minus taken ones suffice.
        taken = np.zeros((short.size, head.size), dtype=bool)
        if liked is not None:
            taken |= liked[short][:, head].toarray() > 0
        present = ids[short]
        taken |= (present[:, :, None] == head[None, None, :]).any(axis=1)
        for j, row in enumerate(short):
            free = np.flatnonzero(ids[row] < 0)
            cand = head[~taken[j]]
            if cand.size < free.size:  # a customer who bought nearly all the head: slow path
                exclude = set(ids[row][ids[row] >= 0].tolist())
                if liked is not None:
                    exclude |= set(liked[row].indices.tolist())
                cand = np.array([i for i in ranked if i not in exclude][: free.size], dtype=np.int32)
            ids[row, free[: cand.size]] = cand[: free.size]
            vals[row, free[: cand.size]] = 0.0
        return ids, vals

    # -- persistence ----------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        return {"neighbours": self.neighbours, "scores": self.scores, "popularity": self.popularity}

    def save(self, directory: Path, extra: dict[str, np.ndarray] | None = None) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MODEL_FILE
        arrays = {**self.arrays(), "params": self.param_array(), "similarity": np.array(self.similarity),
                  **(extra or {})}  # fmt: skip
        write_npz(path, arrays)
        return path

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ItemKNN:
        values = [float(v) for v in arrays["params"]]
        if len(values) not in (3, 4):
            raise InputError(f"model params hold {len(values)} values, expected K, bm25_k1, bm25_b[, ease_l2]")
        k, k1, b, l2 = (*values, 0.0)[:4]
        model = cls(K=int(k), similarity=str(arrays["similarity"]), bm25_k1=k1, bm25_b=b, ease_l2=l2)
        model.neighbours = arrays["neighbours"].astype(np.int32, copy=False)
        model.scores = arrays["scores"].astype(np.float32, copy=False)
        model.popularity = arrays["popularity"].astype(np.int64, copy=False)
        n = model.popularity.size
        if model.neighbours.shape != (n, model.K) or model.scores.shape != (n, model.K):
            raise InputError(f"model arrays disagree: {n} books but neighbours {model.neighbours.shape}")
        if model.neighbours.size and (model.neighbours.max() >= n or model.neighbours.min() < -1):
            raise InputError("model neighbours point outside the catalogue")
        return model

    @classmethod
    def load(cls, directory: Path) -> ItemKNN:
        with np.load(directory / MODEL_FILE, allow_pickle=False) as npz:
            return cls.from_arrays({k: npz[k] for k in npz.files})


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

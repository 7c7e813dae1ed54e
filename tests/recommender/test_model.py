from __future__ import annotations

import itertools
import threading
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender import knn_fit
from recommender.errors import InputError
from recommender.model import SIMILARITIES, ItemKNN, Weights, binary
from tests.recommender.conftest import random_purchases


def _cosine(x: sp.csr_matrix) -> np.ndarray:
    d = x.toarray().astype(np.float64)
    norms = np.linalg.norm(d, axis=0)
    norms[norms == 0] = 1
    d /= norms
    sim = d.T @ d
    np.fill_diagonal(sim, 0)
    return sim


@pytest.mark.parametrize("threads", [1, 2])
def test_cosine_neighbours_match_brute_force(threads: int) -> None:
    x = random_purchases(0, 300, 80, 0.08)
    model = ItemKNN(K=10, num_threads=threads).fit(x)
    sim = _cosine(x)
    for item in range(80):
        got = model.neighbours[item][model.neighbours[item] >= 0]
        np.testing.assert_allclose(model.scores[item][: got.size], sim[item, got], rtol=1e-5)
        # Everything kept scores at least as high as everything left out (ties aside).
        left_out = np.setdiff1d(np.flatnonzero(sim[item] > 0), got)
        if left_out.size and got.size:
            assert sim[item, left_out].max() <= sim[item, got].min() + 1e-6
        assert item not in got


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_every_similarity_fits_and_ranks(similarity: str) -> None:
    x = random_purchases(1, 200, 50, 0.1)
    model = ItemKNN(K=5, similarity=similarity).fit(x)
    assert model.neighbours.shape == (50, 5)
    assert (np.diff(model.scores, axis=1) <= 1e-7).all()  # best first
    assert model.popularity.tolist() == np.asarray((x > 0).sum(axis=0)).ravel().tolist()


def test_bm25_damps_popular_neighbours() -> None:
    """A book bought by everyone is the top cosine... less so under BM25."""
    rng = np.random.default_rng(2)
    dense = rng.random((400, 30)) < 0.05
    dense[:, 0] = rng.random(400) < 0.9  # a bestseller
    x = sp.csr_matrix(dense.astype(np.float32))
    rank_of_bestseller = {}
    for sim in ("cosine", "bm25"):
        m = ItemKNN(K=29, similarity=sim).fit(x)
        ranks = [list(m.neighbours[i]).index(0) for i in range(1, 30) if 0 in m.neighbours[i]]
        rank_of_bestseller[sim] = float(np.mean(ranks))
    assert rank_of_bestseller["bm25"] > rank_of_bestseller["cosine"]


def test_similar_items_one_or_batch() -> None:
    model = ItemKNN(K=4).fit(random_purchases(3, 100, 20, 0.2))
    ids, scores = model.similar_items(3, N=3)
    assert ids.shape == (3,) and scores.shape == (3,)
    ids, scores = model.similar_items(np.array([1, 2]), N=2)
    assert ids.shape == (2, 2)
    with pytest.raises(InputError):
        model.similar_items(1, N=5)


def test_recommend_excludes_bought_and_fills_with_popular() -> None:
    x = random_purchases(4, 200, 40, 0.1)
    model = ItemKNN(K=3).fit(x)
    ids, _ = model.recommend(x[:20], N=15)
    assert (ids >= 0).all()
    for u in range(20):
        bought = set(x[u].indices.tolist())
        assert not bought & set(ids[u].tolist())
        assert len(set(ids[u].tolist())) == 15
    ids, _ = model.recommend_popular(x[:5], N=3)
    order = model.popular(40).tolist()
    for u in range(5):
        expected = [i for i in order if i not in set(x[u].indices.tolist())][:3]
        assert ids[u].tolist() == expected


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = ItemKNN(K=4, similarity="bm25", bm25_k1=2.0).fit(random_purchases(5, 100, 25, 0.1))
    model.save(tmp_path)
    loaded = ItemKNN.load(tmp_path)
    np.testing.assert_array_equal(loaded.neighbours, model.neighbours)
    np.testing.assert_array_equal(loaded.scores, model.scores)
    assert loaded.params() == model.params()


@pytest.mark.parametrize(("kwargs", "message"), [({"K": 0}, "--k"), ({"similarity": "jaccard"}, "--similarity")])
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ItemKNN(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    users=st.integers(1, 60),
    items=st.integers(2, 40),
    density=st.floats(0.02, 0.5),
    k=st.integers(1, 6),
    superblocks=st.integers(1, 9),
    threads=st.integers(1, 2),
)
def test_triangle_fit_is_exact_with_ties(
    seed: int, users: int, items: int, density: float, k: int, superblocks: int, threads: int
) -> None:
    """Half-product fit == brute force: same neighbours, same order, ties by lower book index."""
    x = random_purchases(seed, users, items, density)
    w = sp.csc_matrix(x, dtype=np.float32)
    with patch.object(knn_fit, "SUPERBLOCKS", superblocks), patch.object(knn_fit, "BLOCK_WORK", 7):
        idx, val = knn_fit.top_k_neighbours(w, k, threads=threads)
    sim = (w.T @ w).toarray()
    for i in range(items):
        cand = sorted((-sim[i, j], j) for j in range(items) if j != i and sim[i, j] > 0)[:k]
        assert idx[i, : len(cand)].tolist() == [j for _, j in cand]
        assert (idx[i, len(cand) :] == -1).all()
        np.testing.assert_allclose(val[i, : len(cand)], [-v for v, _ in cand], rtol=1e-6)


def _reference_weights(x: sp.csr_matrix, similarity: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """The similarities' weights as dense float32, written out from their formulas."""
    d = (x.toarray() != 0).astype(np.float32)
    books = d.shape[1]
    if similarity == "cosine":
        return np.where(d > 0, np.float32(1) / np.sqrt(d.sum(axis=0)).clip(1).astype(np.float32), 0)
    idf = np.maximum((np.log(books) - np.log1p(d.sum(axis=1, dtype=np.float64))).astype(np.float32), 1e-3)[:, None]
    if similarity == "tfidf":
        norms = np.sqrt(np.square(d * idf, dtype=np.float64).sum(axis=0))
        return np.where(d > 0, idf / np.where(norms == 0, 1, norms).astype(np.float32), 0)
    deg = d.sum(axis=0, dtype=np.float32)
    return np.where(d > 0, idf * (k1 + 1) / (k1 * ((1 - b) + b * deg / deg.mean()) + 1.0), 0)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_weights_are_the_same_in_both_layouts_and_any_slice(similarity: str) -> None:
    """Book-major and customer-major weights are built apart; they must be the same floats."""
    x = binary(random_purchases(3, 90, 25, 0.15))
    xt = x.tocsc().T
    weights = Weights.of(x, xt, similarity, 1.2, 0.75)
    by_book, by_customer = weights.by_book(xt).toarray().T, weights.by_customer(x).toarray()
    np.testing.assert_array_equal(by_book, by_customer)
    np.testing.assert_allclose(by_book, _reference_weights(x, similarity), rtol=1e-6)
    for a, b in ((0, 25), (0, 7), (7, 19), (19, 25), (12, 12)):
        for got in (weights.by_customer(x, a, b), weights.by_customer(x, a, b, xt)):
            assert got.has_sorted_indices and got.shape == (90, b - a)
            np.testing.assert_array_equal(got.toarray(), by_customer[:, a:b])
        np.testing.assert_array_equal(weights.by_book(xt, b).toarray(), by_book.T[:b])


def test_binary_keeps_a_binary_matrix_and_copies_anything_else() -> None:
    x = binary(random_purchases(4, 30, 10, 0.3))
    assert binary(x) is x  # already canonical ones: shared, not copied
    counts = x.copy()
    counts.data[:] = 3.0
    got = binary(counts)
    assert (got.data == 1).all() and (counts.data == 3).all()  # the caller's matrix is not written


def test_fit_given_the_by_book_matrix_is_the_same() -> None:
    x = random_purchases(5, 200, 50, 0.1)
    want = ItemKNN(K=5).fit(x)
    got = ItemKNN(K=5).fit(x, by_book=binary(x).tocsc().T)
    np.testing.assert_array_equal(got.neighbours, want.neighbours)
    np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("threads", [1, 2])
def test_an_error_in_a_block_reaches_the_caller(threads: int) -> None:
    """Blocks run on workers and merges wait for each other: a failing block must still end the
    fit with its error, never leave it waiting."""
    w = sp.csc_matrix(random_purchases(6, 80, 40, 0.2), dtype=np.float32)
    calls, real = itertools.count(1), knn_fit.csr_topk  # next() is atomic: exactly one call fails

    def failing(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        if next(calls) == 3:
            raise RuntimeError("block failed")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    outcome: list[BaseException] = []

    def fit() -> None:
        try:
            knn_fit.top_k_neighbours(w, 3, threads=threads)
        except RuntimeError as err:
            outcome.append(err)

    with (
        patch.object(knn_fit, "SUPERBLOCKS", 4),
        patch.object(knn_fit, "BLOCK_WORK", 7),
        patch.object(knn_fit, "csr_topk", failing),
    ):
        runner = threading.Thread(target=fit, daemon=True)
        runner.start()
        runner.join(timeout=30)
    assert not runner.is_alive(), "the fit hung after a block failed"
    assert [str(e) for e in outcome] == ["block failed"]

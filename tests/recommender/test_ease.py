"""EASE: the closed form, its memory guard, its place in selection, and shards that merge to the
one-process fit for every candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.artifact import load_artifact, write_artifact
from recommender.data import Interactions, read_orders
from recommender.datacache import DataIdentity
from recommender.ease import ease_bytes, ease_skip_reason, ease_top_k, ease_weights, inverse_gram
from recommender.evaluate import split_last, split_validation
from recommender.model import ItemKNN
from recommender.selection import Candidate, candidate_grid, plan_for, select
from recommender.shards import ShardPlan, compute_shard, merge_shards, shard_path, split_matrices, write_shard
from tests.recommender.conftest import random_purchases


def _closed_form(x: sp.spmatrix, l2: float) -> np.ndarray:
    """Steck (2019), eq. 8, straight from numpy: B = I - P diag(1/diag(P)), P = (XᵀX + λI)⁻¹."""
    dense = np.asarray(sp.csr_matrix(x).toarray() != 0, dtype=np.float64)
    p = np.linalg.inv(dense.T @ dense + l2 * np.eye(dense.shape[1]))
    return np.eye(p.shape[0]) - p / np.diag(p)[None, :]


def _top_k(b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k positive off-diagonal float32 weights per row, ties by lower column: brute force."""
    n = b.shape[0]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.zeros((n, k), dtype=np.float32)
    w = b.astype(np.float32)
    for i in range(n):
        cols = [j for j in range(n) if j != i and w[i, j] > 0]
        best = sorted(cols, key=lambda j: (-w[i, j], j))[:k]
        idx[i, : len(best)], val[i, : len(best)] = best, w[i, best]
    return idx, val


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), users=st.integers(1, 40), items=st.integers(1, 25),
       density=st.floats(0.05, 0.7), l2=st.sampled_from([0.5, 3.0, 50.0]), k=st.integers(1, 6))  # fmt: skip
def test_ease_equals_the_closed_form(seed: int, users: int, items: int, density: float, l2: float, k: int) -> None:
    x = random_purchases(seed, users, items, density)
    want = _closed_form(x, l2)
    got = ease_weights(inverse_gram(x, l2), 0, items, 0, items)
    np.testing.assert_allclose(got, want - np.diag(np.diag(want)), rtol=0, atol=1e-9)
    assert np.abs(np.diag(want)).max() < 1e-9  # the closed form's zero diagonal, which we set exactly
    # Any block of B is the same numbers (shards and row blocks rely on it).
    r0, c0 = items // 3, items // 2
    np.testing.assert_array_equal(ease_weights(inverse_gram(x, l2), r0, items, c0, items), got[r0:, c0:])
    # The served lists: each row's k largest positive weights, bit for bit.
    idx, val = ease_top_k(x, l2, k)
    want_idx, want_val = _top_k(got, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)


def test_ease_model_round_trips_through_an_artifact(tmp_path: Path) -> None:
    x = random_purchases(3, 60, 30, 0.2)
    model = ItemKNN(K=5, similarity="ease", ease_l2=7.0).fit(x)
    assert model.params()["ease_l2"] == 7.0 and model.param_array().tolist() == [5, 1.2, 0.75, 7.0]
    assert "ease_l2" not in ItemKNN(K=5).params() and ItemKNN(K=5).param_array().size == 3  # kNN bytes unchanged
    digest = write_artifact(tmp_path, model, [f"b{i}" for i in range(30)], {})
    loaded = load_artifact(tmp_path, digest).model
    assert (loaded.similarity, loaded.ease_l2, loaded.K) == ("ease", 7.0, 5)
    np.testing.assert_array_equal(loaded.neighbours, model.neighbours)
    # Serving sums neighbour weights of the basket, exactly as for item-kNN.
    ids, _ = loaded.recommend(x[:3], 4)
    assert ids.shape == (3, 4) and (ids >= 0).all()


def test_memory_guard_formula() -> None:
    assert ease_bytes(8192) == 16 * 8192**2 == 1024 * 2**20
    assert ease_skip_reason(8192, 1024) is None
    reason = ease_skip_reason(8193, 1024)
    assert reason is not None and "8193 books need 16·n² = 1,024 MiB" in reason and "1024 MiB" in reason
    assert ease_skip_reason(50_000, 1024) is not None  # the standard 50k-book data: skipped
    assert ease_skip_reason(1, 0) is not None  # a budget of 0 turns EASE off


@pytest.fixture(scope="module")
def data(small_data: Path) -> Interactions:
    return read_orders(small_data / "orders.csv", small_data / "catalog.csv")


def _merged(small_data: Path, data: Interactions, plan: ShardPlan, count: int, out: Path) -> object:
    ident = DataIdentity.of(small_data / "orders.csv", small_data / "catalog.csv")
    for i in range(count):
        write_shard(shard_path(out, ident, plan, i, count), *compute_shard(data, ident, plan, i, count, threads=1))
    return merge_shards(out, ident, plan, count)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_of_every_candidate_merge_to_the_one_process_fit(small_data: Path, data: Interactions,
                                                                tmp_path: Path, count: int) -> None:  # fmt: skip
    """cosine, bm25, tfidf and EASE at two λ, on every split: the same bytes as one process."""
    grid = candidate_grid(Candidate("cosine", 20), ["cosine", "bm25", "tfidf", "ease"], [7, 20], [5.0, 60.0])
    plan = plan_for(grid, 0)
    assert plan.ease_l2 == (5.0, 60.0) and len(plan.ease_fits(data.n_items)) == 6
    merged = _merged(small_data, data, plan, count, tmp_path)
    matrices = split_matrices(data, plan)
    checked = 0
    for split in plan.splits:
        for cand in grid:
            if cand.k != plan.kmax:
                continue
            one = ItemKNN(K=cand.k, similarity=cand.similarity, ease_l2=cand.l2).fit(matrices[split][0])
            got = cand.model(merged, split)
            assert got.neighbours.tobytes() == one.neighbours.tobytes(), (split, cand)
            assert got.scores.tobytes() == one.scores.tobytes(), (split, cand)
            assert got.popularity.tobytes() == one.popularity.tobytes()
            checked += 1
    assert checked == 3 * 5  # 3 splits x (3 similarities + 2 EASE λ)


def test_selection_scores_ease_or_records_why_it_was_skipped(small_data: Path, data: Interactions,
                                                             tmp_path: Path) -> None:  # fmt: skip
    grid = candidate_grid(Candidate("cosine", 20), ["cosine", "ease"], [10, 20], [40.0])
    validation, test = split_validation(data), split_last(data)
    fits = _merged(small_data, data, plan_for(grid, 0), 2, tmp_path / "in")
    _, record = select(fits, grid, validation, test, 10)  # type: ignore[arg-type]
    assert record is not None and record["ease"] == {"l2_grid": [40.0], "memory_budget_mib": 1024, "included": True}
    assert [(r["similarity"], r.get("l2")) for r in record["candidates"]].count(("ease", 40.0)) == 2

    # 400 books need 16·400² bytes = 2.4 MiB: a 2 MiB budget keeps EASE out, and says why.
    small = plan_for(grid, 0, ease_memory_mib=2)
    assert small.ease_fits(data.n_items) == []
    fits = _merged(small_data, data, small, 2, tmp_path / "out")
    winner, record = select(fits, grid, validation, test, 10)  # type: ignore[arg-type]
    assert record is not None and winner.similarity == "cosine"
    assert [r["similarity"] for r in record["candidates"]] == ["cosine", "cosine"]
    assert record["ease"]["included"] is False
    assert record["ease"]["skipped"].startswith("EASE skipped: 400 books need 16·n² = 2 MiB")
    assert "--ease-memory-mib budget of 2 MiB" in record["ease"]["skipped"]

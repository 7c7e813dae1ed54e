"""Model selection: validation held apart from test, the best NDCG@10 wins, every candidate recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommender import selection
from recommender.data import Interactions, read_orders
from recommender.datacache import DataIdentity
from recommender.errors import InputError
from recommender.evaluate import holdout_masks, score, split_last, split_validation
from recommender.model import ItemKNN
from recommender.selection import Candidate, candidate_grid, plan_for, select
from recommender.shards import compute_shard, merge_shards, shard_path, write_shard


@pytest.fixture(scope="module")
def data(small_data: Path) -> Interactions:
    return read_orders(small_data / "orders.csv", small_data / "catalog.csv")


@pytest.mark.parametrize("timestamps", [True, False])
def test_validation_and_test_are_disjoint(data: Interactions, timestamps: bool) -> None:
    if not timestamps:
        data = Interactions(data.user_ids, data.item_ids, data.users, data.items, None)
    test_mask, val_mask = holdout_masks(data, seed=3)
    assert test_mask.any() and val_mask.any()
    assert not (test_mask & val_mask).any()  # no order in both
    test, val = split_last(data, 3), split_validation(data, 3)
    assert test.test.multiply(val.test).nnz == 0  # no (customer, book) in both
    assert val.train.multiply(test.test).nnz == 0 and val.train.multiply(val.test).nnz == 0
    # Validation trains on a subset of what the test split trains on; the test orders stay unseen.
    assert (val.train - val.train.multiply(test.train)).nnz == 0
    if timestamps:
        assert data.ordered_at is not None
        t = data.ordered_at.astype(np.int64)
        last_val = np.full(data.n_users, np.iinfo(np.int64).min)
        np.maximum.at(last_val, data.users[val_mask], t[val_mask])
        first_test = np.full(data.n_users, np.iinfo(np.int64).max)
        np.minimum.at(first_test, data.users[test_mask], t[test_mask])
        both = np.unique(data.users[val_mask])
        assert both.size and (last_val[both] < first_test[both]).all()  # validation before test, per customer


def test_candidate_grid_is_canonical_and_starts_with_the_default() -> None:
    grid = candidate_grid(Candidate("cosine", 20), ["bm25", "cosine"], [40, 10, 20, 10])
    assert grid == (Candidate("cosine", 20), Candidate("cosine", 10), Candidate("cosine", 40),
                    Candidate("bm25", 10), Candidate("bm25", 20), Candidate("bm25", 40))  # fmt: skip
    plan = plan_for(grid, 0)
    assert (plan.similarities, plan.kmax, plan.splits) == (("cosine", "bm25"), 40, ("all", "test", "validation"))
    assert plan_for((Candidate("tfidf", 7),), 0).splits == ("all", "test")  # nothing to select: no validation fits
    with pytest.raises(InputError, match="--candidates"):
        candidate_grid(Candidate("cosine", 20), ["jaccard"], [10])


@pytest.fixture(scope="module")
def merged(small_data: Path, data: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Any:
    orders, catalog = small_data / "orders.csv", small_data / "catalog.csv"
    ident = DataIdentity.of(orders, catalog)
    grid = candidate_grid(Candidate("cosine", 20), ["cosine", "bm25", "tfidf"], [5, 20, 40])
    plan = plan_for(grid, 0)
    out = tmp_path_factory.mktemp("sel")
    for i in range(2):
        write_shard(shard_path(out, ident, plan, i, 2), *compute_shard(data, ident, plan, i, 2))
    return grid, merge_shards(out, ident, plan, 2)


def test_winner_has_the_best_validation_ndcg(data: Interactions, merged: Any) -> None:
    grid, fits = merged
    validation, test = split_validation(data), split_last(data)
    winner, record = select(fits, grid, validation, test, 10)
    # Recomputed independently: each candidate refitted from scratch on validation's training orders.
    want = {}
    for cand in grid:
        model = ItemKNN(K=cand.k, similarity=cand.similarity).fit(validation.train)
        want[cand] = score(model, validation, 10)
    assert record is not None
    assert [(r["similarity"], r["k"]) for r in record["candidates"]] == [(c.similarity, c.k) for c in grid]
    for row in record["candidates"]:
        expected = want[Candidate(row["similarity"], row["k"])]
        assert row["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
        assert row["hr@10"] == pytest.approx(expected["hr@10"], abs=1e-12)
    best = max(want.values(), key=lambda m: m["ndcg@10"])["ndcg@10"]
    assert want[winner]["ndcg@10"] == best
    assert record["winner"] == winner.as_dict() and record["default"] == grid[0].as_dict()
    assert record["metric"] == "ndcg@10" and record["customers_evaluated"] > 0


def test_ties_go_to_the_default_then_the_earlier_candidate(data: Interactions, merged: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    grid, fits = merged
    figures = {c: 0.5 for c in grid}
    figures[grid[3]] = figures[grid[5]] = 0.7  # two best, neither the default

    def fake_score(model: ItemKNN, split: Any, k: int) -> dict[str, float]:
        return {"ndcg@10": figures.get(Candidate(model.similarity, model.K), 0.0), "hr@10": 0.0}

    monkeypatch.setattr(selection, "score", fake_score)
    validation, test = split_validation(data), split_last(data)
    assert select(fits, grid, validation, test, 10)[0] == grid[3]
    figures.update(dict.fromkeys(grid, 0.7))
    assert select(fits, grid, validation, test, 10)[0] == grid[0]

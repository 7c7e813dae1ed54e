from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from recommender.data import Interactions, read_orders
from recommender.errors import GateFailedError
from recommender.evaluate import check_gate, evaluate, split_last
from recommender.model import ItemKNN


def _interactions(users: list[int], items: list[int], times: list[int] | None) -> Interactions:
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(max(users) + 1)]),
        item_ids=np.array([f"b{i}" for i in range(max(items) + 1)]),
        users=np.array(users),
        items=np.array(items),
        ordered_at=None if times is None else np.array(times, dtype="datetime64[s]"),
    )


def test_time_split_holds_out_the_latest_order() -> None:
    data = _interactions([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 3, 4], [5, 9, 1, 3, 2, 1])
    split = split_last(data)
    assert split.method == "time"
    assert split.test[0].indices.tolist() == [1]  # u0's latest (t=9)
    assert split.test[1].indices.tolist() == [1]
    assert split.test[2].nnz == 0  # a single order: nothing left to learn from
    assert split.train[0].indices.tolist() == [0, 2]
    assert split.train[2].indices.tolist() == [4]


def test_random_split_is_seeded_and_one_per_customer() -> None:
    data = _interactions([0] * 5 + [1] * 5, list(range(5)) * 2, None)
    a, b = split_last(data, seed=1), split_last(data, seed=1)
    assert a.method == "random"
    assert (a.test != b.test).nnz == 0
    assert np.diff(a.test.indptr).tolist() == [1, 1]
    assert a.train.nnz + a.test.nnz == 10


def test_metrics_and_lift_on_generated_data(small_data: Path) -> None:
    data = read_orders(small_data / "orders.csv", small_data / "catalog.csv")
    split = split_last(data)
    report = evaluate(ItemKNN(K=20).fit(split.train), split, k=10)
    ours = cast(dict[str, float], report["model"])
    base = cast(dict[str, float], report["popularity"])
    for metrics in (ours, base):
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert ours["hr@10"] >= ours["ndcg@10"]
    assert cast(float, report["lift_ndcg"]) > 0.3  # the structure is learnable: well above popularity
    assert ours["coverage"] > base["coverage"]
    json.dumps(report)  # serialisable as is


def test_hit_rate_by_hand() -> None:
    """Two customers; the model must rank u0's held-out book first, popularity cannot."""
    data = _interactions([0, 0, 1, 1, 2, 2, 3, 3, 3], [0, 1, 0, 1, 2, 3, 2, 3, 4], [1, 2, 1, 2, 1, 2, 1, 2, 3])
    split = split_last(data)
    report = evaluate(ItemKNN(K=3).fit(split.train), split, k=1)
    assert report["customers_evaluated"] == 4


def test_gate() -> None:
    check_gate({"lift_ndcg": 0.5}, 0.1)
    with pytest.raises(GateFailedError, match="below --min-lift"):
        check_gate({"lift_ndcg": 0.05}, 0.1)
    with pytest.raises(GateFailedError):
        check_gate({"lift_ndcg": float("nan")}, 0.1)

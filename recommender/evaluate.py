"""Leave-last-out evaluation of the model against the popularity baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.data import Interactions
from recommender.errors import GateFailedError, InputError
from recommender.model import ItemKNN

__all__ = ["Split", "check_gate", "evaluate", "split_last"]


@dataclass(frozen=True)
class Split:
    train: sp.csr_matrix  # customer x book, held-out orders removed
    test: sp.csr_matrix  # customer x book, only held-out books of customers with train history
    method: str


def split_last(data: Interactions, seed: int = 0) -> Split:
    """Hold out each customer's most recent order (all books at their last timestamp).

    Without timestamps, one random order per customer is held out (seeded).
    Customers with a single distinct book keep it in training: there is nothing to learn from.
    """
    n = data.users.size
    key: np.ndarray
    if data.ordered_at is not None:
        key, method = data.ordered_at.astype(np.int64), "time"
    else:
        key, method = np.random.default_rng(seed).random(n), "random"
    order = np.lexsort((key, data.users))
    users_sorted, key_sorted = data.users[order], key[order]
    last_pos = np.r_[np.flatnonzero(np.diff(users_sorted)), n - 1]
    last_key = np.empty(data.n_users, dtype=key.dtype)
    last_key[users_sorted[last_pos]] = key_sorted[last_pos]
    test_mask = key == last_key[data.users]
    # Customers with nothing before their last order keep it in training.
    has_history = np.bincount(data.users[~test_mask], minlength=data.n_users) > 0
    test_mask &= has_history[data.users]
    train = data.matrix(~test_mask)
    test = data.matrix(test_mask)
    # Drop held-out books the customer also bought earlier (not a new purchase to predict).
    test = test - test.multiply(train)
    test.eliminate_zeros()
    has_train = np.diff(train.indptr) > 0
    test = sp.diags(has_train.astype(np.float32)) @ test
    test.eliminate_zeros()
    return Split(train.tocsr(), sp.csr_matrix(test), method)


def _metrics(ids: np.ndarray, test: sp.csr_matrix, k: int, n_items: int) -> dict[str, float]:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    top = ids[:, :k]
    held = test[users]
    hits = np.zeros(top.shape, dtype=bool)
    for j in range(k):  # k columns, vectorised over customers
        col = top[:, j]
        ok = col >= 0
        hits[ok, j] = np.asarray(held[np.flatnonzero(ok), col[ok]]).ravel() > 0
    n_held = np.diff(held.indptr)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    idcg = np.cumsum(discounts)[np.minimum(n_held, k) - 1]
    shown = np.unique(top[top >= 0])
    return {
        f"hr@{k}": float(hits.any(axis=1).mean()),
        f"ndcg@{k}": float((dcg / idcg).mean()),
        f"recall@{k}": float((hits.sum(axis=1) / n_held).mean()),
        "coverage": float(shown.size / max(n_items, 1)),
    }


def evaluate(model: ItemKNN, split: Split, k: int = 10, batch: int = 8192) -> dict[str, object]:
    """HR@k, NDCG@k, Recall@k and catalogue coverage for the model and the popularity baseline."""
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if users.size == 0:
        raise InputError("evaluation: no customer has both a training history and a held-out order")
    train = split.train[users]
    model_ids = np.concatenate(
        [model.recommend(train[i : i + batch], k)[0] for i in range(0, users.size, batch)]
    )
    pop_ids = model.recommend_popular(train, k)[0]
    test = split.test[users]
    ours = _metrics(model_ids, test, k, model.n_items)
    base = _metrics(pop_ids, test, k, model.n_items)
    key = f"ndcg@{k}"
    lift = ours[key] / base[key] - 1 if base[key] > 0 else float("inf")
    return {
        "k": k,
        "split": split.method,
        "customers_evaluated": int(users.size),
        "model": ours,
        "popularity": base,
        "lift_ndcg": lift,
    }


def check_gate(report: dict[str, object], min_lift: float) -> None:
    """Raise GateFailedError unless the model's NDCG beats popularity's by `min_lift` (0.1 = +10%)."""
    lift = float(report["lift_ndcg"])  # type: ignore[arg-type]
    if not lift >= min_lift:
        raise GateFailedError(
            f"evaluation gate failed: NDCG lift over popularity is {lift:+.1%}, below --min-lift {min_lift:+.1%}"
        )

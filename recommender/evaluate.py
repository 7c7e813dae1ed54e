"""Leave-last-out evaluation of the model against the popularity baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.data import Interactions
from recommender.errors import GateFailedError, InputError
from recommender.model import ItemKNN

__all__ = ["Split", "check_gate", "evaluate", "holdout_masks", "score", "split_last", "split_validation"]


@dataclass(frozen=True)
class Split:
    train: sp.csr_matrix  # customer x book, held-out orders removed
    test: sp.csr_matrix  # customer x book, only held-out books of customers with train history
    method: str


def _order_key(data: Interactions, seed: int) -> tuple[np.ndarray, str]:
    if data.ordered_at is not None:
        return data.ordered_at.astype(np.int64), "time"
    return np.random.default_rng(seed).random(data.users.size), "random"


def _hold_out_last(data: Interactions, key: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Orders (a subset of `among`) at each customer's last key within `among`, for customers
    with something left before it; the others keep everything in training."""
    lowest = np.iinfo(key.dtype).min if key.dtype.kind in "iu" else -np.inf
    last_key = np.full(data.n_users, lowest, dtype=key.dtype)
    np.maximum.at(last_key, data.users[among], key[among])  # O(orders); a sort costs 100x more here
    held = among & (key == last_key[data.users])
    has_history = np.bincount(data.users[among & ~held], minlength=data.n_users) > 0
    return held & has_history[data.users]


def _split(data: Interactions, train_mask: np.ndarray, test_mask: np.ndarray, method: str) -> Split:
    train = data.matrix(train_mask)
    test = data.matrix(test_mask)
    # Drop held-out books the customer also bought earlier (not a new purchase to predict).
    test = test - test.multiply(train)
    test.eliminate_zeros()
    has_train = np.diff(train.indptr) > 0
    test = sp.diags(has_train.astype(np.float32)) @ test
    test.eliminate_zeros()
    return Split(train.tocsr(), sp.csr_matrix(test), method)


def holdout_masks(data: Interactions, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, validation) order masks: each customer's most recent order, then the one before.

    Validation orders are taken from what the test split trains on, so the two never share an
    order, and a book in both is dropped from the test side (bought earlier, nothing to predict).
    """
    key, _ = _order_key(data, seed)
    everything = np.ones(data.users.size, dtype=bool)
    test = _hold_out_last(data, key, everything)
    return test, _hold_out_last(data, key, ~test)


def split_last(data: Interactions, seed: int = 0) -> Split:
    """Hold out each customer's most recent order (all books at their last timestamp).

    Without timestamps, one random order per customer is held out (seeded).
    Customers with a single distinct book keep it in training: there is nothing to learn from.
    """
    test, _ = holdout_masks(data, seed)
    return _split(data, ~test, test, _order_key(data, seed)[1])


def split_validation(data: Interactions, seed: int = 0) -> Split:
    """The model-selection split: train on orders before the last two, score on the one before
    the last (the test split's order stays unseen)."""
    test, validation = holdout_masks(data, seed)
    return _split(data, ~test & ~validation, validation, _order_key(data, seed)[1])


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


def _evaluated_users(split: Split) -> np.ndarray:
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if users.size == 0:
        raise InputError("evaluation: no customer has both a training history and a held-out order")
    return users


def score(model: ItemKNN, split: Split, k: int = 10, batch: int = 8192) -> dict[str, float]:
    """HR@k, NDCG@k, Recall@k and catalogue coverage of the model alone."""
    users = _evaluated_users(split)
    train = split.train[users]
    ids = np.concatenate([model.recommend(train[i : i + batch], k)[0] for i in range(0, users.size, batch)])
    return _metrics(ids, split.test[users], k, model.n_items)


def evaluate(model: ItemKNN, split: Split, k: int = 10, batch: int = 8192) -> dict[str, object]:
    """HR@k, NDCG@k, Recall@k and catalogue coverage for the model and the popularity baseline."""
    users = _evaluated_users(split)
    ours = score(model, split, k, batch)
    pop_ids = model.recommend_popular(split.train[users], k)[0]
    base = _metrics(pop_ids, split.test[users], k, model.n_items)
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

"""Model selection: compare candidate similarities and neighbour counts on a validation split.

The test split holds out each customer's last order; validation holds out the order before it
and trains on the rest (`evaluate.split_validation`), so selection never sees a test order.
The winner has the best NDCG@top_n on validation; ties go to the default configuration, then
to the earlier candidate (similarities in their canonical order, smaller k first). Only the
winner is then scored on the test split, where the gate (lift over popularity) applies.

Candidates are cheap: each similarity is fitted once at the largest k of the grid, and a
smaller k is a prefix of those lists (the top-k of the top-kmax).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recommender.errors import InputError
from recommender.evaluate import Split, score
from recommender.model import SIMILARITIES
from recommender.shards import MergedFits, ShardPlan

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_K_GRID", "Candidate", "candidate_grid", "plan_for", "select"]

DEFAULT_CANDIDATES = ("cosine", "bm25")
DEFAULT_K_GRID = (10, 20, 40)


@dataclass(frozen=True)
class Candidate:
    similarity: str
    k: int

    def as_dict(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "k": self.k}


def candidate_grid(default: Candidate, similarities: Iterable[str], k_grid: Iterable[int]) -> tuple[Candidate, ...]:
    """The default first, then every similarity x k in canonical order, without repeats."""
    sims, ks = set(similarities), sorted(set(k_grid))
    unknown = sims - set(SIMILARITIES)
    if unknown or default.similarity not in SIMILARITIES:
        raise InputError(f"--candidates must be among {', '.join(SIMILARITIES)}, got {sorted(unknown)}")
    if any(k < 1 for k in [*ks, default.k]):
        raise InputError(f"--k-grid values must be >= 1, got {ks}")
    grid = [Candidate(s, k) for s in SIMILARITIES if s in sims for k in ks]
    return (default, *(c for c in grid if c != default))


def plan_for(candidates: tuple[Candidate, ...], seed: int, *, bm25_k1: float = 1.2, bm25_b: float = 0.75) -> ShardPlan:
    """What the shards must compute for these candidates: each similarity at the largest k, on
    all orders, on the test split's training part and (with more than one candidate) on
    validation's."""
    splits = ("all", "test", "validation") if len(candidates) > 1 else ("all", "test")
    return ShardPlan(tuple(c.similarity for c in candidates), max(c.k for c in candidates), splits, seed,
                     bm25_k1, bm25_b)  # fmt: skip


def select(
    merged: MergedFits, candidates: tuple[Candidate, ...], validation: Split, test: Split, top_n: int
) -> tuple[Candidate, dict[str, Any] | None]:
    """The winner and the record kept in its metadata and lineage (None: nothing to choose)."""
    default = candidates[0]
    if len(candidates) == 1:
        return default, None
    key = f"ndcg@{top_n}"
    rows = []
    for cand in candidates:
        metrics = score(merged.model("validation", cand.similarity, cand.k), validation, top_n)
        rows.append({**cand.as_dict(), **metrics})
    best = max(range(len(rows)), key=lambda i: (rows[i][key], -i))  # first of the best: default wins ties
    winner = candidates[best]
    default_test = score(merged.model("test", default.similarity, default.k), test, top_n)
    record = {
        "metric": key,
        "split": "validation: each customer's order before the test one; trained on the orders before it",
        "customers_evaluated": int((validation.test.indptr[1:] > validation.test.indptr[:-1]).sum()),
        "candidates": rows,
        "winner": winner.as_dict(),
        "default": default.as_dict(),
        "default_on_test": default_test,
    }
    return winner, record

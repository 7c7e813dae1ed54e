"""Model selection: compare candidate similarities and neighbour counts on a validation split.

The test split holds out each customer's last order; validation holds out the order before it
and trains on the rest (`evaluate.split_validation`), so selection never sees a test order.
The winner has the best NDCG@top_n on validation; ties go to the default configuration, then
to the earlier candidate (similarities in their canonical order, smaller k first). Only the
winner is then scored on the test split, where the gate (lift over popularity) applies.

Candidates are cheap: each similarity is fitted once at the largest k of the grid, and a
smaller k is a prefix of those lists (the top-k of the top-kmax).

EASE (`recommender.ease`) is a candidate per λ of its grid and per k: its dense books x books
inverse is fitted once per λ and split, and cut to each k like the others. It enters only when
the catalogue fits the memory budget (16·n² bytes <= --ease-memory-mib); otherwise the record
says why it was skipped, and the other candidates compete as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recommender.ease import DEFAULT_EASE_MEMORY_MIB
from recommender.errors import InputError
from recommender.evaluate import Split, score
from recommender.model import MODEL_KINDS, SIMILARITIES
from recommender.shards import MergedFits, ShardPlan

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_EASE_L2_GRID", "DEFAULT_EASE_MEMORY_MIB", "DEFAULT_K_GRID", "Candidate",
           "candidate_grid", "plan_for", "select"]  # fmt: skip

DEFAULT_CANDIDATES = ("cosine", "bm25", "ease")
DEFAULT_K_GRID = (5, 10, 20, 40)
DEFAULT_EASE_L2_GRID = (50.0, 200.0)  # tuned on the generated data (docs/benchmarks.md, issue 17)


@dataclass(frozen=True)
class Candidate:
    similarity: str
    k: int
    l2: float = 0.0  # EASE's λ (similarity "ease" only)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"similarity": self.similarity, "k": self.k}
        if self.similarity == "ease":
            out["l2"] = self.l2
        return out

    def model(self, merged: MergedFits, split: str) -> Any:
        return merged.model(split, self.similarity, self.k, self.l2)


def candidate_grid(default: Candidate, similarities: Iterable[str], k_grid: Iterable[int],
                   l2_grid: Iterable[float] = DEFAULT_EASE_L2_GRID) -> tuple[Candidate, ...]:  # fmt: skip
    """The default first, then every similarity x k (EASE: x λ) in canonical order, without repeats."""
    sims, ks, l2s = set(similarities), sorted(set(k_grid)), sorted({float(v) for v in l2_grid})
    unknown = sims - set(MODEL_KINDS)
    if unknown or default.similarity not in SIMILARITIES:
        raise InputError(f"--candidates must be among {', '.join(MODEL_KINDS)}, got {sorted(unknown)}")
    if any(k < 1 for k in [*ks, default.k]):
        raise InputError(f"--k-grid values must be >= 1, got {ks}")
    if "ease" in sims and (not l2s or any(not v > 0 for v in l2s)):
        raise InputError(f"--ease-l2-grid values must be > 0, got {l2s}")
    grid = [Candidate(s, k) for s in SIMILARITIES if s in sims for k in ks]
    grid += [Candidate("ease", k, l2) for l2 in l2s for k in ks] if "ease" in sims else []
    return (default, *(c for c in grid if c != default))


def plan_for(candidates: tuple[Candidate, ...], seed: int, *, bm25_k1: float = 1.2, bm25_b: float = 0.75,
             ease_memory_mib: int = DEFAULT_EASE_MEMORY_MIB) -> ShardPlan:  # fmt: skip
    """What the shards must compute for these candidates: each similarity (and each EASE λ) at
    the largest k, on all orders, on the test split's training part and (with more than one
    candidate) on validation's."""
    splits = ("all", "test", "validation") if len(candidates) > 1 else ("all", "test")
    knn = tuple(c.similarity for c in candidates if c.similarity != "ease")
    l2 = tuple(c.l2 for c in candidates if c.similarity == "ease")
    return ShardPlan(knn, max(c.k for c in candidates), splits, seed, bm25_k1, bm25_b, l2,
                     ease_memory_mib)  # fmt: skip


def select(
    merged: MergedFits, candidates: tuple[Candidate, ...], validation: Split, test: Split, top_n: int
) -> tuple[Candidate, dict[str, Any] | None]:
    """The winner and the record kept in its metadata and lineage (None: nothing to choose)."""
    default = candidates[0]
    if len(candidates) == 1:
        return default, None
    key = f"ndcg@{top_n}"
    skipped = merged.ease_skipped
    if skipped is not None:
        candidates = tuple(c for c in candidates if c.similarity != "ease")
    rows = []
    for cand in candidates:
        metrics = score(cand.model(merged, "validation"), validation, top_n)
        rows.append({**cand.as_dict(), **metrics})
    best = max(range(len(rows)), key=lambda i: (rows[i][key], -i))  # first of the best: default wins ties
    winner = candidates[best]
    default_test = score(default.model(merged, "test"), test, top_n)
    record: dict[str, Any] = {
        "metric": key,
        "split": "validation: each customer's order before the test one; trained on the orders before it",
        "customers_evaluated": int((validation.test.indptr[1:] > validation.test.indptr[:-1]).sum()),
        "candidates": rows,
        "winner": winner.as_dict(),
        "default": default.as_dict(),
        "default_on_test": default_test,
    }
    if merged.plan.ease_l2:
        record["ease"] = {"l2_grid": list(merged.plan.ease_l2), "memory_budget_mib": merged.plan.ease_memory_mib,
                          "included": skipped is None, **({"skipped": skipped} if skipped else {})}  # fmt: skip
    return winner, record

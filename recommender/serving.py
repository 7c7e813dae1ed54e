"""A loaded, verified model ready to answer lookups; no HTTP here.

Also-bought answers for the default k are serialised once per book at load time, so the hot
path is a dict lookup and a bytes concatenation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from recommender.artifact import load_artifact

__all__ = ["DEFAULT_K", "MAX_BASKET", "MAX_K", "ModelState", "load_state"]

DEFAULT_K = 10
MAX_K = 100
MAX_BASKET = 1000


@dataclass
class ModelState:
    version: str
    item_ids: list[str]
    index: dict[str, int]
    neighbours: np.ndarray
    scores: np.ndarray
    popular: np.ndarray  # book indices, most bought first
    metadata: dict[str, Any]
    load_seconds: float
    _default_answers: list[bytes] = field(default_factory=list, repr=False)

    def _items(self, idx: Sequence[int], scores: Sequence[float], n_similar: int) -> list[dict[str, Any]]:
        ids = self.item_ids
        return [
            {"book_id": ids[i], "score": round(float(s), 6), "source": "similar" if j < n_similar else "popular"}
            for j, (i, s) in enumerate(zip(idx, scores, strict=True))
        ]

    def _fill(self, chosen: list[int], exclude: set[int], k: int) -> list[int]:
        if len(chosen) >= k:
            return chosen[:k]
        taken = exclude | set(chosen)
        for i in self.popular[: k + len(taken)].tolist():
            if i not in taken:
                chosen.append(i)
                if len(chosen) == k:
                    break
        return chosen

    def also_bought(self, book: int, k: int) -> list[dict[str, Any]]:
        row = self.neighbours[book]
        valid = row >= 0
        similar = row[valid][:k].tolist()
        sims = self.scores[book][valid][:k].tolist()
        chosen = self._fill(list(similar), {book}, k)
        return self._items(chosen, sims + [0.0] * (len(chosen) - len(similar)), len(similar))

    def also_bought_body(self, book_id: str, k: int) -> bytes | None:
        """The JSON answer for a book, or None when the book is unknown."""
        book = self.index.get(book_id)
        if book is None:
            return None
        if k == DEFAULT_K and self._default_answers:
            return self._default_answers[book]
        return orjson.dumps(
            {"book_id": book_id, "model_version": self.version, "recommendations": self.also_bought(book, k)}
        )

    def recommend(self, basket: Sequence[str], k: int) -> dict[str, Any]:
        """Summed neighbour scores of a basket; unknown ids are reported, not fatal."""
        known = [self.index[b] for b in basket if b in self.index]
        unknown = sorted({b for b in basket if b not in self.index})
        scores: dict[int, float] = {}
        for b in known:
            row, sims = self.neighbours[b], self.scores[b]
            for i, s in zip(row.tolist(), sims.tolist(), strict=True):
                if i >= 0:
                    scores[i] = scores.get(i, 0.0) + s
        bought = set(known)
        ranked = sorted((i for i in scores if i not in bought), key=lambda i: (-scores[i], i))[:k]
        chosen = self._fill(list(ranked), bought, k)
        recs = self._items(chosen, [scores[i] for i in ranked] + [0.0] * (len(chosen) - len(ranked)), len(ranked))
        return {"model_version": self.version, "recommendations": recs, "unknown_books": unknown}

    def precompute(self) -> None:
        self._default_answers = [
            orjson.dumps(
                {"book_id": b, "model_version": self.version, "recommendations": self.also_bought(i, DEFAULT_K)}
            )
            for i, b in enumerate(self.item_ids)
        ]


def load_state(version_dir: Path, version: str) -> ModelState:
    """Load a registered version, verify its checksum against the version id, precompute answers."""
    t0 = time.perf_counter()
    art = load_artifact(version_dir, version)
    item_ids = art.item_ids.tolist()
    state = ModelState(
        version=version,
        item_ids=item_ids,
        index={b: i for i, b in enumerate(item_ids)},
        neighbours=art.model.neighbours,
        scores=art.model.scores,
        popular=art.model.popular(art.model.n_items),
        metadata=art.metadata,
        load_seconds=0.0,
    )
    state.precompute()
    state.load_seconds = time.perf_counter() - t0
    return state

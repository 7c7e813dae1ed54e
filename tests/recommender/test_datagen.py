from __future__ import annotations

import csv
import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from recommender.datagen import GENRES, DatasetSpec, generate
from recommender.errors import InputError
from recommender.hashing import sha256_file


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    spec = DatasetSpec(seed=3, customers=200, books=60, orders=2000)
    a = generate(spec, tmp_path / "a")
    b = generate(spec, tmp_path / "b")
    c = generate(DatasetSpec(seed=4, customers=200, books=60, orders=2000), tmp_path / "c")
    assert a["sha256"] == b["sha256"]
    assert a["sha256"] != c["sha256"]


def test_manifest_matches_files(small_data: Path) -> None:
    manifest = json.loads((small_data / "manifest.json").read_text())
    orders = _rows(small_data / "orders.csv")
    catalog = _rows(small_data / "catalog.csv")
    assert manifest["rows"] == {"orders.csv": len(orders), "catalog.csv": len(catalog)}
    assert manifest["spec"]["seed"] == 7
    for name, digest in manifest["sha256"].items():
        assert sha256_file(small_data / name) == digest
    assert set(catalog[0]) == {"book_id", "title", "author", "genre", "series", "price"}
    assert set(orders[0]) == {"order_id", "customer_id", "book_id", "ordered_at"}
    assert {r["genre"] for r in catalog} <= set(GENRES)
    book_ids = {r["book_id"] for r in catalog}
    assert {r["book_id"] for r in orders} <= book_ids
    assert len({r["order_id"] for r in orders}) == len(orders)


def test_structure_is_learnable(small_data: Path) -> None:
    """Popularity is skewed, customers stick to genres and series are bought together."""
    catalog = {r["book_id"]: r for r in _rows(small_data / "catalog.csv")}
    orders = _rows(small_data / "orders.csv")
    counts = np.array(sorted(Counter(r["book_id"] for r in orders).values(), reverse=True))
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.3  # top 10% of books: well above the uniform 10%
    by_customer: dict[str, list[str]] = {}
    for r in sorted(orders, key=lambda r: (r["customer_id"], r["ordered_at"])):
        by_customer.setdefault(r["customer_id"], []).append(r["book_id"])
    genre_share, same_series = [], 0
    pairs = 0
    for books in by_customer.values():
        genres = Counter(catalog[b]["genre"] for b in books)
        if len(books) >= 5:
            genre_share.append(sum(c for _, c in genres.most_common(2)) / len(books))
        for prev, nxt in pairwise(books):
            pairs += 1
            series = catalog[prev]["series"]
            same_series += bool(series) and catalog[nxt]["series"] == series
    assert np.mean(genre_share) > 0.6  # two of twelve genres would be ~0.17 at random
    assert same_series / pairs > 0.1


def test_times_increase_per_customer(small_data: Path) -> None:
    rows = _rows(small_data / "orders.csv")
    last: dict[str, str] = {}
    for r in rows:
        assert r["ordered_at"].endswith("Z")
        assert r["ordered_at"] >= last.get(r["customer_id"], "")
        last[r["customer_id"]] = r["ordered_at"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (DatasetSpec(customers=0), "--customers"),
        (DatasetSpec(orders=0), "--orders"),
        (DatasetSpec(books=3), "--books"),
        (DatasetSpec(seed=-1), "--seed"),
    ],
)
def test_bad_spec_names_the_flag(tmp_path: Path, spec: DatasetSpec, field: str) -> None:
    with pytest.raises(InputError, match=field):
        generate(spec, tmp_path)

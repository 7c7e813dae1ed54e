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


def _shape(spec: DatasetSpec) -> dict[str, float]:
    """Measured on the generated orders: orders per customer and how long the popularity tail is."""
    from recommender.datagen import generate_arrays

    customer, book, _ = generate_arrays(spec)
    buyers = np.bincount(np.unique(customer.astype(np.int64) * spec.books + book) % spec.books, minlength=spec.books)
    ranked = np.sort(buyers)[::-1]
    per_customer = np.bincount(customer)[np.bincount(customer) > 0]
    return {
        "orders_per_customer": float(per_customer.mean()),
        "median_orders": float(np.median(per_customer)),
        "tail_share": float(ranked[spec.books // 5 :].sum() / ranked.sum()),  # sales outside the top fifth
        "buyers_per_book": float(buyers.mean()),
        "rare_books": float((buyers < 5).mean()),  # books fewer than 5 customers bought
    }


def test_longtail_shape_is_measured_not_assumed() -> None:
    standard, longtail = _shape(DatasetSpec.shaped("standard")), _shape(DatasetSpec.shaped("longtail"))
    assert DatasetSpec.shaped("standard") == DatasetSpec()  # the standard shape is the platform's data
    # Fewer orders per customer: about a third on average, median 2 against 6.
    assert longtail["orders_per_customer"] < 0.4 * standard["orders_per_customer"]
    assert longtail["median_orders"] <= standard["median_orders"] / 2
    # A longer tail: more of the sales outside the top fifth of books, fewer buyers per book and
    # more books that almost nobody buys.
    assert longtail["tail_share"] > standard["tail_share"] + 0.05
    assert longtail["buyers_per_book"] < 0.6 * standard["buyers_per_book"]
    assert longtail["rare_books"] > 2 * standard["rare_books"]


def test_shape_is_chosen_by_a_generator_option(tmp_path: Path) -> None:
    from recommender.cli import main

    assert main(["generate", "--out", str(tmp_path), "--shape", "longtail", "--customers", "300", "--books", "50",
                 "--orders", "900"]) == 0  # fmt: skip
    spec = json.loads((tmp_path / "manifest.json").read_text())["spec"]
    assert (spec["shape"], spec["zipf_exponent"], spec["books"]) == ("longtail", 0.7, 50)
    with pytest.raises(InputError, match="--shape must be one of standard, longtail"):
        DatasetSpec.shaped("flat")

"""A seeded synthetic Bookstore with structure a co-purchase model can learn.

Structure put in on purpose (so item-to-item beats popularity by a wide margin):
- power-law popularity: Zipf(0.9) over a random ranking of the catalogue;
- genre taste: each customer has a favourite and a second genre and mostly buys there;
- co-purchase: a share of orders follow the customer's previous order with a book of the same
  series (the next volume when there is one) or the same author.
Everything is vectorised numpy so a million orders take seconds.

Two shapes (`SHAPES`, `generate --shape`): "standard" (the defaults: the platform's training
data) and "longtail": a flatter popularity curve over a larger catalogue per purchase, and fewer
orders per customer (about 3.4 on average against 10.6; median 2 against 6). More of the sales go
to books outside the top fifth (about 45% against 36%), each book has fewer buyers (16.5 against
35) and a customer's history says less: the harder case for item-to-item models. The shape is
measured in the tests, not assumed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recommender.data import Interactions
from recommender.datacache import DataIdentity, write_cache
from recommender.errors import InputError
from recommender.files import write_atomic
from recommender.hashing import sha256_file

__all__ = ["GENRES", "SHAPES", "DatasetSpec", "generate", "generate_arrays"]

GENRES = (
    "fantasy", "science-fiction", "mystery", "thriller", "romance", "historical",
    "horror", "biography", "history", "science", "poetry", "children",
)  # fmt: skip
_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hugo", "Iris", "Jonas", "Kira",
          "Liam", "Mara", "Nico", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Vik")  # fmt: skip
_LAST = ("Abbott", "Byrne", "Castro", "Dahl", "Eze", "Fischer", "Garcia", "Haddad", "Ito",
         "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi",
         "Sato", "Tanaka", "Ueda", "Varga", "Weber", "Young", "Zhou")  # fmt: skip
_ADJ = ("Silent", "Broken", "Golden", "Hidden", "Last", "Burning", "Frozen", "Lost", "Crimson",
        "Distant", "Hollow", "Iron", "Quiet", "Secret", "Shattered", "Wild")  # fmt: skip
_NOUN = ("Garden", "Empire", "River", "Crown", "Shadow", "Harbor", "Letter", "Mountain", "Mirror",
         "Orchard", "Storm", "Tower", "Voyage", "Winter", "Witness", "Archive")  # fmt: skip

_DAY_S = 86_400
_EPOCH = np.datetime64("2025-01-01T00:00:00", "s")


@dataclass(frozen=True)
class DatasetSpec:
    """Sizes and seed of a generated Bookstore; defaults are the platform's training job."""

    seed: int = 42
    customers: int = 20_000
    books: int = 5_000
    orders: int = 200_000
    zipf_exponent: float = 0.9
    co_purchase_share: float = 0.35  # orders that follow the previous order's series/author
    taste_share: float = 0.5  # orders drawn from the customer's genres
    days: int = 365  # orders spread over this many days
    shape: str = "standard"  # the preset these values came from (`SHAPES`); recorded in the manifest

    @classmethod
    def shaped(cls, shape: str = "standard", **overrides: int | float) -> DatasetSpec:
        """The spec of a named shape, with explicit values (e.g. sizes) taking precedence."""
        if shape not in SHAPES:
            raise InputError(f"--shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        return cls(**{**SHAPES[shape], **overrides, "shape": shape})  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        for name in ("customers", "books", "orders"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.books < len(GENRES):
            raise InputError(f"--books must be >= {len(GENRES)} (one per genre), got {self.books}")
        if self.co_purchase_share + self.taste_share > 1:
            raise InputError("co_purchase_share + taste_share must be <= 1")


# Named shapes: what `DatasetSpec.shaped` starts from.
SHAPES: dict[str, dict[str, int | float]] = {
    "standard": {},  # the DatasetSpec defaults
    # Fewer orders per customer (2.4 per customer drawn, against 10) over a catalogue with a flatter
    # popularity curve and fewer buyers per book. 7,000 books: EASE's 16·n² bytes (748 MiB) fit the
    # default 1 GiB budget.
    "longtail": {"customers": 50_000, "books": 7_000, "orders": 120_000, "zipf_exponent": 0.7},
}


def _catalog(spec: DatasetSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = spec.books
    n_authors = max(1, n // 8)
    author_genre = rng.integers(0, len(GENRES), n_authors)
    # Books sorted by author so that an author's books (and series) are contiguous ranges.
    author = np.sort(rng.integers(0, n_authors, n))
    genre = np.where(rng.random(n) < 0.9, author_genre[author], rng.integers(0, len(GENRES), n))
    # Runs of books by the same author; a run of >= 2 books is a series with probability 0.6.
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (author[1:] != author[:-1]) | (rng.random(n - 1) < 0.3)
    run = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, n))
    is_series_run = (run_len >= 2) & (rng.random(run_start.size) < 0.6)
    in_series = is_series_run[run]
    volume = np.arange(n) - run_start[run]
    author_start = np.searchsorted(author, author, side="left")
    author_len = np.searchsorted(author, author, side="right") - author_start
    # Group used for co-purchase: the series when in one, else the author's books.
    group_start = np.where(in_series, run_start[run], author_start)
    group_len = np.where(in_series, run_len[run], author_len)
    rank = rng.permutation(n) + 1
    weight = 1.0 / rank**spec.zipf_exponent
    weight *= np.where(in_series, 0.75**volume, 1.0)  # later volumes sell less
    return {
        "author": author, "genre": genre, "run": run, "in_series": in_series, "volume": volume,
        "group_start": group_start, "group_len": group_len, "weight": weight / weight.sum(),
        "price": np.round(rng.uniform(4.99, 39.99, n), 2),
    }  # fmt: skip


def _sample_in_genre(
    cat: dict[str, np.ndarray], genres: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Popularity-weighted draw of one book per entry of `genres`, within that genre."""
    order = np.lexsort((np.arange(cat["genre"].size), cat["genre"]))
    g_sorted = cat["genre"][order]
    w = cat["weight"][order]
    totals = np.bincount(g_sorted, weights=w, minlength=len(GENRES))
    # cdf runs from g to g+1 inside genre g, so `genre + u` lands in that genre's books.
    within = np.cumsum(w) - np.concatenate(([0.0], np.cumsum(totals)))[g_sorted]
    cdf = g_sorted + within / np.where(totals > 0, totals, 1.0)[g_sorted]
    has_books = totals > 0
    genres = np.where(has_books[genres], genres, int(np.argmax(totals)))
    pos = np.searchsorted(cdf, genres + rng.random(genres.size) * (1 - 1e-12), side="right")
    return order[np.minimum(pos, order.size - 1)]


def _orders(
    spec: DatasetSpec, cat: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = spec.orders
    activity = rng.lognormal(0.0, 1.0, spec.customers)
    customer = rng.choice(spec.customers, n, p=activity / activity.sum())
    seconds = rng.integers(0, spec.days * _DAY_S, n)
    order = np.lexsort((seconds, customer))
    customer, seconds = customer[order], seconds[order]
    fav = rng.integers(0, len(GENRES), spec.customers)
    second = rng.integers(0, len(GENRES), spec.customers)
    taste_genre = np.where(rng.random(n) < 0.75, fav[customer], second[customer])
    book = _sample_in_genre(cat, taste_genre, rng)
    kind = rng.random(n)
    popular = kind >= spec.co_purchase_share + spec.taste_share
    book[popular] = rng.choice(spec.books, int(popular.sum()), p=cat["weight"])
    follows = np.zeros(n, dtype=bool)
    follows[1:] = (kind[1:] < spec.co_purchase_share) & (customer[1:] == customer[:-1])
    prev = book[np.flatnonzero(follows) - 1]
    start, length = cat["group_start"][prev], cat["group_len"][prev]
    related = start + (rng.random(prev.size) * length).astype(np.int64)
    # In a series, readers mostly go on to the next volume.
    next_vol = prev + 1
    has_next = cat["in_series"][prev] & (next_vol < start + length)
    related = np.where(has_next & (rng.random(prev.size) < 0.7), next_vol, related)
    book[follows] = related
    return customer, book, seconds


def _write_catalog(path: Path, cat: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    n = cat["author"].size
    first = rng.integers(0, len(_FIRST), int(cat["author"].max()) + 1)
    last = rng.integers(0, len(_LAST), int(cat["author"].max()) + 1)
    adj, noun = rng.integers(0, len(_ADJ), n), rng.integers(0, len(_NOUN), n)
    with io.StringIO(newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["book_id", "title", "author", "genre", "series", "price"])
        for i in range(n):
            a = int(cat["author"][i])
            author = f"{_FIRST[first[a]]} {_LAST[last[a]]}"
            title = f"The {_ADJ[adj[i]]} {_NOUN[noun[i]]}"
            series = ""
            if cat["in_series"][i]:
                series = f"{_LAST[last[a]]} Cycle {int(cat['run'][i])}"
                title += f" ({series} #{int(cat['volume'][i]) + 1})"
            genre = GENRES[int(cat["genre"][i])]
            writer.writerow([_book_id(i), title, author, genre, series, f"{cat['price'][i]:.2f}"])
        write_atomic(path, fh.getvalue().encode("utf-8"))


def _book_id(i: int) -> str:
    return f"b{i:06d}"


def _write_orders(path: Path, customer: np.ndarray, book: np.ndarray, seconds: np.ndarray) -> None:
    stamps = (_EPOCH + seconds.astype("timedelta64[s]")).astype(str)
    lines = [
        f"o{i:08d},c{c:07d},b{b:06d},{t}Z"
        for i, (c, b, t) in enumerate(zip(customer.tolist(), book.tolist(), stamps.tolist(), strict=True))
    ]
    write_atomic(path, ("order_id,customer_id,book_id,ordered_at\n" + "\n".join(lines) + "\n").encode())


def generate_arrays(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, book, seconds) codes per order, without writing files (for benchmarks)."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    return _orders(spec, _catalog(spec, rng), rng)


def _sorted_ids(codes: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids in string order, each code's position among them): what parsing the CSV gives."""
    ids = np.array([fmt.format(int(c)) for c in codes])
    order = np.argsort(ids, kind="stable")
    position = np.empty(codes.size, dtype=np.int64)
    position[order] = np.arange(codes.size)
    return ids[order], position


def _interactions(customer: np.ndarray, book: np.ndarray, seconds: np.ndarray, books: int) -> Interactions:
    """The orders as `read_orders` would parse them from the files, without parsing them."""
    present, users = np.unique(customer, return_inverse=True)
    user_ids, user_pos = _sorted_ids(present, "c{:07d}")
    item_ids, item_pos = _sorted_ids(np.arange(books), "b{:06d}")  # the catalogue has every book
    times = _EPOCH + seconds.astype("timedelta64[s]")
    return Interactions(user_ids, item_ids, user_pos[users], item_pos[book], times)


def generate(spec: DatasetSpec, out_dir: Path) -> dict[str, object]:
    """Write catalog.csv, orders.csv and manifest.json into `out_dir`; return the manifest.

    Each file appears whole (written aside, then renamed), so a reader never sees half of
    one, and a rerun rewrites the same bytes. The parsed orders go to the parse cache too.
    """
    spec.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    cat = _catalog(spec, rng)
    customer, book, seconds = _orders(spec, cat, rng)
    orders, catalog = out_dir / "orders.csv", out_dir / "catalog.csv"
    _write_catalog(catalog, cat, rng)
    _write_orders(orders, customer, book, seconds)
    identity = DataIdentity(sha256_file(orders), sha256_file(catalog))
    write_cache(orders, identity, _interactions(customer, book, seconds, spec.books))
    manifest: dict[str, object] = {
        "spec": asdict(spec),
        "rows": {"catalog.csv": spec.books, "orders.csv": spec.orders},
        "sha256": {"catalog.csv": identity.catalog_sha256, "orders.csv": identity.orders_sha256},
    }
    write_atomic(out_dir / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest

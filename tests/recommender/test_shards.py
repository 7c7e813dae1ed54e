"""Sharded training merges to exactly what one process computes, and resumes instead of restarting."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender import knn_fit, shards
from recommender.cli import main
from recommender.data import read_orders
from recommender.datacache import DataIdentity
from recommender.registry import Registry
from recommender.shards import ShardPlan, compute_shard, merge_shards, shard_rows, write_shard
from tests.recommender.conftest import random_purchases


@given(n=st.integers(0, 300), count=st.integers(1, 40))
def test_shards_tile_the_books(n: int, count: int) -> None:
    """Every book in exactly one shard, in order, for any count (more shards than books too)."""
    rows = [shard_rows(n, i, count) for i in range(count)]
    assert rows[0][0] == 0 and rows[-1][1] == n
    assert all(a <= b for a, b in rows)
    assert all(prev[1] == nxt[0] for prev, nxt in pairwise(rows))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    users=st.integers(1, 50),
    items=st.integers(1, 30),
    density=st.floats(0.02, 0.6),
    k=st.integers(1, 6),
    count=st.integers(1, 12),
    superblocks=st.integers(1, 5),
    threads=st.integers(1, 2),
)
def test_merged_shards_equal_the_single_process_fit(
    seed: int, users: int, items: int, density: float, k: int, count: int, superblocks: int, threads: int
) -> None:
    """Bit for bit, ties included, for any number of shards (also more shards than books)."""
    w = sp.csc_matrix(random_purchases(seed, users, items, density), dtype=np.float32)
    with patch.object(knn_fit, "SUPERBLOCKS", superblocks), patch.object(knn_fit, "BLOCK_WORK", 7):
        want = knn_fit.top_k_neighbours(w, k, threads=threads)
        parts = []
        for i in range(count):
            a, b = shard_rows(items, i, count)
            idx, val = knn_fit.top_k_neighbours(w, k, threads=threads, rows=(a, b))
            stored = b if b > a else 0
            parts.append(({"rows": [a, b], "stored_rows": stored}, idx[:stored], val[:stored]))
    got = shards._merge_fit(parts, items, k, [])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _cli(*argv: str) -> dict[str, object]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, argv
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def _data(small_data: Path) -> list[str]:
    return ["--orders", str(small_data / "orders.csv"), "--catalog", str(small_data / "catalog.csv")]


@pytest.mark.parametrize(("count", "extra"), [(1, []), (2, ["--no-select"]), (3, []), (5, ["--no-select"]),
                                              (3, ["--similarity", "bm25", "--k", "7", "--no-select"])])  # fmt: skip
def test_merge_writes_the_bytes_train_writes(small_data: Path, tmp_path: Path, count: int, extra: list[str]) -> None:
    data = _data(small_data)
    _cli("train", *data, "--out", str(tmp_path / "single"), "--quiet", *[a for a in extra if a != "--no-select"])
    for i in range(count):
        _cli("train", *data, "--shards-dir", str(tmp_path / "shards"), "--shard", f"{i}/{count}", "--threads", "1",
             "--quiet", *extra)  # fmt: skip
    merged = _cli("merge", *data, "--shards-dir", str(tmp_path / "shards"), "--shards", str(count),
                  "--out", str(tmp_path / "merged"), "--quiet", *extra)  # fmt: skip
    single = tmp_path / "single" / "model.npz"
    assert (tmp_path / "merged" / "model.npz").read_bytes() == single.read_bytes()
    reg = Registry(tmp_path / "models")
    v1, _ = reg.register("m", tmp_path / "single")
    v2, created = reg.register("m", tmp_path / "merged")
    assert v2 == v1 == merged["content_sha256"] and not created  # the same registry version


def test_rerun_skips_the_shards_already_written(small_data: Path, tmp_path: Path) -> None:
    data, shards_dir = _data(small_data), tmp_path / "shards"

    def run_set() -> list[bool]:
        return [bool(_cli("train", *data, "--shards-dir", str(shards_dir), "--shard", f"{i}/3", "--quiet")["computed"])
                for i in range(3)]  # fmt: skip

    assert run_set() == [True, True, True]
    assert run_set() == [False, False, False]
    (victim,) = shards_dir.glob("shard-0001-of-0003-*.npz")
    victim.unlink()
    assert run_set() == [False, True, False]  # only the missing one
    # A damaged file under a shard's name is computed again, not trusted.
    victim.write_bytes(victim.read_bytes()[:100])
    assert run_set() == [False, True, False]


def test_shard_names_follow_the_inputs(small_data: Path, tmp_path: Path) -> None:
    orders, catalog = small_data / "orders.csv", small_data / "catalog.csv"
    ident = DataIdentity.of(orders, catalog)
    plan = ShardPlan(("cosine",), 20)
    names = {
        shards.shard_path(tmp_path, ident, plan, 0, 2),
        shards.shard_path(tmp_path, ident, plan, 1, 2),
        shards.shard_path(tmp_path, ident, plan, 0, 3),
        shards.shard_path(tmp_path, ident, ShardPlan(("cosine",), 21), 0, 2),
        shards.shard_path(tmp_path, ident, ShardPlan(("cosine",), 20, seed=1), 0, 2),
        shards.shard_path(tmp_path, DataIdentity.of(orders, None), plan, 0, 2),
    }
    assert len(names) == 6
    # Order of similarities does not matter: equal plans, equal names.
    assert shards.shard_path(tmp_path, ident, ShardPlan(("bm25", "cosine"), 20), 0, 2) == shards.shard_path(
        tmp_path, ident, ShardPlan(("cosine", "bm25"), 20), 0, 2
    )


def test_more_shards_than_books(tmp_path: Path) -> None:
    """Empty shards are fine: 13 shards of 5 books merge to the single-process fit."""
    orders = tmp_path / "orders.csv"
    rng = np.random.default_rng(3)
    lines = [f"c{int(c)},b{int(b)}" for c, b in zip(rng.integers(0, 40, 200), rng.integers(0, 5, 200), strict=True)]
    orders.write_text("customer_id,book_id\n" + "\n".join(lines) + "\n")
    data, ident = read_orders(orders), DataIdentity.of(orders)
    plan = ShardPlan(("cosine", "tfidf"), 3, ("all", "test"))
    for i in range(13):
        write_shard(shards.shard_path(tmp_path, ident, plan, i, 13), *compute_shard(data, ident, plan, i, 13))
    merged = merge_shards(tmp_path, ident, plan, 13)
    assert sum(1 for i in range(13) if shard_rows(5, i, 13)[0] == shard_rows(5, i, 13)[1]) == 8
    for sim in plan.similarities:
        from recommender.model import ItemKNN

        want = ItemKNN(K=3, similarity=sim).fit(data.matrix())
        np.testing.assert_array_equal(merged.fits[("all", sim)][0], want.neighbours)
        np.testing.assert_array_equal(merged.fits[("all", sim)][1], want.scores)


def test_a_worker_reuses_the_cached_purchases_without_converting_them(small_data: Path) -> None:
    """Every worker needs the purchases by customer and by book; from the parse cache it takes
    both as stored, with no transpose and no copy of all purchases (bytes as from parsed orders)."""
    from recommender.datacache import load_interactions

    orders, catalog = small_data / "orders.csv", small_data / "catalog.csv"
    ident, plan = DataIdentity.of(orders, catalog), ShardPlan(("cosine", "bm25"), 5)
    cached = load_interactions(orders, catalog, ident)
    assert cached.index is not None
    want = compute_shard(read_orders(orders, catalog), ident, plan, 1, 3)[0]

    def no_transpose(*_: object, **__: object) -> None:
        raise AssertionError("a worker transposed the purchases although the parse cache holds them")

    real_tocsr, converted = sp.csc_matrix.tocsr, []

    def own_range_only(m: sp.csc_matrix, *args: object, **kwargs: object) -> sp.csr_matrix:
        converted.append(m.nnz)  # the shard's own books' purchases, to customer-major order
        return real_tocsr(m, *args, **kwargs)  # type: ignore[arg-type]

    with patch.object(sp.csr_matrix, "tocsc", no_transpose), patch.object(sp.csc_matrix, "tocsr", own_range_only):
        got = compute_shard(cached, ident, plan, 1, 3)[0]
    a, b = shard_rows(cached.n_items, 1, 3)
    assert converted and all(nnz == cached.index.by_book[a:b].nnz for nnz in converted)
    assert got.keys() == want.keys()
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender import datacache
from recommender.data import Interactions, PurchaseIndex, read_orders
from recommender.datacache import CACHE_DIR, load_interactions
from recommender.datagen import DatasetSpec, generate
from recommender.errors import InputError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_any_string_ids_without_timestamps(tmp_path: Path) -> None:
    p = _write(tmp_path / "o.csv", "book_id,customer_id,extra\nX-1,alice,1\nY 2,bob,2\nX-1,bob,3\nX-1,alice,4\n")
    data = read_orders(p)
    assert data.ordered_at is None
    assert data.user_ids.tolist() == ["alice", "bob"]
    assert data.item_ids.tolist() == ["X-1", "Y 2"]
    m = data.matrix()
    assert m.toarray().tolist() == [[1.0, 0.0], [1.0, 1.0]]  # repeat purchase counted once


def test_catalog_adds_unsold_books(tmp_path: Path) -> None:
    o = _write(tmp_path / "o.csv", "customer_id,book_id\nc1,b2\n")
    c = _write(tmp_path / "c.csv", "book_id,title\nb1,One\nb2,Two\nb3,Three\n")
    data = read_orders(o, c)
    assert data.item_ids.tolist() == ["b1", "b2", "b3"]
    assert data.matrix().shape == (1, 3)


def test_timestamps_parsed(tmp_path: Path) -> None:
    o = _write(tmp_path / "o.csv", "customer_id,book_id,ordered_at\nc1,b1,2025-01-02T03:04:05Z\nc1,b2,2025-01-01\n")
    data = read_orders(o)
    assert data.ordered_at is not None
    assert data.ordered_at[0] > data.ordered_at[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("customer,book_id\nc1,b1\n", "no column customer_id"),
        ("customer_id,book_id\n", "no orders"),
        ("customer_id,book_id\nc1\n", "line 2"),
        ("customer_id,book_id\nc1,\n", "empty book_id"),
        ("customer_id,book_id,ordered_at\nc1,b1,yesterday\n", "not ISO 8601"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    p = _write(tmp_path / "o.csv", text)
    with pytest.raises(InputError, match=message):
        read_orders(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_orders(tmp_path / "nope.csv")


def test_binary_garbage(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_bytes(b"customer_id,book_id\n\xff\xfe\x00,1\n")
    with pytest.raises(InputError, match="readable"):
        read_orders(p)


def test_codes_round_trip(small_data: Path) -> None:
    data = read_orders(small_data / "orders.csv", small_data / "catalog.csv")
    assert data.users.max() < data.n_users
    assert np.all(np.diff(data.item_ids.astype(str) < data.item_ids.astype(str)) == 0)  # sorted unique
    assert data.matrix().nnz <= data.users.size


_cell = st.text(alphabet=st.sampled_from('ab1,"\n\r Z:-T\x00é'), max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    header=st.lists(st.sampled_from(["customer_id", "book_id", "ordered_at", "x", ""]), min_size=0, max_size=4),
    rows=st.lists(st.lists(_cell, max_size=4), max_size=6),
    raw=st.binary(max_size=40),
)
def test_any_file_parses_or_fails_with_input_error(header: list[str], rows: list[list[str]], raw: bytes) -> None:
    """Whatever the file holds, the reader returns orders or raises InputError (never a traceback)."""
    import tempfile

    text = "\n".join([",".join(header), *(",".join(r) for r in rows)])
    for content in (text.encode("utf-8", "surrogatepass"), raw):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "orders.csv"
            path.write_bytes(content)
            try:
                data = read_orders(path)
            except InputError as err:
                assert str(err).startswith("--orders")
            else:
                assert data.users.size == data.items.size > 0
                assert data.matrix().shape == (data.n_users, data.n_items)


def _same(a: Interactions, b: Interactions) -> None:
    for name in ("user_ids", "item_ids", "users", "items", "ordered_at"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    ma, mb = a.matrix(), b.matrix()  # one of them may come from the cache's stored matrix
    assert ma.dtype == mb.dtype and (ma != mb).nnz == 0 and np.array_equal(ma.indices, mb.indices)


def test_generate_writes_the_parse_cache_as_parsing_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate(DatasetSpec(seed=5, customers=300, books=60, orders=2000), tmp_path)
    orders, catalog = tmp_path / "orders.csv", tmp_path / "catalog.csv"
    parsed = read_orders(orders, catalog)

    def no_parsing(*_: object) -> None:
        raise AssertionError("parsed the CSV although generate wrote the cache")

    monkeypatch.setattr(datacache, "read_orders", no_parsing)
    cached = load_interactions(orders, catalog)
    assert cached.index is not None  # the stored matrix and index, not rebuilt from the orders
    _same(cached, parsed)


def test_parse_cache_follows_the_file_content(tmp_path: Path) -> None:
    o = _write(tmp_path / "o.csv", "customer_id,book_id\nc1,b1\nc2,b1\n")
    assert load_interactions(o).item_ids.tolist() == ["b1"]
    cache = next((tmp_path / CACHE_DIR).glob("*.npz"))
    _write(o, "customer_id,book_id\nc1,b1\nc2,b2\n")  # new content: new key, the old cache is not read
    assert load_interactions(o).item_ids.tolist() == ["b1", "b2"]
    assert len(list((tmp_path / CACHE_DIR).glob("*.npz"))) == 2
    # A damaged cache is ignored and rewritten, never trusted.
    (new,) = set((tmp_path / CACHE_DIR).glob("*.npz")) - {cache}
    new.write_bytes(b"garbage")
    assert load_interactions(o).item_ids.tolist() == ["b1", "b2"]
    assert new.read_bytes() != b"garbage"


def test_purchase_index_selects_the_matrix_building_would(tmp_path: Path) -> None:
    generate(DatasetSpec(seed=6, customers=200, books=40, orders=3000), tmp_path)
    orders, catalog = tmp_path / "orders.csv", tmp_path / "catalog.csv"
    cached, parsed = load_interactions(orders, catalog), read_orders(orders, catalog)
    assert cached.index is not None and parsed.index is None
    rng = np.random.default_rng(0)
    for mask in (rng.random(parsed.users.size) < p for p in (0.0, 0.3, 0.9, 1.0)):
        got, want = cached.matrix(mask), parsed.matrix(mask)
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert got.data.dtype == np.float32 and (got.data == 1).all()


def test_an_inconsistent_index_is_not_trusted(tmp_path: Path) -> None:
    o = _write(tmp_path / "o.csv", "customer_id,book_id\nc1,b1\nc1,b2\nc2,b2\n")
    data = load_interactions(o)
    assert data.index is not None and data.index.valid_for(data)
    index = data.index
    broken = PurchaseIndex(index.matrix, index.entry[::-1].copy(), index.by_book)  # entries of other orders
    assert not broken.valid_for(data)
    # A by-book matrix that is not the transpose: one purchase moved to another book, or to another customer.
    t = index.by_book.toarray()
    for moved in (t[::-1], t[:, ::-1]):
        assert not PurchaseIndex(index.matrix, index.entry, sp.csr_matrix(moved)).valid_for(data)


def test_purchases_are_the_cache_arrays_in_both_layouts(tmp_path: Path) -> None:
    generate(DatasetSpec(seed=7, customers=150, books=30, orders=1500), tmp_path)
    orders, catalog = tmp_path / "orders.csv", tmp_path / "catalog.csv"
    for data in (load_interactions(orders, catalog), read_orders(orders, catalog)):
        x, xt = data.purchases()
        want = data.matrix()
        assert (x != want).nnz == 0 and np.array_equal(x.indices, want.indices)
        assert xt.format == "csr" and (xt != want.T).nnz == 0 and xt.has_canonical_format
        assert x.data.dtype == xt.data.dtype == np.float32 and (x.data == 1).all() and (xt.data == 1).all()
        if data.index is not None:  # shared with the cache, not copied, and protected from writes
            assert x.indices is data.index.matrix.indices and not x.data.flags.writeable
            with pytest.raises(ValueError):
                xt.data[0] = 2.0

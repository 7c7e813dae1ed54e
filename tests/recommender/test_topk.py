from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recommender.topk import csr_rows, csr_topk, csr_view


def _reference(dense: np.ndarray, k: int, offset: int | None) -> list[list[tuple[int, float]]]:
    out = []
    for r, row in enumerate(dense):
        cand = [(c, float(v)) for c, v in enumerate(row) if v > 0 and (offset is None or c != r + offset)]
        cand.sort(key=lambda t: (-t[1], t[0]))
        out.append(cand[:k])
    return out


@settings(max_examples=60, deadline=None)
@given(
    dense=arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 30)),
                 elements=st.sampled_from([0.0, 0.0, 0.5, 1.0, 0.25, 2.0, -1.0, -0.0])),
    k=st.integers(1, 8),
    offset=st.one_of(st.none(), st.integers(0, 3)),
)  # fmt: skip
def test_matches_sorting_every_row(dense: np.ndarray, k: int, offset: int | None) -> None:
    idx, val = csr_topk(sp.csr_matrix(dense), k, exclude_col_offset=offset)
    want = _reference(dense, k, offset)
    for r, expected in enumerate(want):
        got = [(int(c), float(v)) for c, v in zip(idx[r], val[r], strict=True) if c >= 0]
        assert got == expected
        assert (idx[r, len(expected) :] == -1).all()


def test_many_rows_of_varied_length_cross_chunks() -> None:
    rng = np.random.default_rng(1)
    dense = (rng.random((3000, 700)) < rng.random((3000, 1))) * rng.random((3000, 700))
    m = sp.csr_matrix(dense.astype(np.float32))
    idx, val = csr_topk(m, 5)
    ref = np.argsort(-dense, axis=1, kind="stable")[:, :5]
    full = (dense > 0).sum(axis=1) >= 5
    np.testing.assert_array_equal(idx[full], ref[full])
    np.testing.assert_allclose(val[full], np.take_along_axis(dense, ref, axis=1)[full].astype(np.float32))


def test_csr_view_keeps_the_arrays_it_is_given() -> None:
    """scipy's constructor copies a view of a much larger array; `csr_view` and `csr_rows` must not
    (a product in a reused buffer and a row slice are views), and must read the same."""
    big = sp.random(400, 30, density=0.3, format="csr", dtype=np.float32, random_state=1)
    rows = csr_rows(big, 10, 20)
    assert np.shares_memory(rows.data, big.data) and np.shares_memory(rows.indices, big.indices)
    np.testing.assert_array_equal(rows.toarray(), big[10:20].toarray())
    view = csr_view(big.data[:5], big.indices[:5], np.array([0, 5]), (1, 30))
    assert np.shares_memory(view.data, big.data) and np.shares_memory(view.indices, big.indices)
    np.testing.assert_array_equal(csr_topk(view, 3)[1], csr_topk(sp.csr_matrix(view.toarray()), 3)[1])

"""PackedSymmetric: LAPACK's packed triangle against dense numpy, by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.linalg import lapack

from ctxfeatures._packed import PackedSymmetric


def _packed(dense: np.ndarray) -> PackedSymmetric:
    """``dense`` (symmetric) in the packed form, through LAPACK's own copy."""
    size = dense.shape[0]
    order = size + size % 2
    padded = np.eye(order, dtype=np.float32)
    padded[:size, :size] = dense
    values, info = lapack.strttf(np.asfortranarray(padded), transr="N", uplo="L")
    assert info == 0
    return PackedSymmetric(size, values)


def _symmetric(size: int, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=(size, size))
    return (values + values.T).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 13), st.integers(0, 2**16), st.data())
def test_rows_are_the_dense_rows_in_both_halves(size, seed, data):
    dense = _symmetric(size, seed)
    items = data.draw(st.lists(st.integers(0, size - 1), max_size=2 * size))
    packed = _packed(dense)
    got = packed.rows(np.array(items, np.int64))
    assert got.shape == (len(items), size)
    np.testing.assert_array_equal(got, dense[items].reshape(len(items), size))
    np.testing.assert_array_equal(packed.diagonal(), np.diag(dense))


@pytest.mark.parametrize("block_cells", [1, 3 * 9, 2**21])
def test_row_sums_in_blocks_add_each_requests_rows(block_cells):
    dense = _symmetric(9, 0)
    # Request 0: items 8 and 0; request 1: none; request 2: 8, 3 and 4.
    rows = np.array([0, 2, 0, 2, 2])
    items = np.array([8, 8, 0, 3, 4])
    got = _packed(dense).row_sums(rows, items, 3, block_cells)
    expected = np.stack([dense[8] + dense[0], np.zeros(9), dense[[8, 3, 4]].sum(0)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("items", [40, 41])
@pytest.mark.parametrize("block_cells", [1, 7 * 42, 2**24])
def test_inverse_gram_in_blocks_matches_float64_numpy(items, block_cells):
    # Blocks of 1 and 7 users split the Gram accumulation (300 users); an
    # odd size is padded with one item of its own.
    x = (np.random.default_rng(0).random((300, items)) < 0.2).astype(np.float64)
    x[:, 5] = 0.0  # an item nobody rated: its row is 1 / l2 on the diagonal
    packed = PackedSymmetric.inverse_gram(sparse.csr_matrix(x), 3.0, block_cells)
    # Half of the dense matrix (plus one column), not all of it.
    order = items + items % 2
    assert packed._packed.nbytes == 4 * order * (order + 1) // 2
    expected = np.linalg.inv(x.T @ x + 3.0 * np.eye(items))
    np.testing.assert_allclose(packed.rows(np.arange(items)), expected, atol=1e-6)


def test_a_wrong_packed_length_is_refused():
    with pytest.raises(ValueError, match="must hold 10 values for size=3"):
        PackedSymmetric(3, np.zeros(9, np.float32))

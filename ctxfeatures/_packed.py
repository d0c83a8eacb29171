"""A symmetric float32 matrix in half the memory: EASE's ``(XᵀX + l2·I)⁻¹``.

LAPACK's rectangular full packed format (RFP; ``TRANSR='N'``, lower, even
order ``n = 2k``) keeps the ``n(n+1)/2`` values of one triangle in an
``(n + 1) x k`` Fortran array, and its routines work on it with level-3 BLAS:
``sfrk`` accumulates the Gram matrix, ``pftrf`` / ``pftri`` invert it by
Cholesky, in place. So a fit of ``C`` items holds ``2 C²`` bytes, not
``4 C²`` (1.26 GiB -> 0.63 GiB at 18,357 items), for the same arithmetic.

In the C-ordered ``k x (n + 1)`` view ``T`` of that array (its transpose),
row ``h`` of the matrix is a slice of a row of ``T`` plus a slice of a column:

* ``h < k``: columns ``j >= h`` are ``T[h, 1 + j]``, columns ``j < h`` are
  ``T[j, 1 + h]``;
* ``h >= k`` (``g = h - k``): columns ``j < k`` are ``T[j, 1 + h]``, columns
  ``k + i`` are ``T[g, i]`` for ``i <= g`` and ``T[i, g]`` for ``i > g``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class PackedSymmetric:
    """A symmetric ``size x size`` float32 matrix stored as one triangle (RFP).

    An odd ``size`` is stored with one padding row and column, zero off the
    diagonal, so they never mix with the others (``rows`` drops them).
    """

    def __init__(self, size: int, packed: np.ndarray) -> None:
        order = size + size % 2
        if packed.shape != ((order + 1) * (order // 2),):
            raise ValueError(
                f"`packed` must hold {(order + 1) * (order // 2)} values for "
                f"size={size}. Received: shape={packed.shape}"
            )
        self.size = size
        self._order = order
        self._packed = packed
        # The C-ordered transpose of LAPACK's Fortran (order + 1) x half array.
        self._table = packed.reshape((order // 2, order + 1))

    @classmethod
    def inverse_gram(
        cls, matrix: Any, l2: float, block_cells: int = 2**22
    ) -> PackedSymmetric:
        """``(XᵀX + l2·I)⁻¹`` of a sparse users x items ``matrix``.

        Memory is the packed result and one dense float32 block of users
        (``block_cells`` values). Float32 is enough: ``l2`` bounds the
        smallest eigenvalue, so the matrix is well conditioned.
        """
        from scipy.linalg import lapack

        size = matrix.shape[1]
        order = size + size % 2
        packed = np.zeros((order + 1) * (order // 2), np.float32)
        step = max(1, block_cells // order)
        for start in range(0, matrix.shape[0], step):
            part = np.zeros((min(step, matrix.shape[0] - start), order), np.float32)
            part[:, :size] = matrix[start : start + step].toarray()
            # A C-ordered users x items block is its Fortran-ordered transpose:
            # packed += partᵀ·part without a copy (sfrk's trans='N' form).
            packed = lapack.ssfrk(
                order, part.shape[0], 1.0, part.T, 1.0, packed,
                transr="N", uplo="L", trans="N", overwrite_c=1,
            )  # fmt: skip
        result = cls(size, packed)
        result._table[result._diagonal_positions()] += l2
        for name in ("spftrf", "spftri"):  # Cholesky factor, then inverse
            packed, info = getattr(lapack, name)(
                order, packed, transr="N", uplo="L", overwrite_a=1
            )  # fmt: skip
            if info != 0:  # l2 > 0 makes the matrix positive definite
                raise RuntimeError(
                    f"EASE: the Cholesky inverse failed ({name} info={info})."
                )
        # In place, so this is the same memory (and the same values otherwise).
        return cls(size, packed)

    def diagonal(self) -> np.ndarray:
        """The ``size`` diagonal values."""
        return self._table[self._diagonal_positions()][: self.size]

    def _diagonal_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Where items ``0 .. order - 1``'s diagonal values sit in the table."""
        half = np.arange(self._order // 2)
        # First half: T[h, 1 + h]; second half: T[g, g].
        return np.tile(half, 2), np.concatenate([1 + half, half])

    def rows(self, items: np.ndarray) -> np.ndarray:
        """The rows ``items`` (integers in ``[0, size)``), ``len(items) x size``."""
        table, half = self._table, self._order // 2
        out = np.empty((len(items), self._order), np.float32)
        # One row at a time: each reads only its own slices (about half of
        # them strided), where a vectorised gather would read whole columns.
        for row, item in zip(out, np.asarray(items, np.int64).tolist()):
            if item < half:
                row[item:] = table[item, 1 + item :]
                row[:item] = table[:item, 1 + item]
            else:
                own = item - half
                row[:half] = table[:, 1 + item]
                row[half : item + 1] = table[own, : own + 1]
                row[item + 1 :] = table[own + 1 :, own]
        return out[:, : self.size]

    def row_sums(
        self, rows: np.ndarray, items: np.ndarray, count: int, block_cells: int = 2**21
    ) -> np.ndarray:
        """``out[r] = sum of the matrix's rows items[rows == r]``: ``count x size``.

        The distinct items are read ``block_cells`` values at a time, so the
        memory is the result plus that block, whatever the pairs' number.
        """
        from scipy import sparse

        out = np.zeros((count, self.size), np.float32)
        distinct, which = np.unique(np.asarray(items, np.int64), return_inverse=True)
        step = max(1, block_cells // max(self.size, 1))
        rows = np.asarray(rows, np.int64)
        for start in range(0, distinct.size, step):
            chosen = (which >= start) & (which < start + step)
            picks = sparse.csr_matrix(
                (
                    np.ones(int(chosen.sum()), np.float32),
                    (rows[chosen], which[chosen] - start),
                ),
                shape=(count, min(step, distinct.size - start)),
            )
            out += picks @ self.rows(distinct[start : start + step])
        return out

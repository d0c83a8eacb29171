"""Strong, simple baselines to measure every model against.

Both follow the :class:`ctxfeatures.evaluation.Scorer` protocol, so
:func:`ctxfeatures.evaluation.evaluate_top_k` ranks them with the same code,
queries and exclusions as a :class:`~ctxfeatures.RetrievalModel`.

* :class:`MostPopular`: the same ranking for everyone, by training
  popularity, optionally over the last part of the training period only.
* :class:`EASE`: Steck's "Embarrassingly Shallow Autoencoder" (WWW 2019), a
  closed-form item-item model; each query is the items of its ``history``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._columns import as_ids, read_columns
from ctxfeatures._packed import PackedSymmetric

__all__ = ["EASE", "MostPopular"]


def _catalogue(items: np.ndarray, candidates: Any, item: str, owner: str):
    """The distinct ids to rank: ``candidates`` when given, else the fitted items."""
    if candidates is None:
        return np.unique(items)
    if isinstance(candidates, tf.data.Dataset) and not isinstance(
        candidates.element_spec, Mapping
    ):
        candidates = {item: np.concatenate([b.numpy() for b in candidates.batch(4096)])}
    elif not isinstance(candidates, (Mapping, tf.data.Dataset)):
        candidates = {item: np.asarray(candidates)}
    ids = as_ids(read_columns(candidates, [item], owner, ["item"])[item], item, owner)
    if ids.size == 0:
        raise ValueError(f"{owner}: `candidates` is empty.")
    # Each distinct id once, in first-seen order.
    ids = ids[np.sort(np.unique(ids, return_index=True)[1])]
    if (ids.dtype.kind == "U") != (items.dtype.kind == "U"):
        raise TypeError(
            f"{owner}: `candidates` and column '{item}' must both hold string ids "
            "or both integer ids."
        )
    return ids


def _positions(items: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Catalogue position of each item; -1 for items outside the catalogue."""
    order = np.argsort(catalogue, kind="stable")
    found = np.searchsorted(catalogue, items, sorter=order)
    found = np.minimum(found, catalogue.size - 1)
    positions = order[found]
    return np.where(catalogue[positions] == items, positions, -1).astype(np.int64)


def _popularity_order(positions: np.ndarray, size: int) -> np.ndarray:
    """Scores ``size - 1 .. 0`` by descending count (ties: catalogue order)."""
    counts = np.bincount(positions[positions >= 0], minlength=size)
    # A strict order: no two candidates tie, so ranks are never optimistic.
    order = np.lexsort((np.arange(size), -counts))
    scores = np.empty(size, np.float32)
    scores[order] = np.arange(size, 0, -1) - 1
    return scores


class _Baseline:
    """Shared fit plumbing: columns, catalogue, the Scorer attributes."""

    owner = "baseline"
    feature_names: list[str] = []

    def __init__(self) -> None:
        self.candidate_ids: tf.Tensor | None = None
        self.candidate_id: str | None = None

    def _require_fitted(self) -> None:
        if self.candidate_ids is None:
            raise ValueError(f"{self.owner} is not fitted yet: call `fit()` first.")

    def fit(
        self,
        events: Any,
        *,
        user: str = "user_id",
        item: str = "movie_title",
        time: str = "timestamp",
        candidates: Any = None,
    ) -> Any:
        """Fits on ``events``, the training part only.

        Args:
            events: A ``tf.data.Dataset`` of feature dicts or a mapping of
                numpy columns.
            user: User column (read by the baselines that model users).
            item: Item column; also the key of the true item at evaluation.
            time: Time column (read by the baselines that use time).
            candidates: Ids to rank (array, dataset of ids, or of dicts with
                ``item``); by default the fitted items. Unseen candidates rank
                last.

        Returns:
            ``self``.

        Raises:
            ValueError: no events, missing columns or empty ``candidates``.
        """
        owner = f"{self.owner}.fit()"
        roles = self._columns(user=user, item=item, time=time)
        columns = read_columns(events, list(roles), owner, list(roles.values()))
        items = as_ids(columns[item], item, owner)
        if items.size == 0:
            raise ValueError(f"{owner}: received no events.")
        catalogue = _catalogue(items, candidates, item, owner)
        named = {role: columns[key] for key, role in roles.items()}
        named["item"] = items
        self._fit(named, catalogue)
        self.candidate_ids = tf.constant(catalogue)
        self.candidate_id = item
        return self

    def _columns(self, *, user: str, item: str, time: str) -> dict[str, str]:
        """The columns this baseline reads, mapped to their roles."""
        raise NotImplementedError

    def _fit(self, columns: dict[str, np.ndarray], catalogue: np.ndarray) -> None:
        """Fits on the role-named columns; ``catalogue`` holds the ids to rank."""
        raise NotImplementedError

    def _batch_size(self, features: Mapping[str, Any]) -> tf.Tensor:
        first = next(iter(features.values()))
        if isinstance(first, tf.RaggedTensor):
            return first.nrows()
        return tf.shape(first, out_type=tf.int64)[0]


class MostPopular(_Baseline):
    """Recommends the most frequent training items, the same list to everyone.

    ``fit`` reads the item column (and, with ``window_seconds``, the time).

    Args:
        window_seconds: Count only the events of the last ``window_seconds``
            of the fitted period ("recently popular"); ``None`` counts all.

    Example:
        >>> events = {"user_id": np.array(["a", "b", "b"]),
        ...           "item": np.array(["x", "y", "x"])}
        >>> popular = ctxfeatures.baselines.MostPopular().fit(events, item="item")
        >>> popular.top(1)
        ['x']
    """

    owner = "MostPopular"

    def __init__(self, window_seconds: float | None = None) -> None:
        super().__init__()
        if window_seconds is not None:
            if isinstance(window_seconds, bool) or not np.isfinite(window_seconds):
                raise ValueError(
                    "`window_seconds` must be a positive number of seconds or "
                    f"None. Received: window_seconds={window_seconds!r}"
                )
            if window_seconds <= 0:
                raise ValueError(
                    "`window_seconds` must be > 0. Received: "
                    f"window_seconds={window_seconds!r}"
                )
        self.window_seconds = window_seconds
        self._scores: tf.Tensor | None = None

    def _columns(self, *, user: str, item: str, time: str) -> dict[str, str]:
        if self.window_seconds is None:
            return {item: "item"}
        return {item: "item", time: "time"}

    def _fit(self, columns: dict[str, np.ndarray], catalogue: np.ndarray) -> None:
        items = columns["item"]
        if self.window_seconds is not None:
            times = columns["time"]
            items = items[times > times.max() - self.window_seconds]
        positions = _positions(items, catalogue)
        self._scores = tf.constant(_popularity_order(positions, catalogue.size))

    def top(self, k: int) -> list[Any]:
        """The ``k`` most popular candidates, most popular first."""
        self._require_fitted()
        order = tf.argsort(self._scores, direction="DESCENDING")[:k]
        values = tf.gather(self.candidate_ids, order).numpy().tolist()
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]

    def score(self, features: Mapping[str, Any]) -> tf.Tensor:
        """The popularity scores, repeated for each query of the batch."""
        self._require_fitted()
        return tf.tile(self._scores[None, :], [self._batch_size(features), 1])


class EASE(_Baseline):
    """Steck's EASE: a closed-form item-item model (WWW 2019).

    Fitting builds the item-item Gram matrix ``G = XᵀX`` of the binary
    user-item matrix ``X`` and sets ``P = (G + l2·I)⁻¹``,
    ``B = -P / diag(P)`` with a zero diagonal. A query's scores are the sum
    of the rows of ``B`` of the items in its ``history`` feature. Candidates
    with equal scores (for example every one, for an empty history) are
    ordered by popularity.

    ``P`` is symmetric, so only one triangle of it is kept: LAPACK's
    rectangular full packed format, accumulated and inverted in place
    (``C²/2`` float32 values, 190 MB for 10^4 candidates, half of a dense
    ``B``). A batch is scored from the rows of its distinct history items,
    read a block at a time (memory batch × C). The catalogue may hold at
    most ``max_items`` candidates; ``fit`` raises a ``ValueError`` that gives
    the matrix's memory otherwise. ``fit`` reads the user and item columns.

    Args:
        l2: L2 regularisation (Steck's λ; 250 to 1000 suits MovieLens).
        history: Feature of each query's past items.
        max_items: Largest catalogue accepted (memory grows as its square,
            time as its cube).

    Example:
        >>> events = {"user_id": np.array(["a", "a", "b", "b", "c"]),
        ...           "item": np.array(["x", "y", "x", "y", "x"])}
        >>> ease = ctxfeatures.baselines.EASE(l2=1.0).fit(events, item="item")
        >>> query = {"history": tf.constant([["y"]])}
        >>> ease.score(query).numpy().round(2)
        array([[0.67, 0.  ]], dtype=float32)
    """

    owner = "EASE"

    def __init__(
        self, l2: float = 250.0, *, history: str = "history", max_items: int = 20_000
    ) -> None:
        super().__init__()
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 > 0:
            raise ValueError(f"`l2` must be a number > 0. Received: l2={l2!r}")
        if isinstance(max_items, bool) or not isinstance(max_items, int):
            raise TypeError(f"`max_items` must be an integer. Received: {max_items!r}")
        self.l2 = float(l2)
        self.history = history
        self.max_items = max_items
        self.feature_names = [history]
        self._inverse: PackedSymmetric | None = None
        self._table: tf.lookup.StaticHashTable | None = None

    def _columns(self, *, user: str, item: str, time: str) -> dict[str, str]:
        return {user: "user", item: "item"}

    def _fit(self, columns: dict[str, np.ndarray], catalogue: np.ndarray) -> None:
        self._check_size(catalogue.size)
        positions = _positions(columns["item"], catalogue)
        self._inverse = self._solve(columns["user"], positions, catalogue.size)
        self._diagonal = self._inverse.diagonal()
        popularity = _popularity_order(positions, catalogue.size) / catalogue.size
        # Ties (e.g. an empty history) are broken by popularity.
        self._popularity = tf.constant(1e-6 * popularity, tf.float32)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(catalogue), tf.range(catalogue.size, dtype=tf.int64)
            ),
            default_value=-1,
        )

    def _check_size(self, size: int) -> None:
        if size > self.max_items:
            gib = size * (size + 1) * 2 / 2**30
            raise ValueError(
                f"EASE needs a dense symmetric {size:,} x {size:,} item-item "
                f"matrix ({gib:,.1f} GiB in float32, half of it stored, and "
                f"O(n³) time to invert), but max_items={self.max_items:,}. Keep "
                "the most frequent items as candidates, or raise `max_items` if "
                "the memory is there."
            )

    def _solve(
        self, users: np.ndarray, columns: np.ndarray, size: int
    ) -> PackedSymmetric:
        from scipy import sparse

        keep = columns >= 0
        _, rows = np.unique(users[keep], return_inverse=True)
        matrix = sparse.csr_matrix(
            (np.ones(keep.sum(), np.float32), (rows, columns[keep])),
            shape=(int(rows.max()) + 1 if rows.size else 0, size),
        )
        matrix.data[:] = 1.0  # repeated events count once
        return PackedSymmetric.inverse_gram(matrix, self.l2)

    def score(self, features: Mapping[str, Any]) -> tf.Tensor:
        """Sums the weight rows of each query's (distinct) history items."""
        self._require_fitted()
        if self.history not in features:
            raise ValueError(
                f"EASE: feature '{self.history}' (the query's history) is "
                f"missing. Keys: {sorted(features)}."
            )
        history = features[self.history]
        if not isinstance(history, tf.RaggedTensor):
            history = tf.RaggedTensor.from_tensor(history)
        if (history.dtype == tf.string) != (self.candidate_ids.dtype == tf.string):
            raise TypeError(
                f"EASE: feature '{self.history}' holds {history.dtype.name} but "
                f"the fitted items are {self.candidate_ids.dtype.name}."
            )
        values = history.flat_values
        if values.dtype != tf.string:
            values = tf.cast(values, tf.int64)
        size = tf.cast(tf.shape(self.candidate_ids)[0], tf.int64)
        index = self._table.lookup(values)
        # Distinct (row, item) pairs: padding and unknown items drop out.
        pairs, _ = tf.unique(
            tf.boolean_mask(history.value_rowids() * size + index, index >= 0)
        )
        # The weights live in numpy (half of a symmetric matrix, which no
        # TensorFlow op reads); memory is batch x catalogue. A traced graph
        # keeps its function alive: it holds a weak reference to this EASE
        # only, so that dropping the EASE frees its matrix.
        scores = tf.numpy_function(
            _weight_sums(weakref.ref(self)),
            [pairs // size, pairs % size, history.nrows()],
            tf.float32,
            stateful=False,
        )
        scores.set_shape([None, self.candidate_ids.shape[0]])
        return scores + self._popularity[None, :]

    def _weight_sums(
        self, rows: np.ndarray, items: np.ndarray, count: np.integer
    ) -> np.ndarray:
        """Sums of the rows of ``B = -P / diag(P)`` (zero diagonal) per request."""
        sums = self._inverse.row_sums(rows, items, int(count))
        # Each item's own term P[h, h] is left out: B's diagonal is zero.
        sums[rows, items] -= self._diagonal[items]
        sums /= -self._diagonal
        return sums


def _weight_sums(ease: weakref.ref) -> Callable[..., np.ndarray]:
    def sums(rows: np.ndarray, items: np.ndarray, count: np.integer) -> np.ndarray:
        return ease()._weight_sums(rows, items, count)

    return sums

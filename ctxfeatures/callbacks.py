"""Keras callbacks for retrieval models: top-k validation during ``fit``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures._data import as_dataset
from ctxfeatures.layers._inputs import check_positive_int

__all__ = ["TopKValidation"]


class TopKValidation(tf.keras.callbacks.Callback):
    """Adds validation hit rate, NDCG and MRR to the logs at the end of epochs.

    Runs :meth:`ctxfeatures.RetrievalModel.evaluate_top_k` on ``data`` (the
    catalogue embedded once) and writes ``val_top_{k}``, ``val_ndcg_{k}`` and
    ``val_mrr`` into the epoch's logs, Keras' convention for validation
    metrics: they appear in ``History``, and ``EarlyStopping`` or
    ``ModelCheckpoint`` placed *after* this callback in the list can monitor
    them (Keras calls callbacks in order, on one logs dict). Use a validation
    slice of the *training* period (for example its last events in time, see
    :func:`ctxfeatures.splits.chronological_split`), never the test set, so
    that what the callback selects is not tuned on the test.

    With ``every > 1`` the metrics are missing from the epochs skipped, so
    keep ``every=1`` under ``EarlyStopping``.

    Args:
        data: Validation events, as
            :meth:`~ctxfeatures.RetrievalModel.evaluate_top_k` takes them.
        ks: Cut-offs reported.
        exclude: Optional feature of items removed from each ranking (e.g.
            ``"history"``).
        every: Evaluate every ``every`` epochs (and after the last one).
        batch_size: Batch size when ``data`` is unbatched.

    Example::

        model.fit(
            train, epochs=30,
            callbacks=[
                TopKValidation(validation, ks=(10, 100), exclude="history"),
                tf.keras.callbacks.EarlyStopping(
                    "val_top_100", mode="max", patience=2,
                    restore_best_weights=True),
            ])

    Raises:
        ValueError: ``every`` or ``batch_size`` below 1, or an empty ``ks``.
    """

    def __init__(
        self,
        data: tf.data.Dataset | Mapping[str, Any],
        ks: Sequence[int] = (10, 100),
        *,
        exclude: str | None = None,
        every: int = 1,
        batch_size: int = 4096,
    ) -> None:
        super().__init__()
        # A mapping of columns is converted once, here, not at every epoch.
        data = as_dataset(data, "TopKValidation()")
        if not list(ks):
            raise ValueError("TopKValidation: `ks` must name at least one cut-off.")
        self.data = data
        self.ks = tuple(ks)
        self.exclude = exclude
        self.every = check_positive_int(every, "every")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self._last_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not hasattr(self.model, "evaluate_top_k"):
            raise TypeError(
                "TopKValidation needs a ctxfeatures.RetrievalModel (a model "
                f"with evaluate_top_k); received {type(self.model).__name__}."
            )
        self._last_epoch = self.params.get("epochs") if self.params else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        last = self._last_epoch is not None and epoch + 1 == self._last_epoch
        if (epoch + 1) % self.every and not last:
            return
        results = self.model.evaluate_top_k(
            self.data, ks=self.ks, exclude=self.exclude, batch_size=self.batch_size
        )
        if logs is not None:
            logs.update({f"val_{key}": value for key, value in results.items()})

"""A feature layer's adapt state: gathered, merged, finalized and restored.

:class:`AdaptState` is the half of :class:`~ctxfeatures.FeatureLayer` that
learns from data. A layer's ``_new_accumulator()`` returns a typed,
TensorFlow-free accumulator (:mod:`ctxfeatures.layers.state`); ``adapt``
feeds it numpy batches and keeps what it finalizes as the layer's
``learned_state``, which ``_apply_state`` turns into the composed Keras
layers. An array state is also kept in a non-trainable float64 weight
(``_state_weight``, made by the layer's ``build``), from which it is
restored after weights are loaded or set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import iterate_batches
from ctxfeatures.layers.state import (
    Accumulator,
    ArrayState,
    EmptyAdaptError,
    Vocabulary,
)


@contextlib.contextmanager
def unlocked(layer: tf.keras.layers.Layer) -> Iterator[None]:
    """Lets a built layer replace its composed layers (Keras 3 locks them).

    Keras 3 refuses new sub-layers or variables on a built layer. A feature
    layer builds its lookups, tables and normalisation from the adapted
    state, which arrives after build when it re-adapts or when a ``.keras``
    file's vocabulary loads. Keras 2 has no such lock.
    """
    tracker = getattr(layer, "_tracker", None)
    locked = bool(getattr(tracker, "locked", False))
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            tracker.lock()


class AdaptState:
    """The adapt contract of :class:`~ctxfeatures.FeatureLayer` (a mixin of
    it, not a layer): the attributes ``_learned``, ``_accumulator`` and
    ``_state_weight`` are set by the layer's ``__init__``, and ``_validate``
    and ``_owner`` are the layer's."""

    _learned: Vocabulary | ArrayState | None
    _accumulator: Accumulator | None
    _state_weight: tf.Variable | None

    def _new_accumulator(self) -> Accumulator | None:
        """A fresh accumulator, or None when the layer learns nothing."""
        return None

    def _adapt_values(self, batch: Any) -> np.ndarray:
        """One raw batch as the numpy values the accumulator takes."""
        values = self._validate(batch)
        if isinstance(values, tf.RaggedTensor):
            values = values.flat_values
        return values.numpy()

    def _apply_state(self, state: Any) -> None:
        """Configures the composed layers from a learned state."""

    def _state_size(self) -> int:
        """Length of the float64 weight that holds an array state."""
        raise NotImplementedError

    @property
    def needs_adapt(self) -> bool:
        """Whether ``adapt`` learns anything (False for fixed configurations)."""
        return self._new_accumulator() is not None

    @property
    def is_adapted(self) -> bool:
        """Whether the layer holds the state it needs to be called."""
        return self._learned is not None or not self.needs_adapt

    @property
    def learned_state(self) -> Vocabulary | ArrayState | None:
        """What :meth:`adapt` learned (None before, or when nothing is learned)."""
        return self._learned

    def _set_state(self, state: Vocabulary | ArrayState) -> None:
        previous, self._learned = self._learned, state
        try:
            with unlocked(self):
                self._apply_state(state)
        except Exception:
            # A rejected state leaves the layer as it was, never half-changed.
            self._learned = previous
            if previous is not None:
                with unlocked(self):
                    self._apply_state(previous)
            raise
        if self._state_weight is not None:
            self._state_weight.assign(state.to_array())

    def reset_state(self) -> None:
        """Starts a new adapt: clears the statistics gathered so far."""
        self._accumulator = self._new_accumulator()

    def update_state(self, data: Any) -> None:
        """Accumulates statistics from one batch of raw values."""
        if not self.needs_adapt:
            return
        if self._accumulator is None:
            self.reset_state()
        values = self._adapt_values(data)
        if values.size:
            self._accumulator.update(values)

    @property
    def pending_state(self) -> Accumulator | None:
        """Statistics gathered by :meth:`update_state` and not yet finalized.

        A picklable accumulator (see :mod:`ctxfeatures.layers.state`), so one
        shard's statistics can travel to another process and be merged there
        with :meth:`merge_state`. None outside an adapt.
        """
        return self._accumulator

    def merge_state(self, statistics: Accumulator) -> None:
        """Adds statistics gathered elsewhere (another shard, another process).

        ``reset_state()``, then ``merge_state`` for each shard's
        :attr:`pending_state`, then :meth:`finalize_state` learns what one
        ``adapt`` over all the shards would.

        Raises:
            TypeError: statistics of another kind of layer.
        """
        if not self.needs_adapt:
            return
        if self._accumulator is None:
            self.reset_state()
        if type(statistics) is not type(self._accumulator):
            raise TypeError(
                f"{self._owner()}.merge_state() takes the statistics of the same "
                f"kind of layer ({type(self._accumulator).__name__}); received "
                f"{type(statistics).__name__}."
            )
        self._accumulator.merge(statistics)

    def finalize_state(self) -> None:
        """Turns the accumulated statistics into the layer's state.

        Outside an adapt (no statistics gathered, e.g. when Keras'
        ``set_weights`` or ``EarlyStopping(restore_best_weights=True)`` calls
        it after restoring weights), it re-reads an array state from the
        restored weight and otherwise changes nothing.
        """
        if not self.needs_adapt:
            return
        accumulator, self._accumulator = self._accumulator, None
        if accumulator is None:
            self._restore_array_state()
            return
        try:
            self._set_state(accumulator.finalize())
        except EmptyAdaptError:
            raise ValueError(
                f"{self._owner()}.adapt() received no data (an empty array or "
                "dataset). Pass at least one value."
            ) from None
        except ValueError as error:
            raise ValueError(f"{self._owner()}: {error}") from None

    def adapt(
        self,
        data: Any,
        batch_size: int | None = None,
        steps: int | None = None,
        *,
        drop_missing: bool = False,
    ) -> None:
        """Learns the layer's state from data, like Keras preprocessing layers.

        Args:
            data: The raw values of this feature: a numpy array, a list, a
                tensor, a ragged tensor or a ``tf.data.Dataset`` (batched or
                not).
            batch_size: Batch size used to stream arrays or unbatched datasets.
            steps: Read at most this many batches.
            drop_missing: Drop missing values (None or NaN in an object
                array, e.g. from pandas) instead of raising an error.

        Raises:
            ValueError: no data, missing values (unless ``drop_missing``), or
                values the layer rejects (its checks name the fix).
        """
        if not self.needs_adapt:
            return
        self.reset_state()
        for batch in iterate_batches(
            data,
            batch_size=batch_size,
            steps=steps,
            owner=self._owner(),
            drop_missing=drop_missing,
        ):
            if not (batch.shape.rank and batch.shape[0] == 0):
                self.update_state(batch)
        self.finalize_state()

    def _state_is_array(self) -> bool:
        accumulator = self._new_accumulator()
        return accumulator is not None and issubclass(
            accumulator.state_type, ArrayState
        )

    def _restore_array_state(self) -> None:
        """Takes the state from its weight, when it holds one (count > 0)."""
        if self._state_weight is not None:
            values = self._state_weight.numpy()
            if values[0] > 0:
                state_type = self._new_accumulator().state_type
                self._set_state(state_type.from_array(values))

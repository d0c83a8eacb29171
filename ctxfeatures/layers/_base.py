"""FeatureLayer: the two-stage call and the adapt-state rule of every layer.

A feature layer maps one raw feature (a batch of ids, timestamps or strings)
to a dense ``(batch, output_dim)`` float32 tensor, in two stages:

* :meth:`FeatureLayer.preprocess`: validation and the adapted, non-trainable
  state (lookup, tokenisation, bucketing, normalisation);
* :meth:`FeatureLayer.embed`: the trainable part.

``layer(x)`` is ``layer.embed(layer.preprocess(x))``: there is no other path.

Adapt state has one rule. A layer's ``_new_accumulator()`` returns a typed,
TensorFlow-free accumulator (:mod:`ctxfeatures.layers.state`); adapt feeds
it numpy batches and stores what it finalizes as the layer's
:attr:`~FeatureLayer.learned_state`, which ``_apply_state`` hands to the
composed Keras layers. This class alone persists that state: a
:class:`~ctxfeatures.layers.state.Vocabulary` as a UTF-8 JSON asset, an
:class:`~ctxfeatures.layers.state.ArrayState` as one non-trainable float64
weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import (
    in_shape_inference_graph,
    iterate_batches,
    placeholder_output,
)
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


def reapply_states(model: tf.keras.layers.Layer) -> None:
    """Every feature layer of ``model`` takes the state its weight now holds.

    After ``model.set_weights`` (and so Keras' ``restore_best_weights``):
    tf-keras calls each layer's ``finalize_state`` there, Keras 3 only assigns
    the variables, which would leave lookups and statistics behind.
    """
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, FeatureLayer):
            layer._restore_array_state()


class FeatureLayer(tf.keras.layers.Layer):
    """Base class of the feature layers: adapt contract, two-stage call.

    Subclasses implement ``output_dim``, :meth:`input_signature`,
    ``_validate`` (raw input to checked values), ``_transform`` (checked values
    to prepared values) and :meth:`embed`. A layer that learns from data also
    implements ``_new_accumulator`` and ``_apply_state`` (and, for a state of
    numbers, ``_state_size``). See :doc:`/design` for a worked example; a layer
    computed in one step can subclass :class:`OneStageFeatureLayer` instead.

    Args:
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: The raw feature, as ``input_signature()`` describes it.
        training: Whether the call is part of a training step.

    Returns:
        A ``(batch, output_dim)`` float32 tensor, ``embed(preprocess(inputs))``.

    Example:
        >>> layer = cf.IdEmbedding(2, vocabulary=["a", "b"])
        >>> isinstance(layer, cf.FeatureLayer), layer.output_dim
        (True, 2)
        >>> prepared = layer.preprocess(tf.constant(["b"]))  # in tf.data
        >>> layer.embed(prepared).shape  # in the training step
        TensorShape([1, 2])
    """

    #: What one raw input value is, for error messages.
    input_description = "value"
    #: The names of the init arguments, each kept as the attribute of the same
    #: name. ``get_config`` returns exactly those (collected over the class
    #: hierarchy).
    config_keys: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._learned: Vocabulary | ArrayState | None = None
        self._accumulator: Accumulator | None = None
        self._state_weight: tf.Variable | None = None

    def _owner(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    @property
    def output_dim(self) -> int:
        """Size of the last axis of the layer's output."""
        raise NotImplementedError

    def input_signature(self) -> tf.TensorSpec:
        """The raw input this layer serves, as a spec with a batch axis."""
        raise NotImplementedError

    # ----------------------------------------------------------------- state
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

    # ----------------------------------------------------------------- saving
    def build(self, input_shape: Any = None) -> None:
        learned_array = self.needs_adapt and self._state_is_array()
        if learned_array and self._state_weight is None:
            initial = (
                self._learned.to_array()
                if self._learned is not None
                else np.zeros(self._state_size())
            )
            # count == 0 (all zeros) marks "not adapted" in a saved file.
            self._state_weight = self.add_weight(
                name="learned_state",
                shape=(self._state_size(),),
                dtype=tf.float64,
                initializer=tf.keras.initializers.Constant(initial),
                trainable=False,
            )
        self.built = True

    def _state_is_array(self) -> bool:
        accumulator = self._new_accumulator()
        return accumulator is not None and issubclass(
            accumulator.state_type, ArrayState
        )

    def save_own_variables(self, store: Any) -> None:
        # Loading always builds the layer: a layer saved before its first call
        # creates its variables now, so the file holds what loading expects.
        if not self.built:
            self.build(None)
        super().save_own_variables(store)

    def load_own_variables(self, store: Any) -> None:
        super().load_own_variables(store)
        self._restore_array_state()

    def _restore_array_state(self) -> None:
        """Takes the state from its weight, when it holds one (count > 0)."""
        if self._state_weight is not None:
            values = self._state_weight.numpy()
            if values[0] > 0:
                state_type = self._new_accumulator().state_type
                self._set_state(state_type.from_array(values))

    def save_assets(self, dir_path: str) -> None:
        if self.needs_adapt and isinstance(self._learned, Vocabulary):
            self._learned.write(dir_path)

    def load_assets(self, dir_path: str) -> None:
        state = Vocabulary.read(dir_path)
        if state is not None and self.needs_adapt:
            self._set_state(state)

    # ----------------------------------------------------------------- calls
    def _validate(self, inputs: Any) -> Any:
        """Checks and reshapes the raw input; raises ValueError/TypeError."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither the two stages "
            "(`_validate`, `_transform`, `embed`) nor, as a subclass of "
            "OneStageFeatureLayer, a one-stage `call`."
        )

    def _transform(self, values: Any) -> Any:
        """Applies the adapted, non-trainable state to validated values."""
        return values

    @tf.autograph.experimental.do_not_convert
    def preprocess(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        """Runs the non-trainable stage: raw values to prepared values.

        Pure TensorFlow with no variables to train, so it can run inside
        ``tf.data.Dataset.map`` and be cached; see
        :meth:`ctxfeatures.RetrievalModel.prepare`.

        Args:
            inputs: A batch of raw values, as accepted by the layer's call.

        Returns:
            The prepared batch that :meth:`embed` takes (ids, bucket ids,
            token ids or already-final float features).
        """
        values = self._validate(inputs)
        self._require_adapted()
        if not self.built:
            # As Keras' own _maybe_build: variables and their initial values
            # must be created eagerly, even when called inside tf.data.
            with tf.init_scope():
                self.build(None)
        return self._transform(values)

    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        """Runs the trainable stage on :meth:`preprocess` output.

        Args:
            prepared: The output of :meth:`preprocess`.
            training: Whether the call is a training step (some layers, e.g.
                :class:`~ctxfeatures.TimestampBuckets` with ``dropout``,
                behave differently then).

        Returns:
            A ``(batch, output_dim)`` float32 tensor.
        """
        raise NotImplementedError

    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        if not self.is_adapted and in_shape_inference_graph():
            return placeholder_output(self._validate(inputs), self.output_dim)
        return self.embed(self.preprocess(inputs), training=training)

    def _require_adapted(self) -> None:
        if not self.is_adapted:
            raise ValueError(
                f"{self._owner()} is not adapted yet: call `adapt()` on "
                "training data first"
                + self._not_adapted_hint()
                + " (or `Tower.adapt()` for a whole tower)."
            )

    def _not_adapted_hint(self) -> str:
        return ""

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        input_shape = tf.TensorShape(input_shape)
        batch = input_shape[0] if input_shape.rank else None
        return tf.TensorShape([batch, self.output_dim])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for cls in reversed(type(self).__mro__):
            for key in vars(cls).get("config_keys", ()):
                config[key] = self._config_value(key)
        return config

    def _config_value(self, key: str) -> Any:
        value = getattr(self, key)
        # Keras wraps list attributes for tracking: return plain lists.
        if isinstance(value, (list, tuple)):
            return list(value)
        return value


class OneStageFeatureLayer(FeatureLayer):
    """Adapter for a feature layer computed in one step: implement ``call``.

    ``preprocess`` passes the raw values through and ``embed`` runs
    the layer's ``call``, so the layer works in a :class:`~ctxfeatures.Tower`
    and with :meth:`~ctxfeatures.RetrievalModel.prepare` (its work then runs
    on every step instead of once in the input pipeline). Such a layer
    learns nothing from data; give it ``output_dim`` and ``input_signature``.

    Args:
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: The raw feature, as ``input_signature()`` describes it.
        training: Whether the call is part of a training step.

    Returns:
        ``(batch, output_dim)`` float32, as the subclass's ``call`` computes.

    Example:
        >>> class Doubled(cf.OneStageFeatureLayer):
        ...     output_dim = 1
        ...     def input_signature(self):
        ...         return tf.TensorSpec([None], tf.float32)
        ...     def call(self, inputs, training=None):
        ...         return 2.0 * inputs[:, None]
        >>> Doubled()(tf.constant([1.0, 3.0])).numpy().tolist()
        [[2.0], [6.0]]
    """

    def preprocess(self, inputs: Any) -> Any:
        return inputs

    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        return self(prepared, training=training)

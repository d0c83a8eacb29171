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
composed Keras layers (``AdaptState``, in ``_adapt_state.py``,
holds that half). This class alone persists the state: a
:class:`~ctxfeatures.layers.state.Vocabulary` as a UTF-8 JSON asset, an
:class:`~ctxfeatures.layers.state.ArrayState` as one non-trainable float64
weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._adapt_state import AdaptState
from ctxfeatures.layers._inputs import (
    in_shape_inference_graph,
    placeholder_output,
)
from ctxfeatures.layers.state import (
    Accumulator,
    ArrayState,
    Vocabulary,
)


def reapply_states(model: tf.keras.layers.Layer) -> None:
    """Every feature layer of ``model`` takes the state its weight now holds.

    After ``model.set_weights`` (and so Keras' ``restore_best_weights``):
    tf-keras calls each layer's ``finalize_state`` there, Keras 3 only assigns
    the variables, which would leave lookups and statistics behind.
    """
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, FeatureLayer):
            layer._restore_array_state()


class FeatureLayer(AdaptState, tf.keras.layers.Layer):
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

    def save_own_variables(self, store: Any) -> None:
        # Loading always builds the layer: a layer saved before its first call
        # creates its variables now, so the file holds what loading expects.
        if not self.built:
            self.build(None)
        super().save_own_variables(store)

    def load_own_variables(self, store: Any) -> None:
        super().load_own_variables(store)
        self._restore_array_state()

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

"""Tower: feature layers, concatenated, then a dense projection head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from ctxfeatures._data import as_dataset
from ctxfeatures.adapting import adapt_towers
from ctxfeatures.layers._base import FeatureLayer, reapply_states
from ctxfeatures.layers._inputs import (
    check_positive_int,
    in_shape_inference_graph,
    placeholder_output,
)

FeatureSpec = Mapping[str, "tf.keras.layers.Layer | Sequence[tf.keras.layers.Layer]"]


def _feature_dim(layer: tf.keras.layers.Layer) -> int:
    dim = getattr(layer, "output_dim", None)
    if isinstance(dim, int):
        return dim
    try:
        return int(layer.compute_output_shape(tf.TensorShape([None]))[-1])
    except Exception as error:  # noqa: BLE001 - any failure means "unknown"
        raise TypeError(
            f"Cannot tell the output size of layer {layer.name!r} "
            f"({type(layer).__name__}): give it an `output_dim` property or a "
            f"`compute_output_shape` for (batch,) inputs. ({error})"
        ) from None


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class Tower(tf.keras.Model):
    """A query or candidate tower built from a feature mapping.

    Each named feature goes through its layer (or list of layers); the
    results are concatenated and passed through a dense head: ``head_units``
    sizes, ``activation`` between layers, a linear last layer and optional L2
    normalisation. Input keys the tower does not use are ignored, so one dict
    of all features can feed both towers.

    Args:
        features: Mapping of feature name to a layer or a list of layers, each
            applied to that raw feature.
        head_units: Sizes of the dense head; the last one is the tower's output
            size. ``()`` returns the concatenated features unchanged.
        activation: Activation between head layers (not after the last).
        l2_normalize: L2-normalise the output (cosine-similarity retrieval).
        name: Name of the tower, used in error messages.
        **kwargs: Other ``tf.keras.Model`` arguments.

    Call arguments:
        inputs: A mapping of raw features (tensors with a batch axis); keys
            the tower does not read are ignored.
        training: Whether the call is part of a training step.

    Returns:
        ``(batch, output_dim)`` float32 vectors.

    Example:
        >>> tower = ctxfeatures.Tower(
        ...     {"user_id": ctxfeatures.IdEmbedding(8),
        ...      "hour": ctxfeatures.CyclicalTime()},
        ...     head_units=(16, 4), name="query")
        >>> ds = tf.data.Dataset.from_tensor_slices(
        ...     {"user_id": ["a", "b"], "hour": [0, 3600], "unused": [1, 2]})
        >>> tower.adapt(ds.batch(2))
        >>> tower({"user_id": tf.constant(["a"]), "hour": tf.constant([7200])}).shape
        TensorShape([1, 4])

    Raises:
        ValueError: an empty mapping, empty ``head_units`` entries, or (when
            called) a feature missing from the inputs.
        TypeError: a value that is not a Keras layer.
    """

    def __init__(
        self,
        features: FeatureSpec,
        head_units: Sequence[int] = (32,),
        activation: str | None = "relu",
        l2_normalize: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not isinstance(features, Mapping) or not features:
            raise ValueError(
                f"Tower '{self.name}': `features` must be a non-empty mapping of "
                f"feature name to layer(s). Received: {features!r}"
            )
        names: list[str] = []
        layers: list[tf.keras.layers.Layer] = []
        for feature, value in features.items():
            group = list(value) if isinstance(value, (list, tuple)) else [value]
            if not group:
                raise ValueError(
                    f"Tower '{self.name}': feature '{feature}' has no layer."
                )
            for layer in group:
                if not isinstance(layer, tf.keras.layers.Layer):
                    raise TypeError(
                        f"Tower '{self.name}': feature '{feature}' must map to "
                        f"Keras layers; received {type(layer).__name__}."
                    )
                names.append(str(feature))
                layers.append(layer)
        # Flat lists (not a dict of lists) so .keras saving reaches every layer.
        self._layer_features = names
        self.feature_layers = layers
        self.head_units = [
            check_positive_int(units, "head_units[i]") for units in head_units
        ]
        self.activation = activation
        self.l2_normalize = bool(l2_normalize)
        self.head = [
            tf.keras.layers.Dense(
                units,
                activation=activation if i < len(self.head_units) - 1 else None,
                name=f"head_{i}",
            )
            for i, units in enumerate(self.head_units)
        ]

    # ----------------------------------------------------------------- shape
    @property
    def feature_names(self) -> list[str]:
        """The raw input keys this tower reads, in first-use order."""
        return list(dict.fromkeys(self._layer_features))

    @property
    def features(self) -> dict[str, list[tf.keras.layers.Layer]]:
        """Feature name to the layers applied to it."""
        mapping: dict[str, list[tf.keras.layers.Layer]] = {}
        for feature, layer in zip(self._layer_features, self.feature_layers):
            mapping.setdefault(feature, []).append(layer)
        return mapping

    @property
    def output_dim(self) -> int:
        """Size of the tower's output vectors."""
        if self.head_units:
            return self.head_units[-1]
        return sum(_feature_dim(layer) for layer in self.feature_layers)

    def input_signature(self) -> dict[str, tf.TensorSpec | tf.RaggedTensorSpec]:
        """Raw input spec of each feature, from its first layer."""
        specs = {}
        for feature, layers in self.features.items():
            spec = getattr(layers[0], "input_signature", None)
            if spec is None:
                raise TypeError(
                    f"Tower '{self.name}': cannot tell the raw input type of "
                    f"feature '{feature}' (layer {layers[0].name!r})."
                )
            specs[feature] = spec()
        return specs

    def build(self, input_shape: Any = None) -> None:
        """Creates every variable; needs no inputs since sizes are known."""
        width = 0
        for layer in self.feature_layers:
            if not layer.built:
                layer.build(None)
            width += _feature_dim(layer)
        for dense in self.head:
            if not dense.built:
                dense.build((None, width))
            width = dense.units
        self.built = True

    def get_build_config(self) -> dict[str, Any]:
        return {"built": True}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.build()

    def save_own_variables(self, store: Any) -> None:
        # Loading always builds (see get_build_config): so does saving.
        if not self.built:
            self.build()
        super().save_own_variables(store)

    def set_weights(self, weights: Any) -> None:
        super().set_weights(weights)
        reapply_states(self)  # Keras 3 assigns variables only

    # ----------------------------------------------------------------- adapt
    def adapt(self, data: Any, steps: int | None = None) -> None:
        """Adapts every feature layer in one pass over the data.

        Args:
            data: A ``tf.data.Dataset`` of feature dicts, batched or not, or a
                mapping of equal-length columns (lists, arrays, a DataFrame).
            steps: Read at most this many batches.
        """
        adapt_towers(as_dataset(data, "Tower.adapt()"), self, steps=steps)

    def _adaptable(self) -> list[tuple[str, tf.keras.layers.Layer]]:
        return [
            (feature, layer)
            for feature, layer in zip(self._layer_features, self.feature_layers)
            if getattr(layer, "needs_adapt", False)
        ]

    # ----------------------------------------------------------------- call
    def _feature_value(self, inputs: Mapping[str, Any], feature: str) -> Any:
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"Tower '{self.name}' takes a dict of raw features; received "
                f"{type(inputs).__name__}."
            )
        if feature not in inputs:
            raise ValueError(
                f"Tower '{self.name}': feature '{feature}' is missing from the "
                f"inputs. Received keys: {sorted(inputs)}. Add it to the input "
                "dict or remove it from the tower."
            )
        return inputs[feature]

    def _run(self, feature: str, fn: Any, value: Any, **kwargs: Any) -> Any:
        try:
            return fn(value, **kwargs)
        except (ValueError, TypeError) as error:
            # Re-raise with the tower and feature, keeping the fix.
            raise type(error)(
                f"Tower '{self.name}', feature '{feature}': {error}"
            ) from None

    def _slots(self) -> list[tuple[str, str, tf.keras.layers.Layer]]:
        """(slot key, feature, layer) of every feature layer, in order."""
        return [
            (f"{i}:{feature}", feature, layer)
            for i, (feature, layer) in enumerate(
                zip(self._layer_features, self.feature_layers)
            )
        ]

    @tf.autograph.experimental.do_not_convert
    def preprocess(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Runs the non-trainable stage of every feature layer.

        Vocabulary lookups, tokenisation, bucketing and normalisation need no
        gradient, so they can run once in the input pipeline (and be cached)
        instead of on every training step. :meth:`embed` takes the result,
        and a call of the tower is ``embed(preprocess(x))``. A plain Keras
        layer (not a :class:`~ctxfeatures.FeatureLayer`) is one stage: its
        raw feature passes through here and the layer runs in :meth:`embed`.

        Args:
            inputs: A dict of raw feature batches (extra keys are ignored).

        Returns:
            A dict of prepared values, one entry per feature layer.
        """
        if not self.built:
            with tf.init_scope():
                self.build()
        prepared = {}
        for slot, feature, layer in self._slots():
            value = self._feature_value(inputs, feature)
            if isinstance(layer, FeatureLayer):
                value = self._run(feature, layer.preprocess, value)
            prepared[slot] = value
        return prepared

    @tf.autograph.experimental.do_not_convert
    def embed(self, prepared: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        """Runs the trainable stage on the output of :meth:`preprocess`."""
        outputs = []
        for slot, feature, layer in self._slots():
            if slot not in prepared:
                raise ValueError(
                    f"Tower '{self.name}': prepared input '{slot}' is missing. "
                    "Pass the output of this tower's `preprocess()`."
                )
            fn = layer.embed if isinstance(layer, FeatureLayer) else layer
            value = self._run(feature, fn, prepared[slot], training=training)
            outputs.append(tf.cast(value, tf.float32))
        return self._head(outputs)

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        if in_shape_inference_graph() and not self.is_adapted:
            # Keras traces a loaded tower on placeholders before its state is
            # restored; that graph never runs (see in_shape_inference_graph).
            value = self._feature_value(inputs, self._layer_features[0])
            return placeholder_output(value, self.output_dim)
        return self.embed(self.preprocess(inputs), training=training)

    @property
    def is_adapted(self) -> bool:
        """Whether every feature layer holds the state it needs."""
        return all(getattr(layer, "is_adapted", True) for layer in self.feature_layers)

    def _same_batch(self, outputs: list[tf.Tensor]) -> list[tf.Tensor]:
        """One row per example in every feature, or an error naming them."""
        if len(outputs) < 2:
            return outputs
        names = self._layer_features
        message = (
            f"Tower '{self.name}': features '{names[0]}' and '{{}}' have different "
            "batch sizes; every feature needs one value per example."
        )
        first = outputs[0].shape[0]
        for name, value in zip(names[1:], outputs[1:]):
            if first is not None and value.shape[0] not in (None, first):
                raise ValueError(message.format(name))
        if tf.executing_eagerly() or (
            first is not None and all(v.shape[0] == first for v in outputs)
        ):
            return outputs
        size = tf.shape(outputs[0])[0]
        checks = [
            tf.debugging.Assert(tf.equal(tf.shape(v)[0], size), [message.format(n)])
            for n, v in zip(names[1:], outputs[1:])
        ]
        with tf.control_dependencies(checks):
            return [tf.identity(v) for v in outputs]

    def _head(self, outputs: list[tf.Tensor]) -> tf.Tensor:
        outputs = self._same_batch(outputs)
        x = tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        for dense in self.head:
            x = dense(x)
        if self.l2_normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape([None, self.output_dim])

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        features = {
            feature: [tf.keras.layers.serialize(layer) for layer in layers]
            for feature, layers in self.features.items()
        }
        return {
            "name": self.name,
            "features": features,
            "head_units": list(self.head_units),
            "activation": self.activation,
            "l2_normalize": self.l2_normalize,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Tower:
        config = dict(config)
        config["features"] = {
            feature: [
                tf.keras.layers.deserialize(layer, custom_objects=custom_objects)
                for layer in layers
            ]
            for feature, layers in config["features"].items()
        }
        return cls(**config)


class PreparedBatch(NamedTuple):
    """A batch after :meth:`RetrievalModel.prepare`.

    Attributes:
        query: The query tower's :meth:`~ctxfeatures.Tower.preprocess` output.
        candidate: The candidate tower's output.
        context: The raw columns the loss reads (sample weight, sampling
            probability, candidate id), under their own names.
    """

    query: dict[str, Any]
    candidate: dict[str, Any]
    context: dict[str, Any]

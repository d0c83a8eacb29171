"""CausalAttentionHistory: SASRec's causal encoder as a history feature layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._inputs import check_choice, check_positive_int
from ctxfeatures.layers.attention_history import check_dropout, reject_pooling_options
from ctxfeatures.layers.history_embedding import HistoryEmbedding
from ctxfeatures.layers.id_embedding import IdEmbedding

# Per block: attention norm, query, key, value, merge, feed norm, in, out.
_BLOCK_LAYERS = 8
_NEGATIVE = -1e9
BLOCKS = ("pre-norm", "sasrec")


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class CausalAttentionHistory(HistoryEmbedding):
    """Encodes a user's recent items with causal self-attention (SASRec).

    Each item attends to itself and the ``window - 1`` items just before it,
    through ``num_blocks`` Transformer blocks (pre-normalised attention with
    a learned bias per head and distance, then a feed-forward network, each
    with a residual connection); the output is the encoding of the most
    recent item, after a final normalisation. ``block="sasrec"`` wires the
    blocks as SASRec's reference code does instead (see Args). Because every
    position sees only earlier items, at distances the bias knows, one pass
    over a user's sequence encodes every prefix at once:
    :class:`~ctxfeatures.SequenceRetrievalModel` trains it that way, and
    the encoding of a request's history is that of its last position. It
    depends on the last ``num_blocks * (window - 1) + 1`` items (older ones
    are ignored). An empty history gives a zero vector.

    Takes the same ``history`` feature as :class:`HistoryEmbedding` (padded
    dense or ragged, most recent last) and shares the candidate tower's item
    table through ``item_embedding``.

    Args:
        embedding_dim: Size of the vectors; ``None`` with ``item_embedding``.
        vocabulary: Optional list of item ids (own table only).
        item_embedding: Optional :class:`~ctxfeatures.IdEmbedding` whose
            vocabulary and table are shared.
        window: Items each position attends to, itself included.
        num_heads: Attention heads; must divide the embedding size.
        num_blocks: Transformer blocks.
        dropout: Dropout rate inside the blocks during training.
        block: ``"pre-norm"`` (each sub-layer reads the normalised input and
            adds to the input) or ``"sasrec"`` (Kang and McAuley's code: item
            vectors scaled by ``sqrt(embedding_dim)``; attention queries read
            the normalised input, keys and values the input itself, and the
            residual adds to the normalised input; the feed-forward network
            reads and adds to its normalised input). On sparse logs
            (Amazon Sports) the SASRec wiring kept learning with dropout 0.5
            where the pre-norm one stalled: see :doc:`/sequences`.
        **kwargs: :class:`~ctxfeatures.IdEmbedding` options for an own table
            and base ``Layer`` arguments.

    Call arguments:
        inputs: ``(batch, length)`` item ids, most recent last, padded with
            ``""`` or ``-1``; or ``(batch, None)`` ragged ids.
        training: In training, ``dropout`` applies inside the blocks.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, the encoding of the most
        recent item (zeros for an empty history).

    Example:
        >>> layer = ctxfeatures.CausalAttentionHistory(4, vocabulary=["a", "b"],
        ...                                            window=3)
        >>> layer(tf.constant([["", "a", "b"], ["", "", ""]])).shape
        TensorShape([2, 4])

    Raises:
        ValueError: ``window``, ``num_heads`` or ``num_blocks`` below 1,
            ``num_heads`` not dividing the size, ``dropout`` outside
            ``[0, 1)``, an unknown ``block``, and :class:`HistoryEmbedding`'s
            errors.
    """

    config_keys = ("num_heads", "num_blocks", "dropout", "block")

    def __init__(
        self,
        embedding_dim: int | None = None,
        vocabulary: Sequence[Any] | None = None,
        *,
        item_embedding: IdEmbedding | dict[str, Any] | None = None,
        window: int = 50,
        num_heads: int = 1,
        num_blocks: int = 2,
        dropout: float = 0.0,
        block: str = "pre-norm",
        **kwargs: Any,
    ) -> None:
        reject_pooling_options(kwargs, "CausalAttentionHistory")
        check_choice(block, "block", BLOCKS)
        window = check_positive_int(window, "window")
        num_blocks = check_positive_int(num_blocks, "num_blocks")
        super().__init__(
            embedding_dim,
            vocabulary,
            item_embedding=item_embedding,
            # What the last position can see: older items are dropped.
            window=num_blocks * (window - 1) + 1,
            **kwargs,
        )
        self.attention_window = window
        self.num_blocks = num_blocks
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"`num_heads` must divide the embedding size "
                f"{self.embedding_dim}. Received: num_heads={num_heads}"
            )
        self.dropout = check_dropout(dropout)
        self.block = block
        # One flat, public list: Keras saves the sublayers it finds in public
        # attributes and lists, not in private ones or in dicts.
        self.block_layers: list[tf.keras.layers.Layer] = []

    @property
    def receptive_field(self) -> int:
        """Items the encoding of the most recent one depends on."""
        return self.window

    def build(self, input_shape: Any = None) -> None:
        if not self.block_layers:
            dim = self.embedding_dim
            self.distance_bias = self.add_weight(
                name="distance_bias",
                shape=(self.num_blocks, self.num_heads, self.attention_window),
                initializer="zeros",
            )
            for i in range(self.num_blocks):
                layers = [
                    tf.keras.layers.LayerNormalization(name=f"attn_norm_{i}"),
                    tf.keras.layers.Dense(dim, name=f"query_{i}"),
                    tf.keras.layers.Dense(dim, name=f"key_{i}"),
                    tf.keras.layers.Dense(dim, name=f"value_{i}"),
                    tf.keras.layers.Dense(dim, name=f"merge_{i}"),
                    tf.keras.layers.LayerNormalization(name=f"ffn_norm_{i}"),
                    tf.keras.layers.Dense(dim, activation="relu", name=f"ffn_in_{i}"),
                    tf.keras.layers.Dense(dim, name=f"ffn_out_{i}"),
                ]
                for layer in layers:
                    layer.build((None, None, dim))
                self.block_layers.extend(layers)
            self.final_norm = tf.keras.layers.LayerNormalization(name="final_norm")
            self.final_norm.build((None, None, dim))
            self.drop = tf.keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    # ----------------------------------------------------------------- calls
    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        if not self.block_layers:
            self.build(None)
        dense = prepared.to_tensor(default_value=-1, shape=[None, self.window])
        # Right-aligned: the most recent item in the last column.
        items = tf.reverse_sequence(
            dense, tf.cast(prepared.row_lengths(), tf.int64), seq_axis=1
        )
        items = tf.reverse(items, axis=[1])
        states = self.encode(items, training=training)
        return states[:, -1, :]

    def encode(self, items: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """``(batch, width, dim)``: each position's encoding of its item and
        the earlier ones in its row; ``items`` are table indices, ``-1`` for
        no item. Positions without an item encode to zeros."""
        if not self.block_layers:
            self.build(None)
        present = items >= 0
        mask = tf.cast(present, tf.float32)[:, :, None]
        x = self._table()(tf.maximum(items, 0)) * mask
        if self.block == "sasrec":
            x = x * self.embedding_dim**0.5
        x = self.drop(x, training=training)
        width = tf.shape(items)[1]
        position = tf.range(width)
        distance = position[:, None] - position[None, :]
        visible = (distance >= 0) & (distance < self.attention_window)
        attend = visible[None] & present[:, None, :]
        for i in range(self.num_blocks):
            layers = self.block_layers[i * _BLOCK_LAYERS : (i + 1) * _BLOCK_LAYERS]
            bias = tf.gather(
                self.distance_bias[i],
                tf.clip_by_value(distance, 0, self.attention_window - 1),
                axis=1,
            )
            x = self._block(x, attend, bias, layers, training) * mask
        return self.final_norm(x) * mask

    def _block(
        self,
        x: tf.Tensor,
        attend: tf.Tensor,
        bias: tf.Tensor,
        layers: list[tf.keras.layers.Layer],
        training: bool | None,
    ) -> tf.Tensor:
        norm, query, key, value, merge, feed_norm, hidden, output = layers
        heads, size = self.num_heads, self.embedding_dim // self.num_heads
        normed = norm(x)
        # SASRec's code: keys and values from the input, residuals on the
        # normalised values.
        sasrec = self.block == "sasrec"
        source = x if sasrec else normed

        def split(t: tf.Tensor) -> tf.Tensor:
            shape = tf.concat([tf.shape(t)[:2], [heads, size]], axis=0)
            return tf.reshape(t, shape)

        q, k, v = split(query(normed)), split(key(source)), split(value(source))
        logits = tf.einsum("bqhd,bkhd->bhqk", q, k) / size**0.5 + bias[None]
        logits = tf.where(attend[:, None], logits, _NEGATIVE)
        weights = self.drop(tf.nn.softmax(logits, axis=-1), training=training)
        mixed = tf.einsum("bhqk,bkhd->bqhd", weights, v)
        mixed = tf.reshape(mixed, tf.shape(x))
        if sasrec:  # dropout on the attention weights only, as SASRec
            x = normed + merge(mixed)
        else:
            x = x + self.drop(merge(mixed), training=training)
        fed = feed_norm(x)
        inner = self.drop(hidden(fed), training=training)
        return (fed if sasrec else x) + self.drop(output(inner), training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["window"] = self.attention_window
        config.pop("recency_decay", None)
        config.pop("combiner", None)
        return config

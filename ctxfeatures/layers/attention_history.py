"""AttentionHistory: self-attention over a user's recent items (SASRec's idea)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._inputs import check_positive_int
from ctxfeatures.layers.history_embedding import HistoryEmbedding
from ctxfeatures.layers.id_embedding import IdEmbedding

_BLOCK = ("attention", "attention_norm", "hidden", "output", "output_norm")


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class AttentionHistory(HistoryEmbedding):
    """Encodes the last ``window`` items with self-attention, not a mean.

    The feature layer form of SASRec (Kang & McAuley, ICDM 2018): each of a
    user's ``window`` most recent items is its item embedding plus a learned
    embedding of its position (0 = the most recent), and ``num_blocks``
    Transformer blocks (multi-head self-attention over the valid items, then
    a two-layer feed-forward network, each with a residual connection and
    layer normalisation) mix them. The output is the vector at the most
    recent position, which has attended to the whole window. An empty
    history gives a zero vector. Every item sees every other one: they are
    all in the past of the request, so no causal mask is needed.

    Takes the same ``history`` feature as :class:`HistoryEmbedding` (padded
    dense or ragged, most recent last) and, like it, shares the candidate
    tower's item table through ``item_embedding``. Saved, loaded and served
    like every other layer.

    Args:
        embedding_dim: Size of the vectors; ``None`` with ``item_embedding``.
        vocabulary: Optional list of item ids (own table only).
        item_embedding: Optional :class:`~ctxfeatures.IdEmbedding` whose
            vocabulary and table are shared.
        window: Number of most recent items attended to.
        num_heads: Attention heads (each of size ``embedding_dim``).
        num_blocks: Transformer blocks.
        dropout: Dropout rate inside the blocks during training.
        **kwargs: :class:`~ctxfeatures.IdEmbedding` options for an own table
            and base ``Layer`` arguments.

    Call arguments:
        inputs: ``(batch, length)`` item ids, most recent last, padded with
            ``""`` or ``-1``; or ``(batch, None)`` ragged ids.
        training: In training, ``dropout`` applies inside the blocks.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, the encoding at the most recent
        position (zeros for an empty history).

    Example:
        >>> layer = ctxfeatures.AttentionHistory(4, vocabulary=["a", "b"],
        ...                                      window=3)
        >>> layer(tf.constant([["", "a", "b"], ["", "", ""]])).shape
        TensorShape([2, 4])

    Raises:
        ValueError: ``window``, ``num_heads`` or ``num_blocks`` below 1,
            ``dropout`` outside ``[0, 1)``, and :class:`HistoryEmbedding`'s
            errors.
    """

    config_keys = ("num_heads", "num_blocks", "dropout")

    def __init__(
        self,
        embedding_dim: int | None = None,
        vocabulary: Sequence[Any] | None = None,
        *,
        item_embedding: IdEmbedding | dict[str, Any] | None = None,
        window: int = 50,
        num_heads: int = 1,
        num_blocks: int = 1,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        reject_pooling_options(kwargs, "AttentionHistory")
        window = check_positive_int(window, "window")
        super().__init__(
            embedding_dim,
            vocabulary,
            item_embedding=item_embedding,
            window=window,
            **kwargs,
        )
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.num_blocks = check_positive_int(num_blocks, "num_blocks")
        self.dropout = check_dropout(dropout)
        # One flat, public list: Keras saves the sublayers it finds in public
        # attributes and lists, not in private ones or in dicts.
        self.block_layers: list[tf.keras.layers.Layer] = []

    def build(self, input_shape: Any = None) -> None:
        if not self.block_layers:
            dim = self.embedding_dim
            self.positions = self.add_weight(
                name="positions",
                shape=(self.window, dim),
                initializer=tf.keras.initializers.RandomNormal(stddev=0.02),
            )
            self.input_norm = tf.keras.layers.LayerNormalization(name="input_norm")
            self.input_norm.build((None, None, dim))
            for i in range(self.num_blocks):
                block = {
                    "attention": tf.keras.layers.MultiHeadAttention(
                        self.num_heads, dim, dropout=self.dropout, name=f"attn_{i}"
                    ),
                    "attention_norm": tf.keras.layers.LayerNormalization(
                        name=f"attn_norm_{i}"
                    ),
                    "hidden": tf.keras.layers.Dense(
                        dim, activation="relu", name=f"ffn_in_{i}"
                    ),
                    "output": tf.keras.layers.Dense(dim, name=f"ffn_out_{i}"),
                    "output_norm": tf.keras.layers.LayerNormalization(
                        name=f"ffn_norm_{i}"
                    ),
                }
                # Every variable now, so that a saved layer holds them all.
                probe = tf.zeros((1, self.window, dim))
                with tf.init_scope():
                    block["attention"](probe, probe)
                for key in ("attention_norm", "hidden", "output", "output_norm"):
                    block[key].build((None, self.window, dim))
                self.block_layers.extend(block[key] for key in _BLOCK)
            self.drop = tf.keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        if not self.block_layers:
            self.build(None)
        items, valid = self._by_age(prepared)
        table = self._table()
        vectors = table(tf.maximum(items, 0)) + self.positions[None, :, :]
        mask = tf.cast(valid, vectors.dtype)[:, :, None]
        x = self.drop(self.input_norm(vectors * mask), training=training)
        attend = valid[:, None, :] & valid[:, :, None]
        for i in range(self.num_blocks):
            block = dict(zip(_BLOCK, self.block_layers[i * 5 : i * 5 + 5]))
            mixed = block["attention"](x, x, attention_mask=attend, training=training)
            x = block["attention_norm"](x + self.drop(mixed, training=training))
            hidden = block["output"](block["hidden"](x))
            x = block["output_norm"](x + self.drop(hidden, training=training))
            x *= mask
        # The most recent position (index 0); zero for an empty history.
        return x[:, 0, :]

    def _by_age(self, prepared: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch, window)`` item indices by age (0 = most recent), -1 beyond
        each row's history, and the mask of the real ones."""
        rows = prepared.value_rowids()
        position = tf.range(tf.shape(rows, out_type=tf.int64)[0])
        age = tf.gather(prepared.row_limits(), rows) - 1 - position
        batch = prepared.nrows()
        dense = tf.scatter_nd(
            tf.stack([rows, age], axis=1),
            tf.cast(prepared.flat_values, tf.int64) + 1,
            tf.stack([batch, tf.constant(self.window, tf.int64)]),
        )
        return dense - 1, dense > 0

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("recency_decay", None)
        config.pop("combiner", None)
        return config


def reject_pooling_options(kwargs: dict[str, Any], owner: str) -> None:
    """Refuses HistoryEmbedding's pooling options, which attention replaces.

    A saved config may still carry them at their defaults (class-wide config
    keys): those are dropped.
    """
    for unused, default in (("recency_decay", None), ("combiner", "mean")):
        if kwargs.pop(unused, default) != default:
            raise ValueError(
                f"{owner} does not take `{unused}`: attention weighs the items itself."
            )


def check_dropout(dropout: Any) -> float:
    """``dropout`` as a float in ``[0, 1)``, or a clear error."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"`dropout` must be a number. Received: {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    return float(dropout)

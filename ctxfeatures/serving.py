"""The exported recommender: raw query features in, top-k candidates out."""

from __future__ import annotations

import tensorflow as tf

from ctxfeatures.tower import Tower


class _Recommender(tf.Module):
    """Query tower + frozen catalogue embeddings, servable without ctxfeatures."""

    def __init__(
        self, query_tower: Tower, ids: tf.Tensor, vectors: tf.Tensor, k: int
    ) -> None:
        super().__init__(name="recommender")
        self.query_tower = query_tower
        self.candidate_ids = tf.Variable(ids, trainable=False, name="candidate_ids")
        self.candidate_vectors = tf.Variable(
            vectors, trainable=False, name="candidate_vectors"
        )
        self.k = k

    def recommend(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        query = self.query_tower(features, training=False)
        scores = tf.linalg.matmul(query, self.candidate_vectors, transpose_b=True)
        top = tf.math.top_k(scores, k=self.k)
        return {
            "ids": tf.gather(self.candidate_ids, top.indices),
            "scores": top.values,
        }


def export_recommender(
    query_tower: Tower, ids: tf.Tensor, vectors: tf.Tensor, path: str, k: int = 10
) -> None:
    """Writes the recommender SavedModel (see ``RetrievalModel.export_recommender``)."""
    size = int(vectors.shape[0])
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= size:
        raise ValueError(
            f"`k` must be between 1 and the catalogue size ({size}). Received: k={k!r}"
        )
    module = _Recommender(query_tower, ids, vectors, k)
    signature = query_tower.input_signature()
    serve = tf.function(
        lambda **features: module.recommend(features),
        input_signature=None,
    )
    concrete = serve.get_concrete_function(
        **{
            name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
            for name, spec in signature.items()
        }
    )
    tf.saved_model.save(module, path, signatures={"serving_default": concrete})

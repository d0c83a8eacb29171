"""The exported recommender: raw query features in, top-k candidates out."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.catalogue import CatalogueIndex
from ctxfeatures.tower import Tower


class _Recommender(tf.Module):
    """Query tower + frozen catalogue embeddings, servable without ctxfeatures."""

    def __init__(
        self,
        query_tower: Tower,
        catalogue: CatalogueIndex,
        vectors: tf.Tensor,
        k: int,
        exclude: str | None,
    ) -> None:
        super().__init__(name="recommender")
        self.query_tower = query_tower
        self.catalogue = catalogue
        self.candidate_ids = tf.Variable(
            catalogue.ids, trainable=False, name="candidate_ids"
        )
        self.candidate_vectors = tf.Variable(
            vectors, trainable=False, name="candidate_vectors"
        )
        self.k = k
        self.exclude = exclude

    def rank(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        query = self.query_tower(features, training=False)
        scores = tf.linalg.matmul(query, self.candidate_vectors, transpose_b=True)
        if self.exclude is not None:
            batch = tf.shape(query, out_type=tf.int64)[0]
            excluded = self.catalogue.excluded(features[self.exclude], batch)
            scores = tf.where(excluded, tf.constant(-np.inf, scores.dtype), scores)
        top = tf.math.top_k(scores, k=self.k)
        ids = tf.gather(self.candidate_ids, top.indices)
        if self.exclude is not None:
            # Fewer than k candidates left: pad, never return an excluded one.
            pad = tf.constant("" if ids.dtype == tf.string else -1, ids.dtype)
            ids = tf.where(tf.math.is_inf(top.values), pad, ids)
        return {"ids": ids, "scores": top.values}


def export_recommender(
    query_tower: Tower,
    ids: tf.Tensor,
    vectors: tf.Tensor,
    path: str,
    k: int = 10,
    exclude: str | None = None,
) -> None:
    """Writes the recommender SavedModel (see ``RetrievalModel.export_recommender``)."""
    size = int(vectors.shape[0])
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, np.integer))
        or not 1 <= k <= size
    ):
        raise ValueError(
            f"`k` must be between 1 and the catalogue size ({size}). Received: k={k!r}"
        )
    catalogue = CatalogueIndex(ids)
    signature = {
        name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
        for name, spec in query_tower.input_signature().items()
    }
    if exclude is not None:
        _check_exclude_spec(signature, exclude, catalogue.ids.dtype)
        signature.setdefault(
            exclude, tf.TensorSpec([None, None], catalogue.ids.dtype, name=exclude)
        )
    _check_writable(path)
    module = _Recommender(query_tower, catalogue, vectors, int(k), exclude)
    serve = tf.function(lambda **features: module.rank(features))
    concrete = serve.get_concrete_function(**signature)
    # `recommend` also takes the usual variants of the signature: int32 for
    # int64 ids and times, and (batch, 1) for (batch,) columns.
    module.recommend = tf.function(
        lambda **features: module.rank(_as_signature(features, signature))
    )
    for variant in _variants(signature):
        module.recommend.get_concrete_function(**variant)
    tf.saved_model.save(module, path, signatures={"serving_default": concrete})


def _variants(signature: dict[str, tf.TensorSpec]) -> list[dict[str, tf.TensorSpec]]:
    variants = []
    for narrow in (False, True):
        for column in (False, True):
            variant = {}
            for name, spec in signature.items():
                dtype = tf.int32 if narrow and spec.dtype == tf.int64 else spec.dtype
                shape = spec.shape
                if column and shape.rank == 1:
                    shape = tf.TensorShape([None, 1])
                variant[name] = tf.TensorSpec(shape, dtype, name=name)
            variants.append(variant)
    return variants


def _as_signature(
    features: dict[str, tf.Tensor], signature: dict[str, tf.TensorSpec]
) -> dict[str, tf.Tensor]:
    converted = {}
    for name, spec in signature.items():
        value = features[name]
        if value.dtype != spec.dtype:
            value = tf.cast(value, spec.dtype)
        if spec.shape.rank == 1 and value.shape.rank == 2:
            value = tf.reshape(value, [-1])
        converted[name] = value
    return converted


def _check_writable(path: str) -> None:
    """Fails before any export work when ``path`` cannot be written."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a directory path. Received: {path!r}")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".ctxfeatures-write-check")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise OSError(
            f"export_recommender(): cannot write to {os.fspath(path)!r} "
            f"({error.strerror or error}). Choose a writable directory."
        ) from None


def _check_exclude_spec(
    signature: dict[str, Any], exclude: str, dtype: tf.DType
) -> None:
    if not isinstance(exclude, str) or not exclude:
        raise TypeError(
            f"`exclude` must be a feature name or None. Received: {exclude!r}"
        )
    spec = signature.get(exclude)
    if spec is None:
        return
    if spec.shape.rank != 2 or (spec.dtype == tf.string) != (dtype == tf.string):
        raise ValueError(
            f"`exclude`='{exclude}' is a query feature of shape {spec.shape} "
            f"and dtype {spec.dtype.name}, but it must hold a list of candidate "
            f"ids per query ({dtype.name}, shape (batch, length))."
        )

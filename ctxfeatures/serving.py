"""The exported recommender: raw query features in, top-k candidates out.

:func:`export_recommender` writes it (``RetrievalModel.export_recommender``
and ``Ensemble.export_recommender`` call it); it loads and serves with
TensorFlow alone. :func:`load_recommender` loads it back for Python callers,
with requests checked and conformed as :meth:`RetrievalModel.recommend
<ctxfeatures.RetrievalModel.recommend>` does them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from ctxfeatures._requests import check_k, conform, with_exclude
from ctxfeatures.index import ExactSearch, IVFIndex, IVFSearch
from ctxfeatures.tower import Tower

__all__ = ["Recommender", "export_recommender", "load_recommender"]


class _Recommender(tf.Module):
    """Query tower + a searcher over the frozen catalogue, servable without
    ctxfeatures."""

    def __init__(
        self, query_tower: Tower, searcher: Any, k: int, exclude: str | None
    ) -> None:
        super().__init__(name="recommender")
        self.query_tower = query_tower
        self.searcher = searcher
        self.k = k
        self.exclude = exclude

    @tf.autograph.experimental.do_not_convert
    def rank(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        query = self.query_tower(features, training=False)
        exclude = features[self.exclude] if self.exclude is not None else None
        ids, scores = self.searcher.search(query, self.k, exclude)
        return {"ids": ids, "scores": scores}


def export_recommender(
    query_tower: Tower,
    ids: tf.Tensor,
    vectors: tf.Tensor,
    path: str,
    k: int = 10,
    exclude: str | None = None,
    index: IVFIndex | IVFSearch | None = None,
) -> None:
    """Writes the recommender SavedModel (see ``RetrievalModel.export_recommender``)."""
    size = int(vectors.shape[0])
    k = check_k(k, size)
    if index is not None and not isinstance(index, (IVFIndex, IVFSearch)):
        raise TypeError(
            "`index` must be None (exact top-k), a ctxfeatures.index.IVFIndex "
            f"or a built IVFSearch. Received: {type(index).__name__}"
        )
    if isinstance(index, IVFSearch) and index.size != size:
        raise ValueError(
            f"The built index holds {index.size} candidates but the catalogue "
            f"has {size}: build it from this catalogue's vectors."
        )
    signature = {
        name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
        for name, spec in query_tower.input_signature().items()
    }
    signature = with_exclude(signature, exclude, ids)
    _check_writable(path)
    if index is None:
        searcher = ExactSearch(ids, vectors)
    else:
        searcher = index.build(ids, vectors) if isinstance(index, IVFIndex) else index
    module = _Recommender(query_tower, searcher, int(k), exclude)
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


class Recommender:
    """An exported recommender, loaded: requests checked, then served.

    Calls the SavedModel's ``serving_default`` signature, after the request
    is conformed to it: lists and numpy arrays become tensors, integer ids
    and times of any width become int64, ``(batch, 1)`` columns and single
    values become ``(batch,)``, ragged lists of ids are padded. Any other
    mismatch (a string where an integer is expected, a float id, a missing
    feature) raises naming the feature, the expected and the received dtype
    and shape, where the bare signature fails inside TensorFlow.

    Args:
        path: The directory :meth:`~ctxfeatures.RetrievalModel.export_recommender`
            wrote.

    Attributes:
        signature: ``{feature: tf.TensorSpec}`` the recommender takes.

    Example:
        >>> events = {"user_id": ["a", "b", "a"], "item": ["x", "y", "y"]}
        >>> model = cf.build_retrieval_model(
        ...     {"user_id": cf.IdEmbedding(4)}, {"item": cf.IdEmbedding(4)},
        ...     {"item": ["x", "y", "z"]}, candidate_id="item",
        ...     adapt_data=events, head_units=(4,))
        >>> model.export_recommender(os.path.join(tmp, "served"), k=2)
        >>> served = cf.serving.load_recommender(os.path.join(tmp, "served"))
        >>> served({"user_id": "a"})["ids"].shape
        TensorShape([1, 2])
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.module = tf.saved_model.load(self.path)
        self._serve = self.module.signatures["serving_default"]
        _, specs = self._serve.structured_input_signature
        self.signature = {
            name: tf.TensorSpec(spec.shape, spec.dtype) for name, spec in specs.items()
        }

    def __call__(
        self, features: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, tf.Tensor]:
        """``{"ids": (batch, k), "scores": (batch, k)}`` for the requests.

        Args:
            features: A mapping of the request's features (or pass them as
                keyword arguments).
        """
        request = {**(features or {}), **kwargs}
        return self._serve(**conform(request, self.signature, "Recommender"))


def load_recommender(path: str | os.PathLike) -> Recommender:
    """Loads an exported recommender as a :class:`Recommender`."""
    if not os.path.isdir(os.fspath(path)):
        raise FileNotFoundError(
            f"load_recommender(): {os.fspath(path)!r} is not a directory. Pass the "
            "folder that export_recommender() wrote."
        )
    return Recommender(path)

"""Top-k recommendations in process, by the exported recommender's own search.

:meth:`RetrievalModel.recommend <ctxfeatures.RetrievalModel.recommend>` and
:meth:`Ensemble.recommend <ctxfeatures.Ensemble.recommend>` call
:func:`recommend`: raw query features in, the ``k`` best candidate ids and
their scores out. It embeds the catalogue and ranks it with the same
:class:`~ctxfeatures.index.ExactSearch` that
:meth:`~ctxfeatures.RetrievalModel.export_recommender` writes into the
SavedModel, so both give the same answers to the same requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._data import is_columns
from ctxfeatures._requests import check_k, conform, with_exclude
from ctxfeatures.index import ExactSearch
from ctxfeatures.layers._inputs import is_batched

__all__ = ["recommend"]

_BATCH = 4096


def recommend(
    model: Any,
    features: Mapping[str, Any] | tf.data.Dataset,
    k: int = 10,
    exclude: str | None = None,
    batch_size: int = _BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates of each request, best first.

    Args:
        model: A :class:`~ctxfeatures.RetrievalModel` or an
            :class:`~ctxfeatures.Ensemble`.
        features: The requests' raw query features: a mapping of columns
            (lists, numpy arrays or tensors, one row per request; a single
            value for one request), or a batched ``tf.data.Dataset`` of
            feature dicts. Keys the query tower does not read are ignored.
        k: Number of candidates per request, at most the catalogue size.
        exclude: Optional feature of candidate ids never to return to that
            request, typically ``"history"`` (the items the user has seen), a
            list per request padded with ``""`` or ``-1``.
        batch_size: Requests scored at once when ``features`` is a mapping.

    Returns:
        ``(ids, scores)``, numpy arrays of shape ``(requests, k)``: ids as
        ``str`` (string catalogues) or ``int64``; scores as float32. A row
        with fewer than ``k`` candidates left after exclusion ends in padding
        (``""`` or ``-1``) with a score of ``-inf``.

    Raises:
        ValueError: ``k`` outside ``[1, catalogue size]``, or a feature
            missing from the requests.
        TypeError: a feature of the wrong kind (a string id where an integer
            is expected, ...), named with the expected and received dtype.
    """
    owner = f"{type(model).__name__}.recommend()"
    ids, vectors = model.candidate_embeddings()
    k = check_k(k, int(vectors.shape[0]), f"{owner}: ")
    signature = {
        name: tf.TensorSpec(spec.shape, spec.dtype)
        for name, spec in model.query_tower.input_signature().items()
    }
    signature = with_exclude(signature, exclude, ids, f"{owner}: ")
    searcher = ExactSearch(ids, vectors)
    found, scores = [], []
    for batch in _batches(features, signature, batch_size, owner):
        query = model.query_tower(batch, training=False)
        excluded = batch[exclude] if exclude is not None else None
        top_ids, top_scores = searcher.search(query, k, excluded)
        found.append(top_ids.numpy())
        scores.append(top_scores.numpy())
    found_ids = np.concatenate(found)
    if found_ids.dtype == object:
        found_ids = np.char.decode(found_ids.astype(bytes), "utf-8")
    return found_ids, np.concatenate(scores)


def _batches(
    features: Any, signature: dict[str, tf.TensorSpec], batch_size: int, owner: str
) -> Any:
    if isinstance(features, tf.data.Dataset):
        if not isinstance(features.element_spec, Mapping) or not is_batched(features):
            raise ValueError(
                f"{owner}: a dataset of requests must hold batched feature dicts: "
                "call `data.batch(batch_size)` first, or pass a mapping of columns."
            )
        for batch in features:
            yield conform(batch, signature, owner)
        return
    if not is_columns(features):
        raise TypeError(
            f"{owner}: `features` must be a mapping of columns (e.g. "
            "{'user_id': ['42']}) or a batched tf.data.Dataset of feature dicts. "
            f"Received: {type(features).__name__}"
        )
    columns = conform(dict(features.items()), signature, owner)
    rows = int(next(iter(columns.values())).shape[0])
    for start in range(0, rows, batch_size):
        yield {
            name: value[start : start + batch_size] for name, value in columns.items()
        }

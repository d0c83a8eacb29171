"""build_retrieval_model: towers built, adapted and assembled in one call."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures._data import as_dataset
from ctxfeatures.retrieval import RetrievalModel
from ctxfeatures.tower import FeatureSpec, Tower, adapt_towers

__all__ = ["build_retrieval_model"]


def build_retrieval_model(
    query_features: FeatureSpec,
    candidate_features: FeatureSpec,
    candidates: tf.data.Dataset | Mapping[str, Any],
    *,
    candidate_id: str,
    adapt_data: tf.data.Dataset | Mapping[str, Any],
    head_units: Sequence[int] = (32,),
    activation: str | None = "relu",
    l2_normalize: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    **model_kwargs: Any,
) -> RetrievalModel:
    """Builds, adapts and assembles a :class:`RetrievalModel` in one call.

    The query tower adapts on ``adapt_data`` (the training interactions; never
    the test period, or time statistics leak) and the candidate tower on the
    catalogue, each in one pass. Variables are then created inside
    ``strategy.scope()`` when a strategy is given.

    Args:
        query_features: Feature mapping of the query tower.
        candidate_features: Feature mapping of the candidate tower.
        candidates: The catalogue: a dataset of candidate feature dicts, or
            a mapping of columns (``{"item_id": [...], "title": [...]}``).
        candidate_id: Catalogue key of the candidate identifier.
        adapt_data: Training interactions used to adapt the query tower: a
            dataset of feature dicts or a mapping of columns.
        head_units: Dense head sizes shared by both towers.
        activation: Activation between head layers.
        l2_normalize: L2-normalise both towers' outputs.
        strategy: Optional ``tf.distribute.Strategy``.
        **model_kwargs: Passed to :class:`RetrievalModel`.

    Returns:
        An adapted, uncompiled :class:`RetrievalModel`.
    """
    owner = "build_retrieval_model()"
    candidates = as_dataset(candidates, owner, "candidates")
    adapt_data = as_dataset(adapt_data, owner, "adapt_data")
    query = Tower(query_features, head_units, activation, l2_normalize, "query")
    candidate = Tower(
        candidate_features, head_units, activation, l2_normalize, "candidate"
    )
    adapt_towers(adapt_data, query)
    adapt_towers(candidates, candidate)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return RetrievalModel(
            query, candidate, candidates, candidate_id, **model_kwargs
        )

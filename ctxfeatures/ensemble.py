"""Ensembles of trained two-tower models, evaluated and served as one model.

Models trained the same way from different seeds rank differently in the
long tail, and the sum of their scores often ranks better than any of them
(on the MovieLens validation slices, three members lifted hit@100 by 1-5%
and hit@10 by 2-9%; see docs/ensembles.rst). A sum of dot products is the dot
product of the vectors placed side by side, so the ensemble is itself a
two-tower model: one query vector, one catalogue of vectors, one index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.catalogue import Catalogue
from ctxfeatures.evaluation import _EVAL_BATCH, evaluate_top_k
from ctxfeatures.index import IVFIndex, IVFSearch
from ctxfeatures.recommend import recommend
from ctxfeatures.serving import export_recommender
from ctxfeatures.tower import PreparedBatch

__all__ = ["Ensemble"]

# Each member prepares batches with its own vocabularies and tokenisers.
_RAW_ONLY = (
    "Ensemble takes raw feature batches, not the output of one member's "
    "prepare(): pass the raw batches."
)


class _SideBySide(tf.Module):
    """The members' towers of one side, their outputs concatenated, each
    multiplied by its scale. Tracks the members' variables for export; a
    plain module, since it is never saved as a Keras model."""

    def __init__(self, towers: Sequence[tf.keras.Model], scales: Sequence[float]):
        super().__init__(name=f"{towers[0].name}_ensemble")
        self.towers = list(towers)
        self.scales = [float(s) for s in scales]
        signature: dict[str, Any] = {}
        for tower in self.towers:
            for name, spec in tower.input_signature().items():
                if name in signature and not _same_spec(signature[name], spec):
                    raise ValueError(
                        f"Ensemble members read feature '{name}' differently "
                        f"({signature[name]} and {spec}): members must agree "
                        "on each shared input's dtype and rank."
                    )
                signature.setdefault(name, spec)
        self._signature = signature

    @property
    def feature_names(self) -> list[str]:
        return list(self._signature)

    @property
    def output_dim(self) -> int:
        return sum(tower.output_dim for tower in self.towers)

    def input_signature(self) -> dict[str, Any]:
        return dict(self._signature)

    def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        return self.join([tower(inputs, training=training) for tower in self.towers])

    def join(self, vectors: Sequence[tf.Tensor]) -> tf.Tensor:
        """The members' vectors (one per tower, in order), each scaled, side
        by side: the one place the ensemble's scaling rule lives."""
        return tf.concat([s * v for s, v in zip(self.scales, vectors)], axis=1)


def _same_spec(first: Any, second: Any) -> bool:
    return first.dtype == second.dtype and first.shape.rank == second.shape.rank


class Ensemble:
    """Trained :class:`~ctxfeatures.RetrievalModel` s ranking one catalogue
    by the sum of their scores.

    Each member's score of a candidate is the logit its loss was trained on:
    the query . candidate product divided by its ``temperature``. The
    ensemble ranks by the weighted sum of those logits. Since that sum is the
    dot product of the members' vectors side by side (each query vector
    scaled by ``weight / temperature``), the ensemble is a two-tower model:
    :meth:`evaluate_top_k` ranks the catalogue as for one model (the same
    rules, seen items excluded the same way), and :meth:`export_recommender`
    writes one SavedModel, exact or with an IVF index over the concatenated
    vectors, that serves with TensorFlow alone.

    Train the members yourself, typically the same recipe from different
    seeds (``tf.keras.utils.set_random_seed`` before building each). The
    ensemble holds them as they are: it does not train, and later training of
    a member changes the ensemble's rankings (its catalogue is embedded at
    each evaluation or export). Memory and scoring time grow with the summed
    width of the members' vectors.

    Attributes:
        query_tower: The members' query towers side by side, a callable
            (raw query features in, the scaled concatenated vector out).
        candidate_tower: The same for the candidate towers.
        catalogue: The :class:`~ctxfeatures.Catalogue` of the members,
            embedded by ``candidate_tower``.

    Args:
        models: One or more trained models over the same catalogue: the same
            ``candidate_id`` and the same ids in the same order.
        weights: Optional positive weight of each member's logits; equal by
            default.

    Raises:
        TypeError: a member that is not a ``RetrievalModel``.
        ValueError: no members, members over different catalogues, members
            reading a shared query feature with different dtypes or ranks, or
            weights that are not one positive number per member.

    Example:
        >>> events = tf.data.Dataset.from_tensor_slices(
        ...     {"user_id": ["a", "b", "a", "b"], "item": ["x", "y", "x", "y"]})
        >>> items = tf.data.Dataset.from_tensor_slices({"item": ["x", "y", "z"]})
        >>> def member(seed):
        ...     tf.keras.utils.set_random_seed(seed)
        ...     model = cf.build_retrieval_model(
        ...         {"user_id": cf.IdEmbedding(4)}, {"item": cf.IdEmbedding(4)}, items,
        ...         candidate_id="item", adapt_data=events, head_units=(4,),
        ...         l2_normalize=True, temperature=0.5)
        ...     model.compile(tf.keras.optimizers.Adam(0.1))
        ...     model.fit(model.prepare(events.batch(4)), epochs=5, verbose=0)
        ...     return model
        >>> ensemble = cf.Ensemble([member(1), member(2)])
        >>> ensemble.candidate_embeddings()[1].shape  # two 4-d members
        TensorShape([3, 8])
        >>> sorted(ensemble.evaluate_top_k(events, ks=[1]))
        ['mrr', 'ndcg_1', 'top_1']
    """

    def __init__(
        self, models: Sequence[Any], weights: Sequence[float] | None = None
    ) -> None:
        from ctxfeatures.retrieval import RetrievalModel  # TFRS, on first use

        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("`models` must hold at least one RetrievalModel.")
        for position, model in enumerate(models):
            if not isinstance(model, RetrievalModel):
                raise TypeError(
                    f"Ensemble member {position} must be a RetrievalModel. "
                    f"Received: {type(model).__name__}"
                )
        self.models = models
        self.weights = _check_weights(weights, len(models))
        self.candidate_id = models[0].candidate_id
        _check_same_catalogue(models)
        scales = [
            weight / (model.temperature or 1.0)
            for weight, model in zip(self.weights, models)
        ]
        self.query_tower = _SideBySide([m.query_tower for m in models], scales)
        self.candidate_tower = _SideBySide(
            [m.candidate_tower for m in models], [1.0] * len(models)
        )
        self.catalogue = Catalogue(
            models[0].candidates, self.candidate_id, self.candidate_tower
        )

    def embed_batch(
        self, features: Mapping[str, Any], training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Query and candidate vectors of a raw batch, members side by side."""
        if isinstance(features, PreparedBatch):
            raise ValueError(_RAW_ONLY)
        pairs = [
            model.embed_batch(features, training=training) for model in self.models
        ]
        query = self.query_tower.join([q for q, _ in pairs])
        return query, self.candidate_tower.join([c for _, c in pairs])

    def candidate_embeddings(
        self, batch_size: int = _EVAL_BATCH
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Embeds the catalogue once: ``(ids, members' vectors side by side)``."""
        return self.catalogue.embed(batch_size)

    def evaluate_top_k(
        self,
        data: tf.data.Dataset,
        ks: Sequence[int] | None = None,
        batch_size: int = _EVAL_BATCH,
        exclude: str | None = None,
    ) -> dict[str, float]:
        """Hit rate and NDCG at each k, and MRR, of the summed scores.

        As :meth:`ctxfeatures.RetrievalModel.evaluate_top_k`, on raw
        batches only (each member prepares its own).
        """
        return evaluate_top_k(self, data, ks=ks, exclude=exclude, batch_size=batch_size)

    def recommend(
        self,
        features: Mapping[str, Any] | tf.data.Dataset,
        k: int = 10,
        exclude: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best candidates of each request by the summed scores.

        As :meth:`ctxfeatures.RetrievalModel.recommend`: raw query features
        in (every member's), ``(ids, scores)`` numpy arrays out, the same
        answers as :meth:`export_recommender`'s SavedModel.
        """
        return recommend(self, features, k=k, exclude=exclude)

    def export_recommender(
        self,
        path: str,
        k: int = 10,
        exclude: str | None = None,
        index: IVFIndex | IVFSearch | None = None,
    ) -> None:
        """Writes one SavedModel that ranks by the summed scores.

        As :meth:`ctxfeatures.RetrievalModel.export_recommender`: its
        ``serving_default`` takes every member's raw query features (the
        union of their names) and returns ``ids`` and ``scores``, the scores
        being the weighted sums of the members' logits.
        """
        ids, vectors = self.catalogue.embed()
        export_recommender(
            self.query_tower, ids, vectors, path, k=k, exclude=exclude, index=index
        )


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    values = list(np.asarray(weights, dtype=object).reshape(-1))
    valid = len(values) == count and all(
        isinstance(w, (int, float, np.integer, np.floating))
        and not isinstance(w, bool)
        and np.isfinite(w)
        and w > 0
        for w in values
    )
    if not valid:
        raise ValueError(
            f"`weights` must be {count} positive finite numbers, one per "
            f"member. Received: weights={weights!r}"
        )
    return [float(w) for w in values]


def _check_same_catalogue(models: Sequence[Any]) -> None:
    first = models[0]
    ids = first.catalogue.index.ids
    for position, model in enumerate(models[1:], start=1):
        if model.candidate_id != first.candidate_id:
            raise ValueError(
                f"Ensemble member {position} names its candidates "
                f"'{model.candidate_id}', member 0 '{first.candidate_id}': "
                "members must rank one catalogue."
            )
        other = model.catalogue.index.ids
        same = (
            other.dtype == ids.dtype
            and other.shape == ids.shape
            and bool(tf.reduce_all(tf.equal(other, ids)))
        )
        if not same:
            raise ValueError(
                f"Ensemble member {position} ranks another catalogue than "
                "member 0 (different ids, or the same ids in another order): "
                "build every member from the same candidates dataset."
            )

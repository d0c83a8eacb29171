"""RetrievalModel: two towers, in-batch softmax training, fast top-k evaluation."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ctxfeatures.layers._base import batched, check_feature_dataset, is_batched
from ctxfeatures.tower import FeatureSpec, Tower, adapt_towers

_EVAL_BATCH = 4096


# Keys of a prepared batch (see RetrievalModel.prepare); "/" keeps them apart
# from feature names users are likely to have.
_QUERY = "ctxfeatures/query"
_CANDIDATE = "ctxfeatures/candidate"
# Our graph code has no tensor-dependent Python control flow: skipping
# AutoGraph's source transformation cuts tracing time (about 0.5 s per fit).
_static = tf.autograph.experimental.do_not_convert


def _is_prepared(features: Any) -> bool:
    return isinstance(features, Mapping) and _QUERY in features


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class InBatchSoftmax(tf.keras.losses.Loss):
    """The TFRS retrieval loss, without materialising its label matrix.

    ``tfrs.tasks.Retrieval`` scores every query against every candidate of the
    batch and passes ``labels = tf.eye(num_queries, num_candidates)``: query
    ``i``'s positive is column ``i``. Softmax cross-entropy against those
    labels is ``logsumexp(scores_i) - scores_ii``, which this loss computes
    directly. The values equal TFRS' default
    ``CategoricalCrossentropy(from_logits=True, reduction=SUM)``; the step is
    faster because the dense label matrix is never built or read. Temperature,
    logQ correction and accidental-hit removal are applied by the task to the
    scores before this loss sees them, as with the default.

    :class:`RetrievalModel` uses it; it also drops into a plain TFRS model:
    ``tfrs.tasks.Retrieval(loss=ctxfeatures.InBatchSoftmax())``. It assumes
    those identity labels, so do not combine it with TFRS' hard-negative
    mining, which reorders them.

    Args:
        name: Name of the loss.

    Example:
        >>> scores = tf.constant([[1.0, 0.0], [2.0, 2.0]])
        >>> round(float(ctxfeatures.InBatchSoftmax()(tf.eye(2), scores)), 4)
        1.0064
    """

    def __init__(self, name: str = "in_batch_softmax") -> None:
        super().__init__(reduction=tf.keras.losses.Reduction.SUM, name=name)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @_static
    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        # y_true is the identity by construction; reading it would cost a
        # (batch, batch) tensor per step.
        del y_true
        return _softmax_cross_entropy_on_diagonal(y_pred)


@tf.custom_gradient
def _softmax_cross_entropy_on_diagonal(scores: tf.Tensor) -> Any:
    """``logsumexp(scores_i) - scores_ii`` per row, with a hand-written gradient.

    The gradient is ``softmax(scores) - I``. Written out, it reuses the
    forward pass's exponentials and edits the diagonal in place, where
    autodiff would recompute them and add a dense matrix for the diagonal:
    on a 2048 x 2048 batch this halves the loss's share of the step.
    """
    peak = tf.stop_gradient(tf.reduce_max(scores, axis=1, keepdims=True))
    exps = tf.exp(scores - peak)
    sums = tf.reduce_sum(exps, axis=1, keepdims=True)
    loss = tf.squeeze(tf.math.log(sums) + peak, 1) - tf.linalg.diag_part(scores)

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        probabilities = exps * (upstream[:, None] / sums)
        diagonal = tf.linalg.diag_part(probabilities) - upstream
        return tf.linalg.set_diag(probabilities, diagonal)

    return loss, grad


class RetrievalModel(tfrs.models.Model):
    """A two-tower retrieval model on ``tfrs.models.Model`` + ``tfrs.tasks.Retrieval``.

    Training uses the in-batch softmax loss only: no retrieval metric runs
    during ``fit`` (TFRS' ``FactorizedTopK`` would re-embed the whole catalogue
    on every batch). :meth:`evaluate_top_k` embeds the catalogue once and gives
    the same top-k categorical accuracies as ``FactorizedTopK``.

    Under ``tf.distribute`` strategies with several replicas, candidate
    embeddings are gathered across replicas, so every query sees the whole
    global batch as negatives, exactly as on one device.

    Args:
        query_tower: Tower applied to the query features.
        candidate_tower: Tower applied to the candidate features.
        candidates: The catalogue: a ``tf.data.Dataset`` of candidate feature
            dicts (batched or not), including ``candidate_id``.
        candidate_id: Key of the candidate identifier in the catalogue, returned
            by the exported recommender.
        temperature: Optional softmax temperature of the loss.
        remove_accidental_hits: Mask in-batch negatives that share the positive's
            ``candidate_id`` (TFRS semantics).
        sample_weight: Optional key of a per-example weight in the features.
        candidate_sampling_probability: Optional key of each candidate's
            sampling probability, for TFRS' logQ popularity correction.

    Duplicate candidates: the catalogue is used as given. A candidate listed
    twice takes two places in the ranking (and twice in exported top-k
    lists), exactly as TFRS' ``FactorizedTopK`` and ``BruteForce`` count it.
    De-duplicate the catalogue first if that is not what you want.

    Raises:
        ValueError: towers with different output sizes, an empty catalogue, or
            a catalogue missing ``candidate_id`` or a candidate feature.
        TypeError: a catalogue feature whose dtype the candidate tower rejects.
    """

    def __init__(
        self,
        query_tower: Tower,
        candidate_tower: Tower,
        candidates: tf.data.Dataset,
        candidate_id: str,
        *,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        sample_weight: str | None = None,
        candidate_sampling_probability: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if query_tower.output_dim != candidate_tower.output_dim:
            raise ValueError(
                f"Tower '{query_tower.name}' outputs {query_tower.output_dim} "
                f"values but tower '{candidate_tower.name}' outputs "
                f"{candidate_tower.output_dim}: their dot product is undefined. "
                "Make the last entry of `head_units` the same in both towers."
            )
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.candidate_id = candidate_id
        self.temperature = temperature
        self.remove_accidental_hits = remove_accidental_hits
        self.sample_weight_key = sample_weight
        self.sampling_probability_key = candidate_sampling_probability
        # Held outside Keras tracking: a dataset is not model state.
        self._data = types.SimpleNamespace(
            catalogue=self._check_catalogue(candidates), batches={}, functions={}
        )
        self.task = tfrs.tasks.Retrieval(
            loss=InBatchSoftmax(),
            metrics=None,
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
        )
        # Variables are created here, i.e. inside any active strategy scope.
        query_tower.build()
        candidate_tower.build()

    # ----------------------------------------------------------------- catalogue
    def _check_catalogue(self, candidates: tf.data.Dataset) -> tf.data.Dataset:
        tower = self.candidate_tower
        if not isinstance(candidates, tf.data.Dataset) or not isinstance(
            candidates.element_spec, Mapping
        ):
            raise TypeError(
                f"Tower '{tower.name}': `candidates` must be a tf.data.Dataset of "
                f"feature dicts; received {type(candidates).__name__}."
            )
        spec = candidates.element_spec
        for key in [self.candidate_id, *tower.feature_names]:
            if key not in spec:
                raise ValueError(
                    f"Tower '{tower.name}': the catalogue has no feature '{key}'. "
                    f"Catalogue keys: {sorted(spec)}."
                )
        for feature, expected in tower.input_signature().items():
            got = spec[feature].dtype
            compatible = got == expected.dtype or (
                got.is_integer and expected.dtype.is_integer
            )
            if not compatible:
                raise TypeError(
                    f"Tower '{tower.name}', feature '{feature}': the catalogue "
                    f"holds {got.name} but the tower expects "
                    f"{expected.dtype.name}. Convert the catalogue column or "
                    "change the layer's id_dtype."
                )
        if candidates.take(1).cardinality() == 0 or not any(
            True for _ in candidates.take(1)
        ):
            raise ValueError(f"Tower '{tower.name}': the candidate catalogue is empty.")
        return candidates

    @property
    def candidates(self) -> tf.data.Dataset:
        """The candidate catalogue this model ranks."""
        return self._data.catalogue

    def candidate_embeddings(
        self, batch_size: int = _EVAL_BATCH
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Embeds the catalogue once: returns ``(ids, embeddings)``."""
        tower = self.candidate_tower
        embed = self._function("embed_candidates", _static(tower.__call__))
        ids, vectors = [], []
        for batch in self._catalogue_batches(batch_size):
            ids.append(batch[self.candidate_id])
            vectors.append(embed(batch))
        return tf.concat(ids, axis=0), tf.concat(vectors, axis=0)

    def _catalogue_batches(self, batch_size: int) -> list[dict[str, tf.Tensor]]:
        """The catalogue's raw features, read from its dataset once."""
        cache = self._data.batches
        if batch_size not in cache:
            keys = [self.candidate_id, *self.candidate_tower.feature_names]
            cache.clear()
            cache[batch_size] = [
                {key: batch[key] for key in dict.fromkeys(keys)}
                for batch in batched(self._data.catalogue, batch_size)
            ]
        return cache[batch_size]

    def _function(self, name: str, fn: Any) -> Any:
        """A tf.function kept across calls, so repeated evaluations never retrace."""
        functions = self._data.functions
        if name not in functions:
            functions[name] = tf.function(fn, reduce_retracing=True)
        return functions[name]

    # ----------------------------------------------------------------- input
    def _passthrough_keys(self) -> list[str]:
        keys = [self.sample_weight_key, self.sampling_probability_key]
        if self.remove_accidental_hits:
            keys.append(self.candidate_id)
        return [key for key in keys if key is not None]

    def prepare(self, data: tf.data.Dataset) -> tf.data.Dataset:
        """Moves the towers' non-trainable work into the input pipeline.

        Maps each batch of raw features through both towers'
        :meth:`~ctxfeatures.Tower.preprocess` (vocabulary lookups,
        tokenisation, bucketing, normalisation), keeping the sample weight,
        sampling probability and (with ``remove_accidental_hits``) candidate
        id columns. :meth:`fit`, :meth:`evaluate` and :meth:`evaluate_top_k`
        accept the result in place of raw batches and give the same numbers.
        Cache it to do that work once instead of every epoch::

            train = model.prepare(raw_train.batch(2048)).cache()
            model.fit(train, epochs=3)

        Adapt the towers before preparing: the prepared values hold the
        vocabulary and statistics of that moment.

        Args:
            data: A batched ``tf.data.Dataset`` of raw feature dicts.

        Returns:
            A dataset of prepared batches, in the same order.

        Raises:
            TypeError: ``data`` is not a dataset of dicts.
            ValueError: unbatched or already prepared data, or a feature
                missing from it.
        """
        check_feature_dataset(data, "RetrievalModel.prepare()")
        spec = data.element_spec
        if _QUERY in spec:
            raise ValueError("RetrievalModel.prepare(): the data is already prepared.")
        if not is_batched(data):
            raise ValueError(
                "RetrievalModel.prepare() needs batched data, since the batch "
                "is what in-batch softmax draws its negatives from: call "
                "`data.batch(batch_size)` first."
            )
        keys = self._passthrough_keys()
        self._check_features(spec, keys, "RetrievalModel.prepare()")
        query, candidate = self.query_tower, self.candidate_tower

        @_static
        def prepare_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
            prepared = {
                _QUERY: query.preprocess(batch),
                _CANDIDATE: candidate.preprocess(batch),
            }
            prepared.update({key: batch[key] for key in keys})
            return prepared

        return data.map(
            prepare_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    @staticmethod
    def _check_features(spec: Mapping[str, Any], keys: list[str], owner: str) -> None:
        for key in keys:
            if key not in spec:
                raise ValueError(
                    f"{owner}: feature '{key}' is missing. Keys: {sorted(spec)}."
                )

    @_static
    def _embed_pair(
        self, features: Mapping[str, Any], training: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        if _is_prepared(features):
            return (
                self.query_tower.embed(features[_QUERY], training=training),
                self.candidate_tower.embed(features[_CANDIDATE], training=training),
            )
        return (
            self.query_tower(features, training=training),
            self.candidate_tower(features, training=training),
        )

    # ----------------------------------------------------------------- training
    def compute_loss(
        self, features: Mapping[str, tf.Tensor], training: bool = False
    ) -> tf.Tensor:
        query, candidate = self._embed_pair(features, training)
        weight = self._optional(features, self.sample_weight_key)
        probability = self._optional(features, self.sampling_probability_key)
        ids = features[self.candidate_id] if self.remove_accidental_hits else None
        candidate, probability, ids = self._gather_replicas(candidate, probability, ids)
        return self.task(
            query,
            candidate,
            sample_weight=weight,
            candidate_sampling_probability=probability,
            candidate_ids=ids,
            compute_metrics=False,
            compute_batch_metrics=False,
        )

    @staticmethod
    def _optional(features: Mapping[str, tf.Tensor], key: str | None) -> Any:
        if key is None:
            return None
        if key not in features:
            raise ValueError(
                f"RetrievalModel: feature '{key}' (given as sample weight or "
                f"sampling probability) is missing. Keys: {sorted(features)}."
            )
        return tf.reshape(tf.cast(features[key], tf.float32), [-1])

    @staticmethod
    def _gather_replicas(candidate: tf.Tensor, *extra: Any) -> tuple[Any, ...]:
        """Gives each replica the global batch as negatives, its own rows first.

        TFRS treats row i of the candidates as the positive of query i, so the
        gathered rows are rotated to put this replica's slice at the top.
        """
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return (candidate, *extra)
        size = tf.shape(candidate)[:1]
        sizes = context.all_gather(size, axis=0)
        offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
        rotate = lambda x: tf.roll(  # noqa: E731
            context.all_gather(x, axis=0), shift=-offset, axis=0
        )
        return (rotate(candidate), *(None if x is None else rotate(x) for x in extra))

    # ----------------------------------------------------------------- evaluation
    def evaluate_top_k(
        self,
        data: tf.data.Dataset,
        ks: Sequence[int] | None = None,
        batch_size: int = _EVAL_BATCH,
        exclude: str | None = None,
    ) -> dict[str, float]:
        """Hit rate and NDCG at each k, and MRR, of each query's true candidate.

        Embeds the catalogue once, then for each batch of queries scores the
        whole catalogue with one matrix product. ``top_k`` equals TFRS'
        ``FactorizedTopK`` top-k categorical accuracy. See
        :func:`ctxfeatures.evaluation.evaluate_top_k`, which this calls.

        Args:
            data: A dataset of feature dicts (query and candidate features),
                batched or not, or the output of :meth:`prepare`.
            ks: The cut-offs; by default those of 1, 5, 10, 50 and 100 that
                do not exceed the catalogue size.
            batch_size: Batch size when ``data`` is unbatched.
            exclude: Optional feature (e.g. ``"history"``) of items removed
                from each query's ranking.

        Returns:
            ``{"top_1": ..., "ndcg_1": ..., ..., "mrr": ...}`` in ``[0, 1]``.

        Raises:
            ValueError: a cut-off larger than the catalogue or below 1, or a
                missing feature.
        """
        from ctxfeatures.evaluation import evaluate_top_k

        return evaluate_top_k(self, data, ks, exclude=exclude, batch_size=batch_size)

    # ----------------------------------------------------------------- serving
    def export_recommender(
        self, path: str, k: int = 10, exclude: str | None = None
    ) -> None:
        """Writes a SavedModel that maps raw query features to top-k candidates.

        The ``serving_default`` signature takes the query tower's raw features
        (e.g. ``user_id`` string ``(batch,)``, ``timestamp`` int64 ``(batch,)``,
        ``history`` ``(batch, length)`` padded with ``""``) and returns
        ``ids`` ``(batch, k)`` and ``scores`` ``(batch, k)``. The catalogue is
        embedded now, once. Loading needs TensorFlow only:
        ``tf.saved_model.load(path).signatures["serving_default"](**features)``.
        Unseen ids are served through the out-of-vocabulary rows.

        With ``exclude`` (e.g. ``"history"``), the signature also takes that
        feature, a ``(batch, length)`` list of candidate ids per request
        (padding ``""`` or ``-1``), and never returns one of them. When fewer
        than ``k`` candidates remain, the rest of the row is padding with a
        score of ``-inf``.

        Args:
            path: Directory to write.
            k: Number of candidates returned per query.
            exclude: Optional request feature of candidates never to return.

        Raises:
            ValueError: ``k`` below 1 or above the catalogue size, or an
                ``exclude`` query feature that is not a list of ids.
        """
        from ctxfeatures.serving import export_recommender

        ids, vectors = self.candidate_embeddings()
        export_recommender(self.query_tower, ids, vectors, path, k=k, exclude=exclude)


def with_sampling_probability(
    data: tf.data.Dataset,
    candidate_id: str,
    key: str = "candidate_sampling_probability",
) -> tf.data.Dataset:
    """Adds each example's candidate frequency in ``data`` as feature ``key``.

    In-batch softmax samples negatives in proportion to their popularity, so
    it over-penalises popular candidates. Passing this column as
    ``candidate_sampling_probability`` to :class:`RetrievalModel` applies
    TFRS' logQ correction, which restores the popularity signal (on the
    MovieLens study it lifts test top-100 from about 0.24 to about 0.41).
    Compute it on the training data only.

    Args:
        data: Unbatched dataset of feature dicts with ``candidate_id``.
        candidate_id: Key of the candidate identifier.
        key: Name of the added float32 feature.

    Returns:
        ``data`` with the extra feature.
    """
    ids = np.concatenate(
        [b.numpy() for b in data.map(lambda x: x[candidate_id]).batch(1 << 16)]
    )
    if ids.size == 0:
        raise ValueError("with_sampling_probability() received an empty dataset.")
    names, counts = np.unique(ids, return_counts=True)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.constant(counts / ids.size, tf.float32)
        ),
        default_value=tf.constant(0.5 / ids.size, tf.float32),
    )
    return data.map(lambda x: {**x, key: table.lookup(x[candidate_id])})


def build_retrieval_model(
    query_features: FeatureSpec,
    candidate_features: FeatureSpec,
    candidates: tf.data.Dataset,
    *,
    candidate_id: str,
    adapt_data: tf.data.Dataset,
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
        candidates: The catalogue, a dataset of candidate feature dicts.
        candidate_id: Catalogue key of the candidate identifier.
        adapt_data: Training interactions used to adapt the query tower.
        head_units: Dense head sizes shared by both towers.
        activation: Activation between head layers.
        l2_normalize: L2-normalise both towers' outputs.
        strategy: Optional ``tf.distribute.Strategy``.
        **model_kwargs: Passed to :class:`RetrievalModel`.

    Returns:
        An adapted, uncompiled :class:`RetrievalModel`.
    """
    query = Tower(query_features, head_units, activation, l2_normalize, "query")
    candidate = Tower(
        candidate_features, head_units, activation, l2_normalize, "candidate"
    )
    adapt_towers(adapt_data, query)
    adapt_towers(candidates, candidate)
    scope = strategy.scope() if strategy is not None else _null_scope()
    with scope:
        return RetrievalModel(
            query, candidate, candidates, candidate_id, **model_kwargs
        )


class _null_scope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

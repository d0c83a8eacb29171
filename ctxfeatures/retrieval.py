"""RetrievalModel: two towers trained with in-batch softmax on TFRS.

The model keeps the towers, the TFRS retrieval task, the loss computation and
the gathering of candidates across replicas. The catalogue lives in
:mod:`ctxfeatures.catalogue`, the loss in :mod:`ctxfeatures.losses`, top-k
evaluation in :mod:`ctxfeatures.evaluation` and export in
:mod:`ctxfeatures.serving`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._checks import (
    check_temperature,
    checked_batch_rows,
    checked_column,
)
from ctxfeatures._distribute import isolate_collectives
from ctxfeatures._steps import KERAS3, ModelBase, Task, replica_logs
from ctxfeatures.catalogue import Catalogue
from ctxfeatures.evaluation import evaluate_top_k
from ctxfeatures.index import IVFIndex, IVFSearch
from ctxfeatures.losses import InBatchSoftmax
from ctxfeatures.negatives import InBatchNegatives, Negatives, get_negatives
from ctxfeatures.preparation import PreparesInput
from ctxfeatures.recommend import recommend
from ctxfeatures.serving import export_recommender
from ctxfeatures.tower import PreparedBatch, Tower

_EVAL_BATCH = 4096
_NO_CALL = (
    "A RetrievalModel has no single output to call or predict: use "
    "`model.recommend(features, k=10, exclude='history')` for top-k ids and "
    "scores, `model.query_tower(features)` / `model.candidate_embeddings()` "
    "for vectors, or `model.export_recommender(path)` to serve."
)


class RetrievalModel(PreparesInput, ModelBase):
    """A two-tower retrieval model: TFRS' model and task under Keras 2, the
    same steps and loss without TFRS under Keras 3 (``ctxfeatures._steps``).

    Training uses the in-batch softmax loss only: no retrieval metric runs
    during ``fit`` (TFRS' ``FactorizedTopK`` would re-embed the whole catalogue
    on every batch). :meth:`evaluate_top_k` embeds the catalogue once and gives
    the same top-k categorical accuracies as ``FactorizedTopK``. ``fit`` and
    ``evaluate`` report ``loss`` as the mean of the batch losses (the sum over
    each batch's examples), as Keras models do; TFRS alone reports the last
    batch's.

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
        negatives: Where each query's negatives come from: ``"in-batch"``
            (default), ``"catalogue"`` (a full softmax) or a
            :class:`~ctxfeatures.negatives.Negatives` such as
            ``MixedNegatives(1024)``; see :mod:`ctxfeatures.negatives`.

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
        negatives: str | Negatives = "in-batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_temperature(temperature)
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
        self.catalogue = Catalogue(candidates, candidate_id, candidate_tower)
        self.negatives = get_negatives(negatives)
        self.negatives.check(self)
        self.task = Task(
            loss=InBatchSoftmax(),
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
        )
        # Epoch means of the batch losses, as Keras' own models report them:
        # TFRS reports the last batch's loss, which under
        # ParameterServerStrategy is the last step of whichever worker ran it.
        self._loss_means = [
            tf.keras.metrics.Mean(name)
            for name in ("loss", "regularization_loss", "total_loss")
        ]
        isolate_collectives(tf.distribute.get_strategy())
        # Variables are created here, i.e. inside any active strategy scope.
        query_tower.build()
        candidate_tower.build()
        if KERAS3:
            # Keras 3 would otherwise trace `call` to build the model.
            self.built = True

    @property
    def metrics(self) -> list:
        # Keras 3's compile adds a "loss" tracker of its own; the model's
        # epoch means are its only metrics, as under TFRS.
        return list(self._loss_means) if KERAS3 else super().metrics

    @property
    def candidates(self) -> tf.data.Dataset:
        """The candidate catalogue this model ranks."""
        return self.catalogue.dataset

    def candidate_embeddings(
        self, batch_size: int = _EVAL_BATCH
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Embeds the catalogue once: returns ``(ids, embeddings)``."""
        return self.catalogue.embed(batch_size)

    # ----------------------------------------------------------------- training
    def compile(self, *args: Any, jit_compile: Any = None, **kwargs: Any) -> None:
        """Keras' ``compile``, refusing ``jit_compile=True``.

        XLA cannot compile the training step: string ids reach it, and pooled
        features look up each batch's distinct ids, a shape that depends on
        the values. Without this check the first ``fit`` step fails deep
        inside TensorFlow's XLA bridge.

        Raises:
            ValueError: if ``jit_compile`` is true.
        """
        if jit_compile:
            raise ValueError(
                "`jit_compile` must be left unset: XLA cannot compile a "
                "RetrievalModel's step (it reads string ids and pools each "
                "batch's distinct ids). Received: jit_compile=True"
            )
        if KERAS3 and jit_compile is None:
            jit_compile = False  # Keras 3's "auto" may choose XLA
        super().compile(*args, jit_compile=jit_compile, **kwargs)

    def train_step(self, inputs: Any) -> dict[str, tf.Tensor]:
        """TFRS' step; the logs are epoch means, as in ``History``."""
        return self._mean_logs(super().train_step(inputs))

    def test_step(self, inputs: Any) -> dict[str, tf.Tensor]:
        """TFRS' step; the logs are means over the evaluated batches."""
        return self._mean_logs(super().test_step(inputs))

    def _mean_logs(self, logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # Each replica holds its share of the global batch's loss and the
        # whole regularization: the metrics sum over replicas, so weighting
        # each replica 1/replicas counts one batch, its loss summed.
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        loss = logs["loss"] * replicas
        values = {
            "loss": loss,
            "regularization_loss": logs["regularization_loss"],
            "total_loss": loss + logs["regularization_loss"],
        }
        for mean in self._loss_means:
            mean.update_state(values[mean.name], sample_weight=1.0 / replicas)
        # Keys equal to `self.metrics`: Keras then reads the epoch's results
        # from the metrics (under ParameterServerStrategy, from all workers).
        return replica_logs({metric.name: metric.result() for metric in self.metrics})

    def compute_loss(
        self, features: Mapping[str, tf.Tensor] | PreparedBatch, training: bool = False
    ) -> tf.Tensor:
        batch = self.prepare_batch(features)
        query, candidate = self.embed_batch(batch, training=training)
        if training and isinstance(self.negatives, InBatchNegatives):
            step = getattr(self.optimizer, "iterations", 0)
            query = checked_batch_rows(query, step)
        weight = self._context(batch, self.sample_weight_key)
        probability = self._context(batch, self.sampling_probability_key)
        ids = batch.context[self.candidate_id] if self._loss_reads_ids else None
        return self.negatives.loss(
            self, query, candidate, ids=ids, weight=weight, probability=probability
        )

    def _context(self, batch: PreparedBatch, key: str | None) -> Any:
        if key is None:
            return None
        self._check_keys(batch.context, [key])
        values = tf.reshape(tf.cast(batch.context[key], tf.float32), [-1])
        return checked_column(values, key, key == self.sampling_probability_key)

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        """Refused: a RetrievalModel is not saved as one file.

        Its catalogue is a dataset, which a model file cannot hold. Save what
        each use needs instead: ``save_weights()`` (or a checkpoint) to
        resume training, ``query_tower.save()`` / ``candidate_tower.save()``
        for the towers, :meth:`export_recommender` to serve.

        Raises:
            ValueError: always, naming those alternatives.
        """
        raise ValueError(
            "RetrievalModel cannot be saved as one model file: its catalogue is "
            "a tf.data.Dataset. Use `model.save_weights(path)` to resume "
            "training, `model.query_tower.save('query.keras')` and "
            "`model.candidate_tower.save('candidate.keras')` for the towers, or "
            "`model.export_recommender(path)` to serve."
        )

    def recommend(
        self,
        features: Mapping[str, Any] | tf.data.Dataset,
        k: int = 10,
        exclude: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best candidate ids and their scores for each request.

        Raw query features in (a mapping of columns, or a batched dataset),
        ranked over the whole catalogue by the exported recommender's own
        search: ``(ids, scores)``, numpy arrays of shape ``(requests, k)``.
        With ``exclude="history"`` a request's listed ids are never returned.
        See :func:`ctxfeatures.recommend.recommend` for the arguments.
        """
        return recommend(self, features, k=k, exclude=exclude)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Before Keras' own checks of the inputs, which under Keras 3 would
        # refuse a dict of lists without a word about `recommend`.
        raise NotImplementedError(_NO_CALL)

    def call(self, inputs: Any, training: bool = False) -> Any:
        """Refused: a two-tower model has no single output; see :meth:`recommend`."""
        raise NotImplementedError(_NO_CALL)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: see :meth:`recommend` (top-k ids and scores per request)."""
        raise NotImplementedError(_NO_CALL)

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
        return evaluate_top_k(self, data, ks, exclude=exclude, batch_size=batch_size)

    # ----------------------------------------------------------------- serving
    def export_recommender(
        self,
        path: str,
        k: int = 10,
        exclude: str | None = None,
        index: IVFIndex | IVFSearch | None = None,
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

        The top ``k`` is exact by default. For large catalogues pass an
        :class:`~ctxfeatures.index.IVFIndex`: an approximate inverted-file
        index built now and kept inside the SavedModel (plain TensorFlow ops),
        or an ``IVFSearch`` already built from
        :meth:`candidate_embeddings` (to export it with other ``probes``).

        Args:
            path: Directory to write.
            k: Number of candidates returned per query.
            exclude: Optional request feature of candidates never to return.
            index: ``None`` for exact top-k, an ``IVFIndex`` to build, or a
                built ``IVFSearch``.

        Raises:
            ValueError: ``k`` below 1 or above the catalogue size, or an
                ``exclude`` query feature that is not a list of ids.
            TypeError: an ``index`` of another kind.
        """
        ids, vectors = self.catalogue.embed()
        export_recommender(
            self.query_tower, ids, vectors, path, k=k, exclude=exclude, index=index
        )


def __getattr__(name: str) -> Any:
    # build_retrieval_model moved to ctxfeatures.builder; this keeps
    # `from ctxfeatures.retrieval import build_retrieval_model` working.
    if name == "build_retrieval_model":
        from ctxfeatures.builder import build_retrieval_model

        return build_retrieval_model
    raise AttributeError(f"module 'ctxfeatures.retrieval' has no attribute {name!r}")

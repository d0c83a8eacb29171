"""ctxfeatures: composable Keras layers for context-aware recommenders.

Everything runs under Keras 3 (TensorFlow's default) and under Keras 2
(tf-keras, ``TF_USE_LEGACY_KERAS=1``), where :class:`RetrievalModel` is a
TensorFlow Recommenders model; see "Keras 2 or Keras 3" in the docs.
"""

from ctxfeatures._compat import repair_zip_seek, select_keras

# Before any tf.keras module is imported: the Keras of the process (2 or 3),
# Keras 3 when none is chosen; the environment is left as it is.
#: The Keras major version this process uses, ``2`` or ``3`` (see "Keras 2 or
#: Keras 3" in the docs).
keras_version = select_keras()
# Without it, `.keras` archives with vocabularies fail to load on some Python
# 3.12 releases (see `_compat`).
repair_zip_seek()

from ctxfeatures import (  # noqa: E402
    baselines,
    callbacks,
    engines,
    evaluation,
    history,
    index,
    negatives,
    recommend,
    saving,
    sequences,
    serving,
    shards,
    tfrecords,
    training,
)
from ctxfeatures.callbacks import TopKValidation  # noqa: E402
from ctxfeatures.catalogue import Catalogue  # noqa: E402
from ctxfeatures.ensemble import Ensemble  # noqa: E402
from ctxfeatures.layers import (  # noqa: E402
    AttentionHistory,
    CausalAttentionHistory,
    CyclicalTime,
    DurationBuckets,
    FeatureLayer,
    HistoryEmbedding,
    IdEmbedding,
    MultiIdEmbedding,
    NormalizedTimestamp,
    OneStageFeatureLayer,
    TextEmbedding,
    TimestampBuckets,
)
from ctxfeatures.losses import InBatchSoftmax  # noqa: E402
from ctxfeatures.sampling import with_sampling_probability  # noqa: E402
from ctxfeatures.saving import load_model  # noqa: E402
from ctxfeatures.tower import PreparedBatch, Tower, adapt_towers  # noqa: E402

# TFRS-backed names, imported on first use so that the layers stay usable
# (and reusable by another backend) without TensorFlow Recommenders.
_RETRIEVAL = {
    "RetrievalModel": "retrieval",
    "SequenceRetrievalModel": "sequence_model",
    "build_retrieval_model": "builder",
}


def __getattr__(name: str):
    if name in _RETRIEVAL:
        import importlib

        module = importlib.import_module(f"ctxfeatures.{_RETRIEVAL[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'ctxfeatures' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "keras_version",
    "AttentionHistory",
    "CausalAttentionHistory",
    "Catalogue",
    "CyclicalTime",
    "DurationBuckets",
    "Ensemble",
    "FeatureLayer",
    "HistoryEmbedding",
    "IdEmbedding",
    "InBatchSoftmax",
    "MultiIdEmbedding",
    "NormalizedTimestamp",
    "OneStageFeatureLayer",
    "PreparedBatch",
    "RetrievalModel",
    "SequenceRetrievalModel",
    "TextEmbedding",
    "TimestampBuckets",
    "TopKValidation",
    "Tower",
    "__version__",
    "adapt_towers",
    "baselines",
    "callbacks",
    "engines",
    "evaluation",
    "history",
    "index",
    "load_model",
    "negatives",
    "recommend",
    "saving",
    "sequences",
    "serving",
    "shards",
    "tfrecords",
    "training",
    "build_retrieval_model",
    "with_sampling_probability",
]

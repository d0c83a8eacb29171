"""ctxfeatures: composable Keras layers for context-aware recommenders."""

from ctxfeatures._compat import ensure_keras2

# Must run before TensorFlow Recommenders or any tf.keras module is imported.
ensure_keras2()

from ctxfeatures import baselines, evaluation, history  # noqa: E402
from ctxfeatures.layers import (  # noqa: E402
    CyclicalTime,
    DurationBuckets,
    FeatureLayer,
    HistoryEmbedding,
    IdEmbedding,
    MultiIdEmbedding,
    NormalizedTimestamp,
    TextEmbedding,
    TimestampBuckets,
)
from ctxfeatures.retrieval import (  # noqa: E402
    InBatchSoftmax,
    RetrievalModel,
    build_retrieval_model,
    with_sampling_probability,
)
from ctxfeatures.tower import Tower, adapt_towers  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CyclicalTime",
    "DurationBuckets",
    "FeatureLayer",
    "HistoryEmbedding",
    "IdEmbedding",
    "InBatchSoftmax",
    "MultiIdEmbedding",
    "NormalizedTimestamp",
    "RetrievalModel",
    "TextEmbedding",
    "TimestampBuckets",
    "Tower",
    "__version__",
    "adapt_towers",
    "baselines",
    "evaluation",
    "history",
    "build_retrieval_model",
    "with_sampling_probability",
]

"""ctxfeatures: composable Keras layers for context-aware recommenders."""

from ctxfeatures._compat import ensure_keras2

# Must run before TensorFlow Recommenders or any tf.keras module is imported.
ensure_keras2()

from ctxfeatures import baselines, evaluation, history  # noqa: E402
from ctxfeatures.catalogue import Catalogue  # noqa: E402
from ctxfeatures.layers import (  # noqa: E402
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
from ctxfeatures.retrieval import (  # noqa: E402
    PreparedBatch,
    RetrievalModel,
    build_retrieval_model,
)
from ctxfeatures.sampling import with_sampling_probability  # noqa: E402
from ctxfeatures.tower import Tower, adapt_towers  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Catalogue",
    "CyclicalTime",
    "DurationBuckets",
    "FeatureLayer",
    "HistoryEmbedding",
    "IdEmbedding",
    "InBatchSoftmax",
    "MultiIdEmbedding",
    "NormalizedTimestamp",
    "OneStageFeatureLayer",
    "PreparedBatch",
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

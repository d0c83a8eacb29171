"""Feature layers: one raw feature in, a ``(batch, dim)`` float32 tensor out."""

from ctxfeatures.layers import state
from ctxfeatures.layers._base import FeatureLayer, OneStageFeatureLayer
from ctxfeatures.layers.attention_history import AttentionHistory
from ctxfeatures.layers.causal_attention_history import CausalAttentionHistory
from ctxfeatures.layers.cyclical_time import CyclicalTime
from ctxfeatures.layers.duration_buckets import DurationBuckets
from ctxfeatures.layers.history_embedding import HistoryEmbedding
from ctxfeatures.layers.id_embedding import IdEmbedding
from ctxfeatures.layers.multi_id_embedding import MultiIdEmbedding
from ctxfeatures.layers.normalized_timestamp import NormalizedTimestamp
from ctxfeatures.layers.text_embedding import TextEmbedding
from ctxfeatures.layers.timestamp_buckets import TimestampBuckets

__all__ = [
    "AttentionHistory",
    "CausalAttentionHistory",
    "CyclicalTime",
    "DurationBuckets",
    "FeatureLayer",
    "HistoryEmbedding",
    "IdEmbedding",
    "MultiIdEmbedding",
    "NormalizedTimestamp",
    "OneStageFeatureLayer",
    "TextEmbedding",
    "TimestampBuckets",
    "state",
]

"""The API reference's conventions, checked on the docstrings it renders."""

from __future__ import annotations

import importlib.util
import inspect

import pytest

import ctxfeatures as cf

LAYERS = [
    cf.IdEmbedding,
    cf.MultiIdEmbedding,
    cf.NormalizedTimestamp,
    cf.TimestampBuckets,
    cf.CyclicalTime,
    cf.TextEmbedding,
    cf.HistoryEmbedding,
    cf.AttentionHistory,
    cf.CausalAttentionHistory,
    cf.DurationBuckets,
    cf.FeatureLayer,
    cf.OneStageFeatureLayer,
    cf.Tower,
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: c.__name__)
def test_every_layer_documents_args_call_arguments_returns_and_an_example(layer):
    doc = inspect.getdoc(layer)
    sections = ["Args:", "Call arguments:", "Returns:", "Example:"]
    positions = [doc.find(f"\n{section}\n") for section in sections]
    assert all(p > 0 for p in positions), (layer.__name__, positions)
    assert positions == sorted(positions), "Keras' order: Args, Call, Returns"
    assert ">>> " in doc[positions[-1] :]


@pytest.mark.keras2
def test_the_docs_show_init_signatures_not_keras_new(root):
    # Keras layers define __new__(*args, **kwargs); docs/conf.py shows
    # __init__'s parameters instead, as Keras' own reference does.
    spec = importlib.util.spec_from_file_location("conf", root / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    shown = conf._keras_signature(
        None,
        "class",
        "ctxfeatures.IdEmbedding",
        cf.IdEmbedding,
        {},
        "(*args, **kwargs)",
        None,
    )
    assert shown[0].startswith("(embedding_dim, vocabulary=None, *, id_dtype=")
    assert conf._keras_signature(None, "function", "f", len, {}, "(x)", None) is None

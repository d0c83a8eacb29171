from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from ctxfeatures import negatives
from ctxfeatures.negatives import (
    CatalogueNegatives,
    InBatchNegatives,
    MixedNegatives,
    get_negatives,
    softmax_loss,
)


def test_softmax_loss_hand_computed():
    # Positive 1; negatives 0 and 2, the 2 masked: log(e^1 + e^0) - 1.
    loss = softmax_loss(
        tf.constant([1.0]),
        tf.constant([[0.0, 2.0]]),
        tf.constant([[False, True]]),
        None,
        None,
    )
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    weighted = softmax_loss(
        tf.constant([1.0, 0.0]),
        tf.constant([[0.0], [0.0]]),
        tf.constant([[False], [False]]),
        tf.constant([2.0, 0.0]),
        0.5,
    )
    # Temperature 0.5 doubles the logits; the second example weighs nothing.
    assert float(weighted) == pytest.approx(2 * math.log1p(math.exp(-2.0)), rel=1e-6)


def full_softmax(model, batch):
    """Σ_i logsumexp(q_i · V) - q_i · v_pos(i), in numpy."""
    query, _ = model.embed_batch(batch)
    ids, vectors = model.candidate_embeddings()
    scores = query.numpy() @ vectors.numpy().T
    ids = ids.numpy().tolist()
    positive = [ids.index(x) for x in batch["item"].numpy().tolist()]
    peak = scores.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(scores - peak).sum(axis=1)) + peak[:, 0]
    return float((logsumexp - scores[np.arange(len(positive)), positive]).sum())


def twins(build_model, data, catalogue, **kwargs):
    """Two models with the same initial weights: default ones, then ``kwargs``."""
    tf.keras.utils.set_random_seed(7)
    first = build_model(data, catalogue)
    tf.keras.utils.set_random_seed(7)
    return first, build_model(data, catalogue, **kwargs)


def test_catalogue_negatives_are_the_full_softmax(synthetic, build_model):
    data, catalogue = synthetic(n=300, items=40)
    in_batch, model = twins(build_model, data, catalogue, negatives="catalogue")
    batch = next(iter(data.batch(64)))
    expected = full_softmax(model, batch)
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    # The in-batch loss of the same batch (same weights) is another number.
    np.testing.assert_array_equal(
        in_batch.embed_batch(batch)[0], model.embed_batch(batch)[0]
    )
    assert float(in_batch.compute_loss(batch)) != pytest.approx(expected, rel=1e-2)


def test_mixed_negatives_add_catalogue_draws_to_the_batch(synthetic, build_model):
    data, catalogue = synthetic(n=300, items=40)
    batch = next(iter(data.batch(32)))
    plain, mixed = twins(
        build_model, data, catalogue, negatives=MixedNegatives(num_sampled=64)
    )
    base = float(plain.compute_loss(batch))
    # More negatives can only raise each example's logsumexp.
    assert float(mixed.compute_loss(batch)) > base + 1.0
    # Draws that are all accidental hits add nothing: a one-item catalogue
    # holding the only positive.
    one = {"item": batch["item"][:1]}
    only = tf.data.Dataset.from_tensor_slices(
        {key: value[:8] for key, value in batch.items()}
    ).map(lambda x: {**x, "item": one["item"][0]})
    single = build_model(
        only, tf.data.Dataset.from_tensor_slices(one), negatives=MixedNegatives(8)
    )
    rows = next(iter(only.batch(8)))
    # Every in-batch column and every draw is the positive: loss 0.
    assert float(single.compute_loss(rows)) == pytest.approx(0.0, abs=1e-6)


def test_mixed_negatives_correct_each_kind_of_draw(synthetic, build_model):
    data, catalogue = synthetic(n=300, items=40)
    data = data.map(lambda x: {**x, "p": tf.constant(0.5)})
    batch = next(iter(data.batch(16)))
    kwargs = {"negatives": MixedNegatives(4), "candidate_sampling_probability": "p"}
    tf.keras.utils.set_random_seed(7)
    model = build_model(data, catalogue, **kwargs)
    tf.keras.utils.set_random_seed(7)
    plain = build_model(data, catalogue, negatives=MixedNegatives(4))
    tf.random.set_seed(1)
    corrected = float(model.compute_loss(batch))
    tf.random.set_seed(1)
    uncorrected = float(plain.compute_loss(batch))
    # Batch logits get -log(0.5); draws -log(4 / (40 * 16)): the draws weigh
    # more after the correction, so the loss rises.
    assert corrected > uncorrected


class FixedDraws(MixedNegatives):
    """Draws the given catalogue entries, so that a test knows them."""

    def __init__(self, entries: list[int]) -> None:
        super().__init__(len(entries))
        self.entries = entries

    def _draw(self, size):
        return tf.constant(self.entries, tf.int64)


def logsumexp(row: np.ndarray) -> float:
    peak = row.max()
    return float(peak + np.log(np.exp(row - peak).sum()))


@pytest.mark.parametrize("temperature", [None, 0.2])
def test_mixed_negatives_hand_computed(synthetic, build_model, temperature):
    # Each logit is similarity / temperature - log(expected draws), as in the
    # in-batch task: the correction is not divided by the temperature.
    data, catalogue = synthetic(n=300, items=40)
    frequency = lambda x: {  # noqa: E731
        **x,
        "p": tf.cast(tf.strings.to_hash_bucket_fast(x["item"], 5) + 1, tf.float32) / 20,
    }
    data = data.map(frequency)
    draws = [3, 5, 5, 7, 11, 30]
    model = build_model(
        data,
        catalogue,
        negatives=FixedDraws(draws),
        candidate_sampling_probability="p",
        temperature=temperature,
    )
    batch = next(iter(data.batch(16)))
    query, candidate = (x.numpy() for x in model.embed_batch(batch))
    _, vectors = model.candidate_embeddings()
    drawn_vectors = vectors.numpy()[draws]
    items = batch["item"].numpy()
    drawn_items = np.array([f"item {i} kind{i % 5}".encode() for i in draws])
    scale = 1.0 if temperature is None else temperature
    in_batch = query @ candidate.T / scale - np.log(batch["p"].numpy())[None, :]
    drawn = query @ drawn_vectors.T / scale - np.log(len(draws) / (40 * 16))
    expected = 0.0
    for i in range(len(items)):
        others = (items != items[i]) | (np.arange(len(items)) == i)
        row = np.concatenate([in_batch[i, others], drawn[i, drawn_items != items[i]]])
        expected += logsumexp(row) - in_batch[i, i]
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "negatives",
    ["catalogue", MixedNegatives(16)],
    ids=["catalogue", "mixed"],
)
def test_models_with_catalogue_negatives_learn(synthetic, build_model, negatives):
    data, catalogue = synthetic()
    model = build_model(data, catalogue, negatives=negatives)
    model.compile(tf.keras.optimizers.Adam(0.05))
    before = model.evaluate_top_k(data.batch(512), ks=[5])["top_5"]
    history = model.fit(model.prepare(data.batch(128)), epochs=4, verbose=0)
    after = model.evaluate_top_k(data.batch(512), ks=[5])["top_5"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after > before + 0.2


def test_catalogue_negatives_refuse_a_sampling_probability(synthetic, build_model):
    data, catalogue = synthetic(n=100)
    data = data.map(lambda x: {**x, "p": tf.constant(0.1)})
    with pytest.raises(ValueError, match="remove `candidate_sampling_probability`"):
        build_model(
            data, catalogue, negatives="catalogue", candidate_sampling_probability="p"
        )


NAME_ERRORS = [
    ("unknown-name", "hard", ValueError, "must be one of"),
    ("not-a-name", 3, TypeError, "must be a name"),
]


@pytest.mark.parametrize(
    "value, error, match", [pytest.param(*c[1:], id=c[0]) for c in NAME_ERRORS]
)
def test_get_negatives_errors(value, error, match):
    with pytest.raises(error, match=match):
        get_negatives(value)


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError)]
)
def test_mixed_negatives_validate_num_sampled(value, error):
    with pytest.raises(error, match="num_sampled"):
        MixedNegatives(value)


def test_names_give_the_classes():
    assert isinstance(get_negatives("in-batch"), InBatchNegatives)
    assert isinstance(get_negatives("catalogue"), CatalogueNegatives)
    mixed = MixedNegatives(3)
    assert get_negatives(mixed) is mixed
    assert repr(mixed) == "MixedNegatives(num_sampled=3)"
    assert negatives.__all__


@pytest.mark.slow
def test_negatives_under_mirrored_strategy(run_python):
    code = textwrap.dedent(
        """
        import json
        import ctxfeatures as cf
        import tensorflow as tf
        from ctxfeatures.negatives import MixedNegatives
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from conftest import build_retrieval as build_model
        from conftest import synthetic_events as synthetic

        def train(strategy, negatives, **kwargs):
            tf.keras.utils.set_random_seed(7)
            data, catalogue = synthetic(n=1024)
            model = build_model(
                data, catalogue, strategy=strategy, negatives=negatives, **kwargs)
            model.compile(tf.keras.optimizers.SGD(0.05))
            batches = data.batch(256)
            model.fit(model.prepare(batches), epochs=1, verbose=0)
            return sum(float(model.compute_loss(b)) for b in batches)

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        print(json.dumps({
            "single": train(None, "catalogue"),
            "mirrored": train(strategy, "catalogue"),
            "mixed": train(strategy, MixedNegatives(32)),
            # String ids gathered across replicas (as hashes).
            "hits": train(strategy, "in-batch", remove_accidental_hits=True),
            "hits_single": train(None, "in-batch", remove_accidental_hits=True),
        }))
        """
    )
    result = run_python(code, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Each replica scores its queries against the whole catalogue: the
    # summed loss after one epoch equals one device's (0.5%).
    assert out["mirrored"] == pytest.approx(out["single"], rel=5e-3), out
    assert math.isfinite(out["mixed"]) and out["mixed"] > 0
    assert out["hits"] == pytest.approx(out["hits_single"], rel=5e-3), out

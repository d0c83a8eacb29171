"""Accumulators: pure numpy, mergeable across shards; the states they persist."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures.layers.state import (
    Boundaries,
    EmptyAdaptError,
    Moments,
    MomentsAccumulator,
    QuantileAccumulator,
    UniformAccumulator,
    Vocabulary,
    VocabularyAccumulator,
)


def shards(values: list, cuts: list[int]) -> list[np.ndarray]:
    points = sorted({min(c, len(values)) for c in cuts})
    return [np.asarray(part) for part in np.split(np.asarray(values), points)]


def accumulate(make, parts):
    """One accumulator per shard, merged: what sharded adapt computes."""
    merged = make()
    for part in parts:
        shard = make()
        if part.size:
            shard.update(part)
        merged.merge(shard)
    return merged.finalize()


ids = st.lists(st.sampled_from(["a", "b", "c", "d", "é"]), min_size=1, max_size=60)
cuts = st.lists(st.integers(0, 60), max_size=4)


@settings(max_examples=40, deadline=None)
@given(ids, cuts, st.integers(1, 3), st.one_of(st.none(), st.integers(1, 4)))
def test_vocabulary_of_merged_shards_equals_one_pass(values, cut, min_freq, size):
    def make():
        return VocabularyAccumulator(min_freq, size)

    encoded = [v.encode("utf-8") for v in values]  # as TensorFlow hands them
    counts = {v: values.count(v) for v in set(values)}
    expected = sorted(
        (v for v in counts if counts[v] >= min_freq), key=lambda v: (-counts[v], v)
    )[:size]
    if not expected:
        with pytest.raises(ValueError, match="min_frequency"):
            accumulate(make, shards(encoded, cut))
        return
    assert accumulate(make, shards(encoded, cut)).tokens == tuple(expected)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 2**40), min_size=1, max_size=80),
    cuts,
)
def test_moments_of_merged_shards_equal_numpy(values, cut):
    state = accumulate(MomentsAccumulator, shards(values, cut))
    array = np.asarray(values, np.float64)
    assert state.count == array.size
    assert state.mean == pytest.approx(array.mean(), rel=1e-12)
    assert state.variance == pytest.approx(array.var(), rel=1e-9, abs=1e-3)
    assert (state.low, state.high) == (array.min(), array.max())


def test_quantiles_are_exact_below_capacity_and_merge():
    values = np.arange(1, 101, dtype=np.float64)
    whole = accumulate(lambda: QuantileAccumulator(4), [values])
    sharded = accumulate(lambda: QuantileAccumulator(4), np.split(values, [13, 50]))
    assert whole.values == sharded.values == (25.0, 50.0, 75.0)
    assert (whole.count, whole.low, whole.high) == (100, 1.0, 100.0)


@pytest.mark.parametrize("parts", [1, 7])
def test_quantile_rank_error_stays_within_epsilon(parts):
    rng = np.random.default_rng(0)
    values = rng.exponential(1e6, 200_000)
    state = accumulate(
        lambda: QuantileAccumulator(10, epsilon=0.01), np.array_split(values, parts)
    )
    ranks = np.searchsorted(np.sort(values), state.values) / values.size
    np.testing.assert_allclose(ranks, np.arange(1, 10) / 10, atol=0.01)


def test_uniform_boundaries_and_errors():
    state = accumulate(lambda: UniformAccumulator(3), [np.array([10.0, 30.0])])
    assert state == Boundaries(2, (10.0, 20.0, 30.0), 10.0, 30.0)
    with pytest.raises(ValueError, match="uniform boundaries are undefined"):
        accumulate(lambda: UniformAccumulator(3), [np.array([5.0, 5.0])])
    for make in (
        VocabularyAccumulator,
        MomentsAccumulator,
        lambda: QuantileAccumulator(2),
    ):
        with pytest.raises(EmptyAdaptError):
            make().finalize()


def test_non_utf8_ids_name_the_fix():
    accumulator = VocabularyAccumulator()
    accumulator.update(np.array([b"caf\xe9"], dtype=object))
    with pytest.raises(ValueError, match="not valid UTF-8.*latin-1"):
        accumulator.finalize()


def test_array_states_round_trip_through_their_weight():
    moments = Moments(3, 1.5, 0.25, 1.0, 2.0)
    assert Moments.from_array(moments.to_array()) == moments
    bounds = Boundaries(5, (1.0, 2.5), 0.0, 3.0)
    assert Boundaries.from_array(bounds.to_array()) == bounds


def test_vocabulary_asset_is_utf8_json(tmp_path):
    vocabulary = Vocabulary(("naïve", "line\nbreak", "東京"))
    vocabulary.write(str(tmp_path))
    raw = (tmp_path / "state.json").read_bytes()
    assert json.loads(raw.decode("utf-8")) == list(vocabulary.tokens)
    assert Vocabulary.read(str(tmp_path)) == vocabulary
    assert Vocabulary.read(str(tmp_path / "missing")) is None


def test_state_module_needs_no_tensorflow(run_python, root):
    code = (
        "import importlib.util, sys\n"
        "sys.modules['tensorflow'] = None\n"
        "spec = importlib.util.spec_from_file_location('state', "
        f"{str(root / 'ctxfeatures' / 'layers' / 'state.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['state'] = module\n"
        "spec.loader.exec_module(module)\n"
        "acc = module.VocabularyAccumulator()\n"
        "import numpy as np; acc.update(np.array(['x', 'y', 'x']))\n"
        "print(acc.finalize().tokens)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "('x', 'y')"

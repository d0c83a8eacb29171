"""Adapt state: typed accumulators and the states they finalize to.

Pure Python and numpy, no TensorFlow: every accumulator has ``update`` (one
batch of values as a numpy array), ``merge`` (another accumulator of the same
kind, e.g. from another shard of the data) and ``finalize`` (the learned
state). Accumulating shards separately and merging gives the state of one
pass over all of them.

The finalized states follow one persistence rule (see
:class:`~ctxfeatures.FeatureLayer`): a :class:`Vocabulary` is written as a
UTF-8 JSON asset, an :class:`ArrayState` as one non-trainable float64 weight.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

_ASSET_FILE = "state.json"
S = TypeVar("S", covariant=True)


class EmptyAdaptError(ValueError):
    """``finalize`` of an accumulator that saw no values."""


class Accumulator(Protocol[S]):
    """What a feature layer's adapt needs: update, merge, finalize."""

    state_type: ClassVar[type]

    def update(self, values: np.ndarray) -> None: ...

    def merge(self, other: Any) -> Any: ...

    def finalize(self) -> S: ...


# ----------------------------------------------------------------- states
@dataclass(frozen=True)
class Vocabulary:
    """Learned ids or tokens, most frequent first (saved as a JSON asset)."""

    tokens: tuple[Any, ...]

    def write(self, dir_path: str) -> None:
        path = os.path.join(dir_path, _ASSET_FILE)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(list(self.tokens), handle, ensure_ascii=False)

    @classmethod
    def read(cls, dir_path: str | None) -> Vocabulary | None:
        if dir_path is None:
            return None
        path = os.path.join(dir_path, _ASSET_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return cls(tuple(json.load(handle)))


class ArrayState:
    """A state of numbers, saved as one float64 weight.

    Subclasses are dataclasses whose first field is ``count``, the number of
    adapted values: a weight of zeros (``count == 0``) is "not adapted".
    """

    count: int

    def to_array(self) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def from_array(cls, values: np.ndarray) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Moments(ArrayState):
    """Count, mean, variance and range of adapted values (float64)."""

    count: int
    mean: float
    variance: float
    low: float
    high: float

    size: ClassVar[int] = 5

    def to_array(self) -> np.ndarray:
        return np.array(
            [self.count, self.mean, self.variance, self.low, self.high], np.float64
        )

    @classmethod
    def from_array(cls, values: np.ndarray) -> Moments:
        count, mean, variance, low, high = (float(v) for v in values)
        return cls(int(count), mean, variance, low, high)


@dataclass(frozen=True)
class Boundaries(ArrayState):
    """Bucket boundaries learned from ``count`` values in ``[low, high]``."""

    count: int
    values: tuple[float, ...]
    low: float
    high: float

    def to_array(self) -> np.ndarray:
        return np.array([self.count, *self.values, self.low, self.high], np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Boundaries:
        values = np.asarray(values, np.float64)
        return cls(
            int(values[0]),
            tuple(values[1:-2].tolist()),
            float(values[-2]),
            float(values[-1]),
        )


# ----------------------------------------------------------------- accumulators
@dataclass
class VocabularyAccumulator:
    """Counts ids; finalizes to the most frequent ones (ties by id).

    Args:
        min_frequency: Ids seen fewer times are dropped.
        max_size: Keep at most this many ids (``None``: all).
    """

    min_frequency: int = 1
    max_size: int | None = None
    counts: Counter = field(default_factory=Counter)
    state_type: ClassVar[type] = Vocabulary

    def update(self, values: np.ndarray) -> None:
        unique, counts = np.unique(np.asarray(values).reshape(-1), return_counts=True)
        self.counts.update(dict(zip(unique.tolist(), counts.tolist())))

    def merge(self, other: VocabularyAccumulator) -> VocabularyAccumulator:
        self.counts.update(other.counts)
        return self

    def finalize(self) -> Vocabulary:
        if not self.counts:
            raise EmptyAdaptError("no values")
        kept = [t for t, c in self.counts.items() if c >= self.min_frequency]
        if not kept:
            raise ValueError(
                f"no id occurs at least min_frequency={self.min_frequency} "
                "times. Lower `min_frequency`."
            )
        # Most frequent first; ties broken by id so the order is reproducible.
        kept.sort(key=lambda token: (-self.counts[token], token))
        if self.max_size is not None:
            kept = kept[: self.max_size]
        return Vocabulary(tuple(_decode(token) for token in kept))


def _decode(token: Any) -> Any:
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"the id {token[:40]!r} is not valid UTF-8. Decode the column "
                "first, e.g. `bytes.decode('latin-1')`, or pass integer ids."
            ) from None
    return token


@dataclass
class MomentsAccumulator:
    """Streams count, mean, variance and range in float64 (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    state_type: ClassVar[type] = Moments

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).reshape(-1)
        if values.size:
            mean = float(values.mean())
            m2 = float(((values - mean) ** 2).sum())
            batch = MomentsAccumulator(
                values.size, mean, m2, float(values.min()), float(values.max())
            )
            self.merge(batch)

    def merge(self, other: MomentsAccumulator) -> MomentsAccumulator:
        # Chan et al.'s parallel update: exact in float64 for any split.
        total = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta**2 * self.count * other.count / total
            self.count = total
            self.low = min(self.low, other.low)
            self.high = max(self.high, other.high)
        return self

    def finalize(self) -> Moments:
        if not self.count:
            raise EmptyAdaptError("no values")
        variance = self.m2 / self.count
        return Moments(self.count, self.mean, variance, self.low, self.high)


@dataclass
class UniformAccumulator:
    """``num_boundaries`` evenly spaced boundaries over the adapted range."""

    num_boundaries: int
    moments: MomentsAccumulator = field(default_factory=MomentsAccumulator)
    state_type: ClassVar[type] = Boundaries

    def update(self, values: np.ndarray) -> None:
        self.moments.update(values)

    def merge(self, other: UniformAccumulator) -> UniformAccumulator:
        self.moments.merge(other.moments)
        return self

    def finalize(self) -> Boundaries:
        seen = self.moments.finalize()
        if seen.low == seen.high:
            raise ValueError(
                f"every adapted value equals {seen.low:.0f}, so uniform "
                "boundaries are undefined. Adapt on a wider range or use "
                "explicit boundaries."
            )
        values = np.linspace(seen.low, seen.high, self.num_boundaries)
        return Boundaries(seen.count, tuple(values.tolist()), seen.low, seen.high)


@dataclass
class QuantileAccumulator:
    """Equal-mass bucket boundaries from a mergeable quantile sketch.

    A Munro-Paterson sketch: level ``h`` holds values of weight ``2**h``;
    a level over ``capacity`` values is sorted and every other value moves
    up, so memory stays ``O(capacity * log(n))`` and the rank error about
    ``log2(n / capacity) / capacity``. Below ``capacity`` values per level
    the result is exact.

    Args:
        num_buckets: Buckets of equal mass (``num_buckets - 1`` boundaries).
        epsilon: Target rank error; sets the capacity of a level.
    """

    num_buckets: int
    epsilon: float = 0.01
    levels: list[np.ndarray] = field(default_factory=list)
    moments: MomentsAccumulator = field(default_factory=MomentsAccumulator)
    state_type: ClassVar[type] = Boundaries

    @property
    def capacity(self) -> int:
        return max(64, math.ceil(8.0 / self.epsilon))

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).reshape(-1)
        self.moments.update(values)
        self._add(0, values)

    def _add(self, level: int, values: np.ndarray) -> None:
        while len(self.levels) <= level:
            self.levels.append(np.empty(0, np.float64))
        merged = np.concatenate([self.levels[level], values])
        if merged.size <= self.capacity:
            self.levels[level] = merged
            return
        merged.sort(kind="stable")
        # Keep the odd part for the next level (weight doubles); an odd
        # leftover stays here so no weight is lost.
        even = merged.size - merged.size % 2
        self.levels[level] = merged[even:]
        self._add(level + 1, merged[1:even:2])

    def merge(self, other: QuantileAccumulator) -> QuantileAccumulator:
        self.moments.merge(other.moments)
        for level, values in enumerate(other.levels):
            self._add(level, values)
        return self

    def finalize(self) -> Boundaries:
        seen = self.moments.finalize()
        values = np.concatenate(self.levels)
        weights = np.concatenate(
            [np.full(v.size, 2.0**h) for h, v in enumerate(self.levels)]
        )
        order = np.argsort(values, kind="stable")
        values, cumulative = values[order], np.cumsum(weights[order])
        targets = np.arange(1, self.num_buckets) / self.num_buckets * cumulative[-1]
        # The first value whose cumulative weight reaches each target mass.
        index = np.searchsorted(cumulative, targets, side="left")
        bounds = values[np.minimum(index, values.size - 1)]
        return Boundaries(seen.count, tuple(bounds.tolist()), seen.low, seen.high)

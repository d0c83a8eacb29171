"""Adapting towers: every feature layer's statistics in one pass over the data.

:func:`~ctxfeatures.adapt_towers` (and :meth:`ctxfeatures.Tower.adapt`, which calls it)
reads each batch once and feeds it to every adaptable layer of the towers;
:mod:`ctxfeatures.shards` reuses the same pieces over shard files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from ctxfeatures._data import as_dataset
from ctxfeatures.layers._inputs import ADAPT_BATCH, batched

if TYPE_CHECKING:
    from ctxfeatures.tower import Tower

__all__ = ["adapt_towers"]


def adapt_towers(
    data: tf.data.Dataset | Mapping[str, Any], *towers: Tower, steps: int | None = None
) -> None:
    """Adapts the feature layers of several towers in one pass over ``data``.

    Args:
        data: A ``tf.data.Dataset`` of feature dicts, batched or not, or a
            mapping of equal-length columns (lists, arrays, a DataFrame).
        *towers: The towers to adapt; layers shared between them adapt once.
        steps: Read at most this many batches.

    Raises:
        TypeError: ``data`` is neither a dataset of dicts nor a mapping.
        ValueError: a feature a tower adapts is missing from the data, or the
            data is empty.
    """
    data = as_dataset(data, "adapt_towers()")
    spec = data.element_spec
    data = batched(data, ADAPT_BATCH)
    if steps is not None:
        data = data.take(steps)
    for tower in towers:
        for feature, _ in tower._adaptable():
            if feature not in spec:
                raise ValueError(
                    f"Tower '{tower.name}': feature '{feature}' is missing from "
                    f"the adapt data. Available keys: {sorted(spec)}."
                )
    work = _adaptable_layers(towers)
    if not work:
        return
    for layer, _ in work.values():
        layer.reset_state()
    batches = 0
    for batch in data:
        batches += 1
        _update_adapt_state(work, batch)
    if not batches:
        names = ", ".join(f"'{tower.name}'" for tower in towers)
        raise ValueError(f"Tower {names}: adapt() received an empty dataset.")
    for layer, _ in work.values():
        layer.finalize_state()


AdaptWork = dict[str, tuple[tf.keras.layers.Layer, list[str]]]


def _adaptable_layers(towers: Sequence[Tower]) -> AdaptWork:
    """Each adaptable layer once, with every feature it serves.

    A shared layer learns from all its features. Keys say where a layer first
    appears (tower name, position), so they are the same in another process
    that rebuilt the towers from their configs (see
    :func:`ctxfeatures.shards.adapt_from_shards`).
    """
    work: AdaptWork = {}
    seen: dict[int, str] = {}
    for tower in towers:
        for position, (feature, layer) in enumerate(tower._adaptable()):
            key = seen.setdefault(id(layer), f"{tower.name}/{position}")
            features = work.setdefault(key, (layer, []))[1]
            if feature not in features:
                features.append(feature)
    return work


def _update_adapt_state(work: AdaptWork, batch: Mapping[str, Any], where: str = ""):
    """Feeds one batch of feature columns to every layer of ``work``."""
    for layer, features in work.values():
        for feature in features:
            try:
                layer.update_state(batch[feature])
            except (ValueError, TypeError) as error:
                raise type(error)(f"feature '{feature}'{where}: {error}") from None

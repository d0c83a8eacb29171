"""The history window over a log sorted by user and time, chunk by chunk.

An engine sorts the log (out of core) and streams it in chunks. Each chunk's
histories need only a few rows of the chunk before it: the current user's
last second-group and the ``max_length`` rows before that group. Those rows
are carried over, so memory is one chunk whatever the size of the log or of
its most active user, and the result is that of
:func:`ctxfeatures.history.add_history` on the whole log, since it is
computed by the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ctxfeatures.history import PAD_INT, PAD_STRING, _offsets, _padded


class SortedWindow:
    """Histories of consecutive chunks of a log sorted by (user, time, ties).

    Args:
        max_length: Most items kept per history.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(
        self, users: np.ndarray, items: np.ndarray, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(history, seconds_since_last)`` of the next chunk's events."""
        carried = 0
        if self._carry is not None:
            carried = len(self._carry[0])
            users, items, times = (
                np.concatenate([old, new])
                for old, new in zip(self._carry, (users, items, times))
            )
        order, offsets = _offsets(users, times, self.max_length)
        pad: Any = PAD_STRING if items.dtype.kind == "U" else PAD_INT
        history = _padded(items[order], offsets, self.max_length, pad)
        since = offsets.since.astype(np.int64)
        self._carry = self._tail(users, items, times)
        return history[carried:], since[carried:]

    def _tail(self, users: np.ndarray, items: np.ndarray, times: np.ndarray):
        """The rows the next chunk may need: see the module's docstring."""
        last = len(users) - 1
        user_start = _run_start(users, last)
        group_start = max(user_start, _run_start(times, last))
        start = max(user_start, group_start - self.max_length)
        return users[start:].copy(), items[start:].copy(), times[start:].copy()


def _run_start(values: np.ndarray, last: int) -> int:
    """First index of the run of values equal to ``values[last]`` ending there."""
    different = np.flatnonzero(values[:last] != values[last])
    return int(different[-1]) + 1 if different.size else 0

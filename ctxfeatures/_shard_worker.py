"""One worker of :func:`ctxfeatures.shards.adapt_from_shards`.

Reads a pickled ``(configs, files, batch_size)`` job on stdin and writes the
pickled result on stdout: ``("ok", statistics)`` or ``("error", type,
message)`` for a ValueError or TypeError, which the caller raises again.
"""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    configs, files, batch_size = pickle.load(sys.stdin.buffer)
    import ctxfeatures  # noqa: F401  (registers the classes for deserialize)
    from ctxfeatures.shard_adapt import _accumulate_files

    try:
        result = ("ok", _accumulate_files(configs, files, batch_size))
    except (ValueError, TypeError) as error:
        result = ("error", type(error), str(error))
    sys.stdout.buffer.write(pickle.dumps(result))


if __name__ == "__main__":
    main()

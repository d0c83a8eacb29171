"""``python -m benchmarks COMMAND [options]``.

Commands: run, history, profile, distributed, catalogue, pipeline, keras, peers,
sequence.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "benchmarks.run",
    "history": "benchmarks.history",
    "profile": "benchmarks.profile",
    "distributed": "benchmarks.distributed",
    "catalogue": "benchmarks.catalogue",
    "pipeline": "benchmarks.pipeline",
    "keras": "benchmarks.keras_versions",
    "peers": "benchmarks.sequence_peers",
    "sequence": "benchmarks.sequence_training",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    importlib.import_module(COMMANDS[command]).main(argv)


if __name__ == "__main__":
    main()

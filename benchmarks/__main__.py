"""``python -m benchmarks [run|history|profile] [options]`` (default: run)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "benchmarks.run",
    "history": "benchmarks.history",
    "profile": "benchmarks.profile",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    importlib.import_module(COMMANDS[command]).main(argv)


if __name__ == "__main__":
    main()

"""The shared harness: child processes, timing, results files.

A measurement that needs its own peak RSS or a clean process runs in a child,
``python -m benchmarks.harness MODULE FUNCTION ARGS_JSON``, which calls
``benchmarks.MODULE.FUNCTION(*ARGS)``; the function prints one JSON object
as its last line of output, which the parent reads back.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_child(module: str, function: str, *args: Any) -> dict:
    """Runs ``benchmarks.<module>.<function>(*args)`` in a fresh interpreter."""
    command = ["-m", "benchmarks.harness", module, function, json.dumps(args)]
    return run_python(*command)


def run_python(*args: str) -> dict:
    """Runs ``python *args`` at the repository root; its last stdout line as JSON."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def status_mib(field: str, pid: int | str = "self") -> float:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in MiB.

    VmHWM, not getrusage, for peaks: Linux carries ru_maxrss over exec, so a
    child started by a large parent would report the parent's peak.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found")


def peak_rss_mib() -> float:
    """This process's peak resident memory, in MiB."""
    return status_mib("VmHWM")


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` of repeated runs (sd 0 for one run)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def write_results(output: str, name: str, results: dict, markdown: str) -> None:
    """Prints the table and writes ``name.json`` and ``name.md`` to ``output``."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    print(markdown)


def load_example(name: str) -> ModuleType:
    """An example script of ``examples/`` as a module (without sys.path edits)."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    module, function, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    getattr(importlib.import_module(f"benchmarks.{module}"), function)(*args)

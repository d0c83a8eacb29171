"""Runs a benchmark function in a fresh interpreter, for its own peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_child(module: str, call: str) -> dict:
    """Runs ``module.call`` (a call expression) in a child; returns its JSON."""
    code = f"import sys; sys.path.insert(0, {HERE!r}); import {module}; {module}.{call}"
    return run_python("-c", code)


def run_python(*args: str) -> dict:
    """Runs ``python *args``; returns the JSON object of its last stdout line."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])

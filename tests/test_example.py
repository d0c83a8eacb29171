"""The MovieLens study end to end, and the tutorial reproduction."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "examples" / "movielens_context.py"


def run_study(ml100k, tmp_path, *args):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data-dir",
            str(ml100k),
            "--output",
            str(tmp_path),
            "--verbose",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((tmp_path / "results.json").read_text()), result.stdout


def test_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--quick" in result.stdout


def test_quick_mode_end_to_end(ml100k, tmp_path):
    results, stdout = run_study(ml100k, tmp_path, "--quick")
    rows = {(r["split"], r["model"]): r for r in results["rows"]}
    assert set(rows) == {
        (s, m)
        for s in ("random", "chronological")
        for m in ("baseline", "timestamp", "cyclical", "best")
    }
    for row in rows.values():
        assert 0.0 < row["test_top100"]["mean"] < 1.0
        assert 0.0 <= row["cold_top100"]["mean"] <= 1.0
    assert (tmp_path / "results.md").read_text().count("| random |") == 4
    assert "test top-100" in stdout


@pytest.mark.slow
def test_reproduces_the_tutorial_table(ml100k, tmp_path):
    results, _ = run_study(
        ml100k,
        tmp_path,
        "--seeds",
        "1",
        "--splits",
        "random",
        "--models",
        "baseline",
        "timestamp",
    )
    rows = {r["model"]: r["test_top100"]["mean"] for r in results["rows"]}
    assert rows["baseline"] == pytest.approx(0.21, abs=0.03)
    assert rows["timestamp"] == pytest.approx(0.25, abs=0.03)

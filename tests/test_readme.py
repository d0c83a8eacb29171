"""The README's example runs as written, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys


def test_readme_example_runs(tmp_path, root):
    text = (root / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    lines = code.strip().splitlines()
    assert len(lines) <= 16 and max(map(len, lines)) <= 88
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # recommend() and the exported recommender return the two unseen items.
    first, second = result.stdout.strip().splitlines()[-2:]
    for printed in (first, second):
        assert "Jaws" in printed and "Alien" in printed, result.stdout
        assert "Heat" not in printed and "Up" not in printed, result.stdout
    assert (tmp_path / "recommender" / "saved_model.pb").exists()


def test_readme_has_exactly_two_setup_commands(root):
    text = (root / "README.md").read_text()
    setup = text.split("## Install")[1].split("## ")[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert len(commands) == 2
    assert "examples/movielens_context.py" in commands[0]
    assert "pytest" in commands[1]

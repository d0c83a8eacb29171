"""Benchmarks of ctxfeatures against the TFRS tutorial's own code.

Run from the repository root as a package::

    python -m benchmarks run --data-dir ../shared/data/ml-100k
    python -m benchmarks history --data-dir ../shared/data/ml-100k
    python -m benchmarks profile --data-dir ../shared/data/ml-100k
    python -m benchmarks distributed
    python -m benchmarks keras --data-dir ../shared/data/ml-100k
    python -m benchmarks peers --data-dir ../shared/data/ml-100k

Every command prints a Markdown table of ratios measured side by side in one
run and writes it, with its JSON, under ``--output`` (``benchmarks/out``).
"""

import os

# TFRS needs Keras 2: set before any module of the package imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

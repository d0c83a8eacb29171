"""Sphinx configuration. Build: sphinx-build -W -b html docs docs/_build/html."""

from __future__ import annotations

import inspect
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

# The API pages include TFRS' task (ctxfeatures.task), which needs Keras 2;
# every doctest also runs under Keras 3 (TF_USE_LEGACY_KERAS=0 sphinx-build).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from sphinx.errors import ExtensionError  # noqa: E402

import ctxfeatures  # noqa: E402
import ctxfeatures.recipe  # noqa: E402

project = "ctxfeatures"
author = "ctxfeatures developers"
release = ctxfeatures.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    # A copy button on every example that leaves out the >>> and ... prompts
    # and the outputs, so the quickstart pastes into Python as it is.
    "sphinx_copybutton",
]
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
html_theme = "furo"
html_title = "ctxfeatures"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
# Keras' convention: the signature shows names and defaults, and each
# argument is described once, in the docstring's Args.
autodoc_typehints = "none"
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Call arguments", "params_style")]
# Every cross-reference must resolve (CI builds with -n -W). Names of other
# projects cannot be linked without their inventories (no network at build
# time), so they are accepted as plain text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(tf|tensorflow|tfrs|keras|np|numpy|pd|pandas|pyarrow|duckdb)\..*"),
    (r"py:.*", r"(pyspark|optuna|scipy|os|collections|typing)\..*"),
]
doctest_global_setup = """
import os, tempfile
import numpy as np
import tensorflow as tf
import ctxfeatures
import ctxfeatures as cf
tf.keras.utils.set_random_seed(0)
tmp = tempfile.mkdtemp()
"""

PUBLIC_MODULES = {
    "ctxfeatures": [
        n
        for n in ctxfeatures.__all__
        if n != "__version__" and not inspect.ismodule(getattr(ctxfeatures, n))
    ],
    "ctxfeatures.history": ctxfeatures.history.__all__,
    "ctxfeatures.sequences": ctxfeatures.sequences.__all__,
    "ctxfeatures.sequence_model": ["causal_history_weights"],
    "ctxfeatures.evaluation": ctxfeatures.evaluation.__all__,
    "ctxfeatures.baselines": ctxfeatures.baselines.__all__,
    "ctxfeatures.training": ctxfeatures.training.__all__,
    "ctxfeatures.recommend": ctxfeatures.recommend.__all__,
    "ctxfeatures.serving": ctxfeatures.serving.__all__,
    "ctxfeatures.recipe": ctxfeatures.recipe.__all__,
    "ctxfeatures.negatives": ctxfeatures.negatives.__all__,
    "ctxfeatures.index": ctxfeatures.index.__all__,
    "ctxfeatures.shards": ctxfeatures.shards.__all__,
    "ctxfeatures.tfrecords": ctxfeatures.tfrecords.__all__,
    "ctxfeatures.engines.duckdb": ctxfeatures.engines.duckdb.__all__,
    "ctxfeatures.engines.spark": ctxfeatures.engines.spark.__all__,
    "ctxfeatures.splits": ["random_split", "chronological_split", "leave_last_out"],
    "ctxfeatures.datasets.movielens": [
        "DATASETS",
        "MovieLens",
        "load",
        "load_arrays",
        "download",
    ],
}


def _check_reference(app) -> None:
    """Fails the build when a public name is missing from the API reference."""
    text = open(os.path.join(app.srcdir, "api.rst"), encoding="utf-8").read()
    documented = set(re.findall(r"\.\. auto(?:class|function|data):: ([\w.]+)", text))
    missing = [
        f"{module}.{name}"
        for module, names in PUBLIC_MODULES.items()
        for name in names
        if f"{module}.{name}" not in documented
    ]
    if missing:
        raise ExtensionError(f"Public names missing from docs/api.rst: {missing}")


def _unlink_metric_names(app, doctree) -> None:
    """Metric names such as hit@10 read to docutils as e-mail addresses,
    which it would render as mailto: links; the docs hold no addresses."""
    from docutils import nodes

    for reference in list(doctree.findall(nodes.reference)):
        if reference.get("refuri", "").startswith("mailto:"):
            reference.replace_self(nodes.Text(reference.astext()))


def _keras_signature(app, what, name, obj, options, signature, return_annotation):
    """Keras layers and models define ``__new__(cls, *args, **kwargs)``, which
    autodoc would show as the class's signature: show ``__init__``'s."""
    if what != "class" or signature != "(*args, **kwargs)":
        return None
    parameters = list(inspect.signature(obj.__init__).parameters.values())[1:]
    shown = [
        parameter.replace(annotation=inspect.Parameter.empty)
        for parameter in parameters
    ]
    return str(inspect.Signature(shown)), return_annotation


def setup(app) -> None:
    app.connect("autodoc-process-signature", _keras_signature)
    app.connect("builder-inited", _check_reference)
    app.connect("doctree-read", _unlink_metric_names)

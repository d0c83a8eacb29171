"""The next-item recipe on your own CSV event log (a thin caller).

The recipe lives in the package, so that ``pip install`` provides it::

    python -m ctxfeatures.recipe events.csv --items items.csv \\
        --user userId --item movieId --time timestamp --text title --multi genres

This script takes the same arguments (``--help`` lists them) and is kept so
that commands written for earlier versions still run. See
``docs/recipe.rst`` and :mod:`ctxfeatures.recipe`.
"""

from ctxfeatures.recipe.__main__ import main

if __name__ == "__main__":
    main()

"""TensorFlow Recommenders, imported where the process uses Keras 2 only.

Under Keras 3 the import fails with ctxfeatures' own ImportError (what works
under Keras 3, and how to get Keras 2), not TFRS' own failure deep inside
its model code.
"""

from ctxfeatures._compat import require_keras2

require_keras2("ctxfeatures.task.InBatchRetrieval")

import tensorflow_recommenders as tfrs  # noqa: E402

__all__ = ["tfrs"]

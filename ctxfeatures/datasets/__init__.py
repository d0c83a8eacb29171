"""Dataset loaders. The library downloads data for users; it never ships any."""

from ctxfeatures.datasets import movielens

__all__ = ["movielens"]

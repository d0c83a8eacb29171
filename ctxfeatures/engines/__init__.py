"""History features computed by data engines, for logs beyond one process.

:func:`ctxfeatures.history.add_history` reads the whole log into numpy. The
engines here compute the same ``history`` and ``seconds_since_last`` columns,
row for row, where the log already lives:

* :mod:`ctxfeatures.engines.duckdb`: on one machine, out of core, from Parquet
  files to Parquet files, in bounded memory (DuckDB spills to disk);
* :mod:`ctxfeatures.engines.spark`: on a Spark cluster, from a DataFrame to a
  DataFrame.

Both order each user's events by time and then by the events' order in the
log, and give an event the at most ``max_length`` events before the *first*
event of its second, so events of one user at the same second never see each
other. DuckDB sorts (out of core) and streams the sorted rows through
``add_history``'s own window code; Spark expresses the rule as DataFrame
windows. Neither engine is a dependency of ctxfeatures: install ``duckdb`` or
``pyspark`` (``pip install "ctxfeatures[engines]"``) to use them.
"""

from __future__ import annotations

from ctxfeatures.engines import duckdb, spark

__all__ = ["duckdb", "spark"]

"""The scoring step: a registered model over lake rows -> Delta ``gold.predictions`` (or
``gold.<table>_predictions`` for a model trained on a table).

:func:`score_table` is the one place that chooses between images and tables, as
:func:`lakeloop.features.build_features` does. The layers, each usable on its own:

* :mod:`~lakeloop.scoring.batch` — :func:`~lakeloop.scoring.batch.score_batch` scores one list
  of inputs with a loaded model. No Spark: the UDF, the benchmark's bare loop and a GPU box
  without a JVM run the same code.
* :mod:`~lakeloop.scoring.udf` — the iterator pandas UDF around it, with a per-worker model
  cache: :func:`~lakeloop.scoring.udf.score` for any DataFrame, :func:`~lakeloop.scoring.udf.register_udf` for SQL.
* :mod:`~lakeloop.scoring.inputs` and :mod:`~lakeloop.scoring.core` — the steps every driver
  shares: open the input and the model, score rows, MERGE them into gold and quarantine, count,
  record the run's own accuracy and drift.
* The drivers, beside each other: :mod:`~lakeloop.scoring.job` (batch: incremental, idempotent,
  in bounded chunks), :mod:`~lakeloop.scoring.stream` (Structured Streaming over a Delta table or a
  Kafka topic, :mod:`~lakeloop.scoring.kafka`), :mod:`~lakeloop.scoring.tables` (table models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakeloop.config import Profile
    from lakeloop.report import RunReport


def score_table(spark: "SparkSession", profile: "Profile", report: "RunReport | None" = None) -> "RunReport":
    """Score what is pending in the profile's input: image rows into ``gold.predictions``
    (:func:`lakeloop.scoring.job.score_images`), or, with ``features.table`` set, a table's rows into
    ``gold.<table>_predictions`` (:func:`lakeloop.scoring.tables.score_table_rows`)."""
    if profile.features.table is not None:
        from lakeloop.scoring.tables import score_table_rows

        return score_table_rows(spark, profile, report)
    from lakeloop.scoring.job import score_images

    return score_images(spark, profile, report)


__all__ = ["score_table"]

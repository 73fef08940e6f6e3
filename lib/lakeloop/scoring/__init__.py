"""The scoring step: a registered model over lake rows -> Delta ``gold.predictions``.

Three layers, each usable on its own:

* :mod:`~lakeloop.scoring.batch` — :func:`~lakeloop.scoring.batch.score_batch` scores one list
  of inputs with a loaded model. No Spark: the UDF, the benchmark's bare loop and a GPU box
  without a JVM run the same code.
* :mod:`~lakeloop.scoring.udf` — the iterator pandas UDF around it, with a per-worker model
  cache: :func:`~lakeloop.scoring.udf.score` for any DataFrame, :func:`~lakeloop.scoring.udf.register_udf` for SQL.
* :mod:`~lakeloop.scoring.job` — :func:`~lakeloop.scoring.job.score_table`, the job: incremental,
  idempotent MERGEs into gold and quarantine, with a run report.
"""

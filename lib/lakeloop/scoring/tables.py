"""Scoring table rows: the rows of a table that have no prediction yet -> Delta ``gold.<table>_predictions``.

The table counterpart of :mod:`lakeloop.scoring.job` (the image batch driver), used when the profile sets
``features.table``. The input is ``silver.<table>_features`` (``score.input: features``, the
default) or any lake table or Delta URI with the model's key and input columns (the bronze
table itself, new rows from another team). A pandas UDF (iterator form, the model loaded once
per Python worker: :func:`lakeloop.scoring.udf.cached_model`) encodes each Arrow batch with
the encoding stored in the model's metadata and runs :func:`lakeloop.scoring.batch.score_rows`.

``gold.<table>_predictions`` is keyed by (the table's key, ``model_name``, ``model_version``)
and holds the task's columns (``label``, ``label_index``, ``score``, ``scores``; ``labels``,
``scores``; or ``value``), the input's truth when it has the target (``true_label``,
``true_labels`` or ``true_value``), ``split``, ``scored_at`` and ``run_id``. Incremental and
idempotent as image scoring is: the rows to score are the pinned input minus the keys this
version already predicted, written with one MERGE that inserts only new keys; a rerun after
success commits nothing, one after a crash scores what is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd  # module level: pandas UDF type hints resolve in this module's globals

from lakeloop.config import Profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.registry import ModelVersion, Registry
from lakeloop.report import RunReport
from lakeloop.scoring.batch import (TASK_RESULT_FIELDS, TASK_RESULT_SCHEMAS, TRUTH_COLUMNS, TRUTH_TYPES,
                                    score_rows)
from lakeloop.scoring.udf import arrow_batch_settings, bounded_chunks, one_row_per_key, resolve_model, scoped_conf
from lakeloop.splits import model_splits
from lakeloop.tabular import TARGET_COLUMNS, encoded_columns, table_features_uri

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


def predict_rows(batches: Iterator[pd.DataFrame], registry: Registry, version: ModelVersion,
                 torch_threads: int) -> Iterator[pd.DataFrame]:
    """The body of the table-scoring UDF: the model from the per-worker cache, one batch at a time."""
    import torch

    from lakeloop.scoring.udf import cached_model, task_device

    torch.set_num_threads(torch_threads)
    device = task_device()
    entry = cached_model(registry, version, device)
    for frame in batches:
        entry.batches += 1
        yield score_rows(entry.model, entry.metadata, frame, device)


def make_table_udf(registry: Registry, version: ModelVersion, task: str, torch_threads: int = 1):
    """The pandas UDF over a struct of the model's input columns; returns the task's struct."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(TASK_RESULT_SCHEMAS[task])
    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Imported in the worker, so the model cache is the worker's own module dict (see scoring.udf).
        from lakeloop.scoring.tables import predict_rows

        yield from predict_rows(batches, registry, version, torch_threads)

    return predict


def _input_uri(profile: Profile) -> str:
    ref = profile.score.input
    return table_features_uri(profile) if ref == "features" else LakeLayout(profile.lake_root).resolve_table(ref)


def _open(spark: "SparkSession", profile: Profile, registry: Registry,
          report: RunReport) -> tuple[str, "DataFrame", ModelVersion, dict[str, Any]]:
    """The input pinned to its current version and checked against the model, and the pinned model."""
    uri = _input_uri(profile)
    if not delta.is_delta_table(spark, uri):
        raise SourceError(f"score.input {profile.score.input!r} -> {uri} is not a Delta table; run build_features "
                          f"first (or check score.input)")
    with report.timed("resolve_model"):
        version, metadata = resolve_model(registry, profile.score.model)
    if metadata.get("input_kind") != "table":
        raise ConfigError(f"model {version.name}:{version.version} was trained on images, not on a table; score "
                          f"it with a profile without features.table, or pick a table model with score.model")
    input_version = delta.table_version(spark, uri)
    source = delta.read_table(spark, uri, input_version)
    needed = [metadata["table"]["key"], *encoded_columns(metadata["table"]["encoding"])]
    missing = [c for c in needed if c not in source.columns]
    if missing:
        raise ConfigError(f"score.input {uri} lacks column(s) {missing} that model {version.name}:{version.version} "
                          f"reads (it has {', '.join(source.columns)}); score a table with the model's key and "
                          f"input columns")
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    report.details["input"] = {"uri": uri, "delta_version": input_version}
    return uri, source, version, metadata


def predictions_uri(profile: Profile) -> str:
    """``gold.<table>_predictions`` of ``features.table``."""
    return LakeLayout(profile.lake_root).table_predictions(LakeLayout.source_name(profile.features.table.source))


def _with_split(spark: "SparkSession", profile: Profile, rows: "DataFrame", metadata: dict[str, Any], key: str,
                report: RunReport) -> "DataFrame":
    """``rows`` with the split each key had in the silver.<table>_features version the model trained on
    (:mod:`lakeloop.splits`; the row's own split for a key that is not there)."""
    from pyspark.sql import functions as F

    features = table_features_uri(profile)
    if not delta.is_delta_table(spark, features):
        return rows
    splits, warning = model_splits(spark, features, metadata, key)
    if warning:
        report.warnings.append(warning)
    own = F.col("split") if "split" in rows.columns else F.lit(None).cast("string")
    return rows.withColumn("_own_split", own).drop("split").join(splits, key, "left") \
        .withColumn("split", F.coalesce("split", "_own_split")).drop("_own_split")


def score_table_rows(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Score the input table's rows that have no prediction yet for the model version, and those
    whose input values changed since their prediction (each prediction keeps ``input_digest``, a
    SHA-256 of the values the model read; ``rescored`` counts the rows scored again), at most
    ``score.max_rows_per_run`` of them, MERGEd every ``score.commit_every_rows``, as for images.
    A prediction written before digests were kept counts as current.

    Raises
    ------
    SourceError
        the input is not a Delta table yet, or the model's metadata is unusable.
    ConfigError
        an image model, or an input without the model's key or input columns.
    ModelNotFound
        the model reference names no committed version.
    """
    from pyspark.sql import functions as F

    cfg = profile.score
    report = report or RunReport.start("score")
    registry = Registry.for_profile(profile)
    uri, source, version, metadata = _open(spark, profile, registry, report)
    gold = predictions_uri(profile)
    report.outputs["predictions"] = gold
    key, task = metadata["table"]["key"], metadata["task"]
    this_version = (F.col("model_name") == version.name) & (F.col("model_version") == version.version)
    with report.timed("plan"):
        keyed = one_row_per_key(source, key, uri)
        report.warnings.extend(keyed.warnings)
        rows = keyed.rows.withColumn("input_digest", input_digest(metadata))
        # Pinned: the plan is recomputed after this run's MERGE and must not see it.
        pending = _not_scored_as_they_are(spark, rows, gold, key, this_version)
        pending = _with_split(spark, profile, pending, metadata, key, report)
        chunks, n_pending = bounded_chunks(pending, key, cfg)
    n_scored = 0
    for chunk in chunks:
        n_scored += _score_and_write(spark, _predicted(chunk, registry, version, metadata, cfg, report), gold, key,
                                     cfg, report)
    report.counts.setdefault("rescored", 0)
    if profile.score.input == "features":
        # The table's own features: a row deleted there (its key gone from a snapshot source) takes its
        # predictions, every version's, with it. Another input holds only the rows it brings.
        with report.timed("remove_predictions"):
            report.counts["removed"] = delta.delete_keys(spark, keyed.rows, gold, [key], absent=True)
    n_keyed = keyed.n_inputs - keyed.n_without_key - keyed.n_repeated
    report.counts.update(inputs=keyed.n_inputs, scored=n_scored,
                         already_scored=n_keyed - (n_pending if n_pending is not None else n_scored))
    if n_pending is not None:
        report.counts["remaining"] = n_pending - n_scored
        if n_pending > n_scored:
            report.warnings.append(f"{n_pending - n_scored} row(s) left for the next run (score.max_rows_per_run = "
                                   f"{cfg.max_rows_per_run}); run score again to go on")
    if keyed.n_without_key or keyed.n_repeated:
        report.counts.update(skipped_null_key=keyed.n_without_key, skipped_duplicate_key=keyed.n_repeated)
    this_run = delta.read_table(spark, gold, delta.table_version(spark, gold)).where(
        this_version & (F.col("run_id") == report.run_id))
    quality = task_quality(this_run, task, "this_run")
    report.counts["labelled"] = quality.pop("labelled")
    report.details.update(quality)
    report.metrics.update({k: v for k, v in quality.items() if v is not None})
    report.throughput["rows_per_s"] = round(n_scored / report.durations_s["score"], 1) \
        if n_scored and report.durations_s.get("score") else 0.0
    return report


def input_digest(metadata: dict[str, Any]) -> "Column":
    """SHA-256 of the values a table model reads from a row (its encoding's input columns, as JSON):
    a prediction whose row's digest changed is out of date."""
    from pyspark.sql import functions as F

    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in encoded_columns(metadata["table"]["encoding"])])), 256)


def _not_scored_as_they_are(spark: "SparkSession", rows: "DataFrame", gold: str, key: str,
                            this_version: "Column") -> "DataFrame":
    """``rows`` whose key has no prediction of the version in gold (pinned to its current version),
    or one made from other input values (its ``input_digest`` differs; a prediction without a
    digest, written before digests were kept, counts as current)."""
    from pyspark.sql import functions as F

    if not delta.is_delta_table(spark, gold):
        return rows
    done = delta.read_table(spark, gold, delta.table_version(spark, gold)).where(this_version)
    scored_digest = F.col("input_digest") if "input_digest" in done.columns else F.lit(None).cast("string")
    done = done.select(key, F.lit(True).alias("_scored"), scored_digest.alias("_scored_digest"))
    joined = rows.join(done, key, "left")
    changed = F.col("_scored_digest").isNotNull() & (F.col("_scored_digest") != F.col("input_digest"))
    return joined.where(F.col("_scored").isNull() | changed).drop("_scored", "_scored_digest")


def _predicted(pending: "DataFrame", registry: Registry, version: ModelVersion, metadata: dict[str, Any],
               cfg: Any, report: RunReport) -> "DataFrame":
    """The pending rows as prediction rows: key, model, the task's fields, the truth, split, time, run."""
    from pyspark.sql import functions as F

    key, task = metadata["table"]["key"], metadata["task"]
    truth = TARGET_COLUMNS[task] if TARGET_COLUMNS[task] in pending.columns else None
    udf = make_table_udf(registry, version, task, cfg.torch_threads_per_task)
    inputs = F.struct(*[F.col(c) for c in encoded_columns(metadata["table"]["encoding"])])
    scored = pending.select(
        key, F.lit(version.name).alias("model_name"), F.lit(version.version).cast("int").alias("model_version"),
        udf(inputs).alias("p"),
        (F.col(truth) if truth else F.lit(None)).cast(TRUTH_TYPES[task]).alias(TRUTH_COLUMNS[task]),
        (F.col("split").cast("string") if "split" in pending.columns else F.lit(None).cast("string")).alias("split"),
        "input_digest", F.current_timestamp().alias("scored_at"), F.lit(report.run_id).alias("run_id"))
    return scored.select(key, "model_name", "model_version",
                         *[F.col(f"p.{f}").alias(f) for f in TASK_RESULT_FIELDS[task]],
                         TRUTH_COLUMNS[task], "split", "input_digest", "scored_at", "run_id")


def _score_and_write(spark: "SparkSession", scored: "DataFrame", gold: str, key: str, cfg: Any,
                     report: RunReport) -> int:
    """Score one chunk (held, :func:`lakeloop.io.delta.held`: counted, then MERGEd): insert its new
    keys, update the predictions whose input digest changed (counted as ``rescored``; a replayed
    chunk changes nothing); the rows scored."""
    with scoped_conf(spark, arrow_batch_settings(cfg.batch_size, cfg.max_batch_bytes)):
        with report.timed("score"):
            scored = delta.held(scored)
            n_scored = scored.count()
    try:
        with report.timed("write_predictions"):
            if n_scored:
                merged = delta.merge_upsert(spark, scored, gold, [key, "model_name", "model_version"],
                                            compare_columns=["input_digest"], add_columns=True)
                report.details["predictions_merge"] = merged
                report.counts["rescored"] = report.counts.get("rescored", 0) + merged.get("num_updated_rows", 0)
            else:
                delta.ensure_table(spark, gold, scored.schema)
    finally:
        delta.release(scored)
    return n_scored


def task_quality(scored: "DataFrame", task: str, suffix: str) -> dict[str, Any]:
    """The figures of prediction rows whose truth the input had: ``labelled``, and ``accuracy_<suffix>``;
    ``exact_match_<suffix>`` (the label sets); or ``mae_<suffix>`` and ``rmse_<suffix>``."""
    from pyspark.sql import functions as F

    truth = F.col(TRUTH_COLUMNS[task])
    labelled = scored.where(truth.isNotNull())
    if task == "classification":
        row = labelled.agg(F.count("*").alias("n"), F.count(F.when(F.col("label") == truth, 1)).alias("ok")).first()
        return {"labelled": row["n"], f"accuracy_{suffix}": round(row["ok"] / row["n"], 6) if row["n"] else None}
    if task == "multilabel":
        same = F.array_sort(F.col("labels")) == F.array_sort(truth)
        row = labelled.agg(F.count("*").alias("n"), F.count(F.when(same, 1)).alias("ok")).first()
        return {"labelled": row["n"], f"exact_match_{suffix}": round(row["ok"] / row["n"], 6) if row["n"] else None}
    error = F.col("value") - truth
    row = labelled.agg(F.count("*").alias("n"), F.avg(F.abs(error)).alias("mae"),
                       F.sqrt(F.avg(error * error)).alias("rmse")).first()
    return {"labelled": row["n"], f"mae_{suffix}": round(row["mae"], 6) if row["n"] else None,
            f"rmse_{suffix}": round(row["rmse"], 6) if row["n"] else None}

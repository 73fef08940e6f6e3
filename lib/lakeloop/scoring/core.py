"""The scoring steps every driver shares, after the input is open (:mod:`lakeloop.scoring.inputs`):
score rows with the UDF (:func:`score_rows`), MERGE them into ``gold.predictions`` and the refused
ones into ``quarantine.predictions`` (:func:`write_scored`), add up the stats of chunks or
micro-batches (:func:`add_stats`), and record the run's own figures over the labelled
rows it scored (:func:`record_quality`; the version's are the evaluate step's) and its
inputs' drift from the training set's (:func:`record_drift`).

The drivers around them: :mod:`lakeloop.scoring.job` (batch), :mod:`lakeloop.scoring.stream`
(Structured Streaming over a Delta table or a Kafka topic, :mod:`lakeloop.scoring.kafka`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from lakeloop.config import Profile, ScoreConfig, TaskFault
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.metrics import INTENSITY_BINS, histogram_fractions, population_stability_index
from lakeloop.preprocess import intensity_bin
from lakeloop.registry import ModelVersion, Registry
from lakeloop.report import RunReport
from lakeloop.scoring.batch import TASK_RESULT_FIELDS, TRUTH_COLUMNS, TRUTH_TYPES
from lakeloop.scoring.inputs import ScoringInput
from lakeloop.scoring.udf import UdfPlan, arrow_batch_settings, make_udf, scoped_conf, table_columns, udf_input
from lakeloop.tabular import TARGET_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType


PREDICTION_KEYS = ("image_id", "model_name", "model_version")


def predictions_schema() -> "StructType":
    from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, StringType, StructField, StructType,
                                   TimestampType)

    return StructType([
        StructField("image_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", IntegerType()),
        StructField("label", StringType()),
        StructField("label_index", IntegerType()),
        StructField("score", DoubleType()),
        StructField("scores", ArrayType(DoubleType())),
        StructField("true_label", StringType()),
        StructField("scored_at", TimestampType()),
        StructField("run_id", StringType()),
        StructField("split", StringType()),
    ])


def quarantine_schema() -> "StructType":
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

    return StructType([
        StructField("image_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", IntegerType()),
        StructField("error", StringType()),
        StructField("run_id", StringType()),
        StructField("quarantined_at", TimestampType()),
    ])


NO_STATS = {"good": 0, "bad": 0, "labelled": 0, "correct": 0, "abs_error": 0.0, "squared_error": 0.0, "rss": None,
            "intensity_bins": {}}
# The counts and sums a run adds up over its chunks or micro-batches.
_SUMMED = ("good", "bad", "labelled", "correct", "abs_error", "squared_error")


def add_stats(total: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    """Two chunks' stats as one: counts added, the peak RSS the larger, intensity histograms merged."""
    if not total:
        return dict(chunk)
    out = {k: (total.get(k) or 0) + (chunk.get(k) or 0) for k in _SUMMED}
    out["rss"] = max((r for r in (total["rss"], chunk["rss"]) if r is not None), default=None)
    bins = dict(total["intensity_bins"])
    for b, n in chunk["intensity_bins"].items():
        bins[b] = bins.get(b, 0) + n
    out["intensity_bins"] = bins
    return out


def score_rows(spark: "SparkSession", rows: "DataFrame", scoring_input: ScoringInput, registry: Registry,
                   cfg: ScoreConfig, report: RunReport, carry: tuple[str, ...] = (),
                   errors: "Callable[[Column], Column] | None" = None,
                   fault: TaskFault | None = None) -> tuple["DataFrame", int]:
    """The rows with the UDF's struct ``p``, held (:func:`lakeloop.io.delta.held`: counted once, written
    twice; free them with :func:`lakeloop.io.delta.release`), and their number.

    ``carry``: columns of ``rows`` kept beside ``p`` (a Kafka message's topic, partition, offset);
    ``errors``: turns the UDF's ``p.error`` into the error written (given the carried columns too)."""
    from pyspark.sql import functions as F

    task = scoring_input.task
    plan = UdfPlan(registry, scoring_input.version, scoring_input.kind, cfg.batch_size, cfg.torch_threads_per_task,
                   diagnostics=True, table_columns=table_columns(scoring_input.metadata), task=task, fault=fault,
                   references=scoring_input.references)
    udf = make_udf(plan)
    # The input's truth: its label, or the target column silver.features keeps for another task.
    truth_column = "label" if task == "classification" else TARGET_COLUMNS[task]
    truth = F.col(truth_column) if truth_column in rows.columns else F.lit(None)
    split = F.col("split").cast("string") if "split" in rows.columns else F.lit(None).cast("string")
    if scoring_input.splits is not None:
        rows = rows.join(scoring_input.splits.withColumnRenamed("split", "_model_split"), "image_id", "left")
        split = F.coalesce(F.col("_model_split").cast("string"), split)  # the input's, for a row not in silver
    scored = rows.select(
        "image_id",
        truth.cast(TRUTH_TYPES[task]).alias(TRUTH_COLUMNS[task]),
        split.alias("split"),
        udf(udf_input(scoring_input.column, plan)).alias("p"),
        F.current_timestamp().alias("scored_at"),
        *carry,
    )
    if errors is not None:
        scored = scored.withColumn("p", F.col("p").withField("error", errors(F.col("p.error"))))
    # Held so the UDF runs once for the counts and both MERGEs (delta.held: a MERGE would run it
    # again). The Arrow batch settings are read when the physical plan is made: set them around it.
    with scoped_conf(spark, arrow_batch_settings(cfg.batch_size, cfg.max_batch_bytes)):
        with report.timed("score"):
            scored = delta.held(scored)
            n_rows = scored.count()
    return scored, n_rows


def write_scored(spark: "SparkSession", scored: "DataFrame", version: ModelVersion, task: str, lake: LakeLayout,
                  report: RunReport, txn: delta.Txn | None = None,
                  carry: tuple[str, ...] = ()) -> tuple[Any, list[Any]]:
    """MERGE the scored rows into gold and the refused ones into quarantine; returns the run's
    stats (good, bad, labelled, correct: a classifier's right label or a multilabel model's exact label
    set; a regression's summed absolute and squared errors; peak worker RSS) and one row per Python worker.

    ``txn``: a streaming micro-batch's identity; each MERGE then carries it, and a replayed batch's
    MERGE commits nothing (:func:`lakeloop.io.delta.merge_insert_new`). ``carry``: columns of
    ``scored`` written too, to both tables (added to them if they lack them)."""
    from pyspark.sql import functions as F

    ok = F.col("p.error").isNull()
    truth = TRUTH_COLUMNS[task]
    labelled = ok & F.col(truth).isNotNull()
    if task == "classification":
        correct = labelled & (F.col("p.label") == F.col(truth))
    elif task == "multilabel":
        correct = labelled & (F.array_sort(F.col("p.labels")) == F.array_sort(F.col(truth)))
    else:
        correct = F.lit(False)
    error = F.when(labelled, F.col("p.value") - F.col(truth)) if task == "regression" else F.lit(None).cast("double")
    stats = scored.agg(
        F.count(F.when(ok, 1)).alias("good"),
        F.count(F.when(~ok, 1)).alias("bad"),
        F.count(F.when(labelled, 1)).alias("labelled"),
        F.count(F.when(correct, 1)).alias("correct"),
        F.sum(F.abs(error)).alias("abs_error"),
        F.sum(error * error).alias("squared_error"),
        F.max("p.worker_max_rss_bytes").alias("rss"),
    ).first().asDict()
    stats["intensity_bins"] = {r["bin"]: r["count"] for r in scored.where(ok).groupBy(
        intensity_bin(F.col("p.input_mean"), INTENSITY_BINS).alias("bin")).count().collect() if r["bin"] is not None}
    workers = scored.groupBy("p.worker_pid", "p.worker_device").agg(
        F.max("p.worker_model_loads").alias("loads"), F.max("p.worker_batches").alias("batches")).collect()
    model_cols = [F.lit(version.name).alias("model_name"), F.lit(version.version).cast("int").alias("model_version")]
    run_id = F.lit(report.run_id).alias("run_id")
    good = scored.where(ok).select(
        "image_id", *model_cols, *[f"p.{f}" for f in TASK_RESULT_FIELDS[task]], truth, "scored_at", run_id, "split",
        *carry)
    if task != "classification":
        # The classifier's columns too (null), so whoever reads label or true_label finds them.
        good = good.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in predictions_schema().fields
                                  if f.name not in good.columns])
    bad = scored.where(~ok).select(
        "image_id", *model_cols, F.col("p.error").alias("error"), run_id, F.col("scored_at").alias("quarantined_at"),
        *carry)
    with report.timed("write_predictions"):
        if stats["good"]:
            # add_columns: gold.predictions written before predictions carried their split gains the column.
            report.details["predictions_merge"] = delta.merge_insert_new(
                spark, good, lake.predictions, list(PREDICTION_KEYS), add_columns=True, txn=txn)
        else:
            # Nothing to add: no commit, but a first run still leaves the table for readers to find,
            # with this task's columns.
            delta.ensure_table(spark, lake.predictions, good.schema)
            delta.add_missing_columns(spark, lake.predictions, good.schema)
    if stats["bad"]:
        with report.timed("write_quarantine"):
            report.details["quarantine_merge"] = delta.merge_insert_new(
                spark, bad, lake.quarantine_predictions, list(PREDICTION_KEYS), add_columns=bool(carry), txn=txn)
        reasons = scored.where(~ok).groupBy(
            F.regexp_extract("p.error", r"^([^(;]+)", 1).alias("reason")).count().collect()
        # Added up over the run's chunks or micro-batches.
        histogram = report.details.setdefault("quarantine_reasons", {})
        for r in reasons:
            histogram[r["reason"].strip()] = histogram.get(r["reason"].strip(), 0) + r["count"]
    return stats, workers


INPUT_COLUMN = "input_table"  # gold.predictions: the input table a prediction was scored from


def input_name(uri: str, lake: LakeLayout) -> str:
    """How a prediction names its input table: its path inside the lake (``silver/features``), so a
    lake copied or moved elsewhere still knows its own rows; the URI of a table outside the lake."""
    prefix = lake.root.rstrip("/") + "/"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def follow_input(spark: "SparkSession", scoring_input: ScoringInput, lake: LakeLayout, report: RunReport) -> None:
    """Bring the predictions scored from this input (``input_table``, :func:`input_name`) to the input as it is now:
    those of images no longer in it are deleted, every model version's, from gold.predictions and
    quarantine.predictions (``removed``); and this model's rows whose truth (the input's label, or
    its target column for another task) changed since they were scored get the new one
    (``relabelled``; the image is the same bytes, so its prediction stands). Counts added to the
    report; commits nothing when nothing changed."""
    from pyspark.sql import functions as F

    uri, task, counts = input_name(scoring_input.uri, lake), scoring_input.task, {"removed": 0, "relabelled": 0}
    keyed = scoring_input.source.where(F.col("image_id").isNotNull())
    ours = F.col(f"t.{INPUT_COLUMN}") == F.lit(uri)
    for table in (lake.predictions, lake.quarantine_predictions):
        if INPUT_COLUMN in delta.table_columns(spark, table):
            deleted = delta.delete_keys(spark, keyed, table, ["image_id"], absent=True, where=ours)
            counts["removed"] += deleted if table == lake.predictions else 0
    truth_column = "label" if task == "classification" else TARGET_COLUMNS[task]
    if truth_column in keyed.columns and INPUT_COLUMN in delta.table_columns(spark, lake.predictions):
        truths = keyed.select("image_id", F.lit(uri).alias(INPUT_COLUMN),
                              F.lit(scoring_input.version.name).alias("model_name"),
                              F.col(truth_column).cast(TRUTH_TYPES[task]).alias(TRUTH_COLUMNS[task]))
        counts["relabelled"] = delta.update_columns(spark, truths, lake.predictions,
                                                    ["image_id", INPUT_COLUMN, "model_name"],
                                                    [TRUTH_COLUMNS[task]]).get("num_updated_rows", 0)
    report.counts.update(counts)


def record_quality(report: RunReport, stats: Any, scoring_input: ScoringInput, lake: LakeLayout) -> None:
    """This run's own figures over the labelled rows it scored, from the run's counts (nothing is
    read back): a classifier's ``accuracy_this_run``, a multilabel model's ``exact_match_this_run``
    (the label set exactly right), a regression's ``mae_this_run`` and ``rmse_this_run``; and
    ``labelled_this_run``. The version's figures, per split, are the evaluation's (``evaluate`` ->
    gold.model_evaluations): measured once, in one place."""
    labelled = int(stats["labelled"] or 0)
    if scoring_input.task == "regression":
        figures = {"mae_this_run": round(stats["abs_error"] / labelled, 6) if labelled else None,
                   "rmse_this_run": round(math.sqrt(stats["squared_error"] / labelled), 6) if labelled else None}
    else:
        name = "accuracy_this_run" if scoring_input.task == "classification" else "exact_match_this_run"
        figures = {name: round(stats["correct"] / labelled, 6) if labelled else None}
    report.details.update(figures, labelled_this_run=labelled, model_evaluations=lake.model_evaluations)
    report.metrics.update({k: v for k, v in figures.items() if v is not None})


def record_drift(report: RunReport, stats: dict[str, Any], metadata: dict[str, Any], profile: Profile) -> None:
    """This run's inputs against the training set's (population stability index of per-image mean
    intensity); a PSI above ``quality.max_input_psi`` is a quality violation."""
    reference = metadata.get("input_statistics")
    if not reference or not stats["intensity_bins"]:
        return
    this_run = histogram_fractions(stats["intensity_bins"], reference["bins"])
    psi = population_stability_index(reference["train_fractions"], this_run)
    report.details["drift"] = {"statistic": reference["statistic"], "psi": round(psi, 6),
                               "train_fractions": reference["train_fractions"], "this_run_fractions": this_run,
                               "rows": sum(stats["intensity_bins"].values())}
    report.metrics["input_psi"] = round(psi, 6)
    limit = profile.quality.max_input_psi
    if limit is not None and psi > limit:
        report.flag("max_input_psi", f"the {report.details['drift']['rows']} rows scored differ from the model's "
                    f"training inputs (PSI of mean intensity {psi:.3f}, above quality.max_input_psi = {limit})",
                    profile.quality.on_violation == "fail")

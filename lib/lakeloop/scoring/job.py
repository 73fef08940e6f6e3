"""The scoring job: the rows of a lake table that have no prediction yet -> Delta ``gold.predictions``.

:func:`score_table` scores them with the UDF of :mod:`lakeloop.scoring.udf`, MERGEs them into
``gold.predictions`` and refused rows into ``quarantine.predictions``, and reports the run's
counts, its own accuracy and input drift, throughput and worker memory (the version's accuracy
is the evaluate job's, in ``gold.model_evaluations``). In named steps: open the input, plan what is
pending, score it, write it, summarise.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from lakeloop.config import Profile, ScoreConfig, TaskFault
from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.metrics import INTENSITY_BINS, histogram_fractions, population_stability_index
from lakeloop.preprocess import CLASSES_PROPERTY, SPEC_PROPERTY, PreprocessSpec, intensity_bin
from lakeloop.registry import ModelVersion, Registry
from lakeloop.io.step_state import read_step_state, write_step_state
from lakeloop.report import RunReport
from lakeloop.scoring.batch import (INPUT_CONTENT, INPUT_PIXELS, TASK_RESULT_FIELDS, TRUTH_COLUMNS, TRUTH_TYPES, model_label,
                                    model_spec)
from lakeloop.scoring.udf import (UdfPlan, arrow_batch_settings, bounded_chunks, check_table_columns, image_column,
                                  make_udf, one_row_per_key, resolve_model, scoped_conf, table_columns, udf_input)
from lakeloop.splits import model_splits
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


def input_table_uri(profile: Profile, ref: str) -> str:
    """``features`` -> silver.features, ``images`` -> bronze.images, ``layer.name`` -> that lake
    table, else ``ref`` itself: a URI (the profile checked which of these ``score.input`` is)."""
    lake = LakeLayout(profile.lake_root)
    return {"features": lake.features, "images": lake.bronze_images}.get(ref) or lake.resolve_table(ref)


def _spec_warning(spark: "SparkSession", input_uri: str, metadata: Mapping[str, Any]) -> str | None:
    """A warning when a features table was preprocessed differently from what the model expects."""
    properties = delta.table_properties(spark, input_uri)
    if SPEC_PROPERTY not in properties:
        return None
    table_spec, wanted = PreprocessSpec.from_json(properties[SPEC_PROPERTY]), model_spec(metadata)
    geometry = ("height", "width", "channels", "resize", "storage")
    if all(getattr(table_spec, g) == getattr(wanted, g) for g in geometry):
        classes = properties.get(CLASSES_PROPERTY)
        classifier = metadata.get("task", "classification") == "classification"
        if classifier and classes and sorted(json.loads(classes)) != sorted(metadata["classes"]):
            return (f"{input_uri} lists classes {classes} but the model predicts {metadata['classes']}; "
                    f"accuracy compares label names")
        return None
    return (
        f"{input_uri} was preprocessed as {table_spec.height}x{table_spec.width}x{table_spec.channels} "
        f"({table_spec.resize}, stored as {table_spec.storage}) but model {model_label(metadata)} expects "
        f"{wanted.height}x{wanted.width}x{wanted.channels} ({wanted.resize}, stored as {wanted.storage}); rows of "
        f"the wrong size are quarantined and others may be prepared differently from training: score the raw "
        f"images with --input images"
    )


def score_table(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Score the input table's rows that have no prediction yet for the model version.

    Reads ``score.*``: ``input`` (``features``, ``images``, a lake table or a Delta URI with
    ``image_id`` and a binary image column), ``model`` (``name``, ``name:V`` or ``name@alias``),
    ``input_column``, ``batch_size``, ``max_batch_bytes``, ``torch_threads_per_task``.

    Writes
    ------
    ``gold.predictions``
        MERGE keyed by (image_id, model_name, model_version): ``label``, ``label_index``,
        ``score``, ``scores``, ``true_label`` (the input's ``label``) for a classifier; ``labels``,
        ``scores``, ``true_labels`` or ``value``, ``true_value`` (from the input's target column)
        for a multilabel or regression model, the other tasks' columns null; ``scored_at``, ``run_id``,
        ``split`` (the row's split in silver.features: from the input when it has one, else
        joined from silver.features; null for rows that are in no features table).
    ``quarantine.predictions``
        rows that could not be scored, with ``error``, same key.

    Incremental by anti-join, not by change data feed
    -------------------------------------------------
    The rows to score are the input (pinned to its current Delta version) minus the keys
    already in gold.predictions *and* in quarantine.predictions for this model version,
    both pinned to their current versions. The anti-join works whatever wrote the input
    (our jobs, another team's, a plain Delta table), needs no change data feed enabled on
    bronze or silver, and survives their VACUUM and rewrites (OPTIMIZE, MERGE updates)
    that a CDF cursor would misread as new rows. Because its key is the target's own key,
    recovery is trivially correct: after a crash (before, between or after the two MERGEs,
    each atomic) the rerun scores exactly what is still missing, and a rerun after success
    finds nothing and commits nothing. Quarantined rows are excluded too, so a broken image
    is reported once, not retried on every run. A new model version has no rows yet, so it
    scores everything alongside the older version without touching its rows.

    Memory
    ------
    Only the image column goes to Python. The Arrow batches sent to a worker are cut at
    ``score.batch_size`` rows or ``score.max_batch_bytes`` bytes, whichever comes first
    (``spark.sql.execution.arrow.maxRecordsPerBatch`` / ``maxBytesPerBatch``, set for this
    query only), so a worker holds about one batch of inputs, its pandas copy and the
    float32 tensor (``batch_size`` x C x H x W x 4 bytes) besides the model, whatever the
    image sizes. The report's ``python_worker_peak_rss_mb`` shows what that came to.

    Raises
    ------
    ConfigError
        an input without ``image_id`` or an image column (the ``score.*`` settings themselves
        were checked when the profile loaded).
    SourceError
        the input is not a Delta table yet, or the model's metadata is unusable.
    ModelNotFound
        the model reference names no committed version.
    """
    if profile.features.table is not None:
        from lakeloop.scoring.tables import score_table_rows

        return score_table_rows(spark, profile, report)
    cfg = profile.score
    report = report or RunReport.start("score")
    lake = LakeLayout(profile.lake_root)
    started = time.perf_counter()
    report.outputs.update(predictions=lake.predictions, quarantine=lake.quarantine_predictions)
    _warn_without_worker_reuse(spark, report)
    registry = Registry.for_profile(profile)
    scoring_input = _open_input(spark, profile, registry, report)
    with report.timed("plan"):
        pending, chunks, n_pending, unchanged = _plan(spark, scoring_input, cfg, lake, report)
    stats, workers, n_scored = _score_chunks(spark, chunks, scoring_input, registry, cfg, lake, report, started,
                                             profile.faults.fail_task)
    _count(report, pending, n_pending, n_scored, stats, workers, cfg)
    # A run that found the tables as the last run left them wrote nothing: that state is still theirs.
    gold_commit = (unchanged["predictions"]["delta_version"], unchanged["predictions"]["committed_at"]) \
        if unchanged else delta.last_commit(spark, lake.predictions)
    _record_quality(spark, report, stats, scoring_input, lake, gold_commit)
    _record_drift(report, stats, scoring_input.metadata, profile)
    _record_scored_state(spark, report, scoring_input, lake, unchanged, gold_commit)
    report.durations_s["total"] = round(time.perf_counter() - started, 3)
    return report


def _warn_without_worker_reuse(spark: "SparkSession", report: RunReport) -> None:
    if spark.sparkContext.getConf().get("spark.python.worker.reuse", "true").lower() != "true":
        report.warnings.append("spark.python.worker.reuse is false: every task starts a Python worker and loads "
                               "the model again; remove that setting from the profile")


@dataclass
class _Input:
    """The input table pinned to one version, its image column, and the model pinned to one version."""

    uri: str
    source: "DataFrame | None"  # None for a stream's input (a Kafka topic)
    column: str
    kind: str
    version: ModelVersion
    metadata: dict[str, Any]
    # (image_id, split): each row's split in the silver.features version the model trained on (lakeloop.splits)
    splits: "DataFrame | None"
    # bronze.images (image files with path and image_id): the storage settings that read the files
    # it holds by reference (a null content), else None
    references: dict[str, str] | None = None
    # the input's pinned Delta version and its commit time (None for a Kafka topic)
    input_commit: tuple[int, str] | None = None

    @property
    def task(self) -> str:
        return self.metadata.get("task", "classification")


def _open_input(spark: "SparkSession", profile: Profile, registry: Registry, report: RunReport) -> _Input:
    """Check the input table, pin it and the model, find the image column."""
    cfg = profile.score
    if cfg.input == "kafka":
        raise ConfigError("score.input is kafka: frames on a Kafka topic are scored as a stream; run score --stream "
                          "(with --trigger available_now it scores what the topic holds and stops)")
    input_uri = input_table_uri(profile, cfg.input)
    if not delta.is_delta_table(spark, input_uri):
        hint = {"features": "run build_features first", "images": "run ingest_images first"}.get(
            cfg.input, "check score.input")
        raise SourceError(f"score.input {cfg.input!r} -> {input_uri} is not a Delta table; {hint}")
    with report.timed("resolve_model"):
        version, metadata = resolve_model(registry, cfg.model)
    if metadata.get("input_kind") == "table":
        raise ConfigError(f"model {version.name}:{version.version} was trained on a table, not on images; score it "
                          f"with the profile that sets features.table (its rows go to gold.<table>_predictions)")
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    input_version, input_committed_at = delta.last_commit(spark, input_uri)
    source = delta.read_table(spark, input_uri, input_version)
    column, kind = image_column(source, cfg.input_column, "score.input_column")
    check_table_columns(source.columns, {**metadata, "name": version.name, "version": version.version},
                        f"score.input {input_uri}")
    if "image_id" not in source.columns:
        raise ConfigError(
            f"score.input {input_uri} has no image_id column (it has {', '.join(source.columns)}); "
            f"gold.predictions is keyed by it: add one (e.g. sha2(content, 256)) or score the table in a "
            f"notebook with lakeloop.score(df, ...)"
        )
    report.details["input"] = {"uri": input_uri, "delta_version": input_version, "committed_at": input_committed_at,
                               "column": column, "kind": kind}
    if kind == INPUT_PIXELS:
        warning = _spec_warning(spark, input_uri, metadata)
        if warning:
            report.warnings.append(warning)
    splits = None
    lake = LakeLayout(profile.lake_root)
    if delta.is_delta_table(spark, lake.features):
        # Not the input's split nor today's: after a features.split_seed change a row the model trained on
        # would be counted as test.
        splits, warning = model_splits(spark, lake.features, metadata)
        if warning:
            report.warnings.append(warning)
    # bronze.images' null contents are files held by reference, read from their paths.
    references = profile.hadoop_conf() if input_uri == lake.bronze_images and column == "content" else None
    return _Input(input_uri, source, column, kind, version, metadata, splits, references,
                  (input_version, input_committed_at))


def _this_version(version: ModelVersion) -> "Column":
    from pyspark.sql import functions as F

    return (F.col("model_name") == F.lit(version.name)) & (F.col("model_version") == F.lit(version.version))


@dataclass
class _Pending:
    """The rows to score, and what the plan counted on the way."""

    rows: "DataFrame | None"  # None: nothing is pending, known without a plan (the counts carried over)
    inputs: int
    null_ids: int
    duplicates: int
    already_quarantined: int  # the input's keys quarantine.predictions holds for this version


def _plan_pending(spark: "SparkSession", scoring_input: _Input, cfg: ScoreConfig, lake: LakeLayout,
                  report: RunReport) -> _Pending:
    """Input rows with an id, one per id, minus those with a prediction or a quarantine row for this version."""
    # bronze.images and silver.features are unique by image_id (MERGEd on it); another table may not be.
    keyed = one_row_per_key(scoring_input.source, "image_id", scoring_input.uri,
                            unique=cfg.input in ("features", "images"))
    report.warnings.extend(keyed.warnings)
    this_version = _this_version(scoring_input.version)
    # Pinned reads: the plan below may be recomputed after this run's own MERGEs, and must not
    # see them (it would then find nothing to write, or count rows twice).
    predicted_ids = delta.read_pinned_or_empty(spark, lake.predictions, predictions_schema()) \
        .where(this_version).select("image_id")
    quarantined_ids = delta.read_pinned_or_empty(spark, lake.quarantine_predictions, quarantine_schema()) \
        .where(this_version).select("image_id")
    # Counted against the quarantine, which is small, not against gold: the keys with a prediction
    # are then the keyed inputs less the quarantined and the pending ones (see _count).
    n_quarantined = 0 if quarantined_ids.isEmpty() else keyed.rows.join(quarantined_ids, "image_id",
                                                                         "left_semi").count()
    pending = keyed.rows.join(predicted_ids.unionByName(quarantined_ids), "image_id", "left_anti")
    return _Pending(pending, keyed.n_inputs, keyed.n_without_key, keyed.n_repeated, n_quarantined)


def _scored_state(spark: "SparkSession", scoring_input: _Input, lake: LakeLayout,
                  gold_commit: tuple[int, str] | None = None) -> dict[str, Any]:
    """The input's pinned version, the model version, and the current commits of gold.predictions
    and quarantine.predictions (version and time: together one state of a table, see
    :func:`lakeloop.io.delta.last_commit`). Recorded at the end of a run that left nothing pending,
    it says that every row of that input is in one of those two tables as they then were."""
    gold = delta.commit_state(spark, lake.predictions) if gold_commit is None else \
        {"delta_version": gold_commit[0], "committed_at": gold_commit[1]}
    version, committed_at = scoring_input.input_commit or (None, None)
    return {"input": {"uri": scoring_input.uri, "delta_version": version, "committed_at": committed_at},
            "model": {"name": scoring_input.version.name, "version": scoring_input.version.version},
            "predictions": gold, "quarantine": delta.commit_state(spark, lake.quarantine_predictions)}


def _record_scored_state(spark: "SparkSession", report: RunReport, scoring_input: _Input, lake: LakeLayout,
                         unchanged: dict[str, Any] | None, gold_commit: tuple[int, str]) -> None:
    """A run that left nothing pending records, in the lake (:mod:`lakeloop.io.step_state`), the
    state it left the tables in and its counts; one that found them as the last run left them
    (``unchanged``) leaves that record as it is."""
    if report.counts.get("remaining"):
        return
    report.details["scored_state"] = unchanged or _scored_state(spark, scoring_input, lake, gold_commit)
    if not unchanged:
        write_step_state(spark, _state_uri(scoring_input, lake), {
            "run_id": report.run_id, "scored_state": report.details["scored_state"], "counts": dict(report.counts)})


def _state_uri(scoring_input: _Input, lake: LakeLayout) -> str:
    """Where the score step records (:mod:`lakeloop.io.step_state`) the state it left an input and a
    model in: one record per model name and input table."""
    digest = hashlib.sha256(scoring_input.uri.encode()).hexdigest()[:12]
    return lake.step_state("score", f"{scoring_input.version.name}-{digest}")


def _pending_as_the_last_run_left_it(spark: "SparkSession", scoring_input: _Input, lake: LakeLayout,
                                     report: RunReport) -> tuple[_Pending, dict[str, Any]] | None:
    """When the score step's last finished run over this input and model left nothing pending and
    recorded the input, the model version, gold.predictions and quarantine.predictions as they are
    now (a scheduled run with nothing new), nothing is pending now either: the plan's counts follow
    from that run's, and the anti-join against gold is not planned. Returns them and that state
    (:func:`_scored_state`, with gold's commit); else None (plan it)."""
    previous = read_step_state(spark, _state_uri(scoring_input, lake))
    counts = previous.get("counts") or {}
    recorded = previous.get("scored_state")
    if not isinstance(recorded, dict) or not isinstance(counts, dict) or counts.get("remaining") or \
            counts.get("skipped_null_id") or counts.get("skipped_duplicate_id"):
        return None
    if recorded != _scored_state(spark, scoring_input, lake) or not recorded.get("predictions"):
        return None
    try:
        quarantined = int(counts["already_quarantined"]) + int(counts["quarantined"])
        pending = _Pending(None, int(counts["inputs"]), 0, 0, quarantined)
    except (KeyError, TypeError, ValueError):  # a record from another lakeloop: plan it
        return None
    report.details["plan_from_run"] = previous.get("run_id")
    return pending, recorded


def _plan(spark: "SparkSession", scoring_input: _Input, cfg: ScoreConfig, lake: LakeLayout,
          report: RunReport) -> tuple["_Pending", list["DataFrame"], int | None, dict[str, Any] | None]:
    """What is pending, the chunks to score it in, and how many rows (see :func:`bounded_chunks`),
    and the tables' state when it is as the last run left them (then nothing, without a plan)."""
    unchanged = _pending_as_the_last_run_left_it(spark, scoring_input, lake, report)
    if unchanged is not None:
        return unchanged[0], [], 0, unchanged[1]
    pending = _plan_pending(spark, scoring_input, cfg, lake, report)
    chunks, n_pending = bounded_chunks(pending.rows, "image_id", cfg)
    if _nothing_to_do(spark, pending, n_pending, scoring_input.task, lake):
        return pending, [], 0, None
    return pending, chunks, n_pending, None


def _nothing_to_do(spark: "SparkSession", pending: _Pending, n_pending: int | None, task: str,
                   lake: LakeLayout) -> bool:
    """No row is pending and gold.predictions already has this task's columns: the run can skip
    the scoring query, its UDF and the MERGE checks (one LIMIT 1 query instead of a handful)."""
    if n_pending not in (None, 0) or not delta.is_delta_table(spark, lake.predictions):
        return False
    columns = set(delta.read_table(spark, lake.predictions).columns)
    if not {*TASK_RESULT_FIELDS[task], TRUTH_COLUMNS[task]} <= columns:
        return False
    return n_pending == 0 or pending.rows.isEmpty()


_NO_STATS = {"good": 0, "bad": 0, "labelled": 0, "correct": 0, "rss": None, "intensity_bins": {}}


def _score_chunks(spark: "SparkSession", chunks: list["DataFrame"], scoring_input: _Input, registry: Registry,
                  cfg: ScoreConfig, lake: LakeLayout, report: RunReport, started: float,
                  fault: TaskFault | None = None) -> tuple[dict[str, Any], list[Any], int]:
    """Score and MERGE each chunk in turn; the run's stats, Python workers and rows scored."""
    stats: dict[str, Any] = dict(_NO_STATS) if not chunks else {}
    workers: list[Any] = []
    n_scored = 0
    for number, rows in enumerate(chunks, 1):
        scored, n_chunk = _score_pending(spark, rows, scoring_input, registry, cfg, report, fault=fault)
        try:
            chunk_stats, chunk_workers = _write_scored(spark, scored, scoring_input.version, scoring_input.task, lake,
                                                       report)
        finally:
            delta.release(scored)
        stats, workers, n_scored = _add_stats(stats, chunk_stats), workers + chunk_workers, n_scored + n_chunk
        if len(chunks) > 1:
            report.details.setdefault("chunks", []).append({"chunk": number, "rows": n_chunk,
                                                            "committed_at_s": round(time.perf_counter() - started, 1)})
    report.throughput["rows_per_s"] = round(n_scored / report.durations_s["score"], 1) \
        if n_scored and report.durations_s.get("score") else 0.0
    return stats, workers, n_scored


def _add_stats(total: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    """Two chunks' stats as one: counts added, the peak RSS the larger, intensity histograms merged."""
    if not total:
        return dict(chunk)
    out = {k: (total[k] or 0) + (chunk[k] or 0) for k in ("good", "bad", "labelled", "correct")}
    out["rss"] = max((r for r in (total["rss"], chunk["rss"]) if r is not None), default=None)
    bins = dict(total["intensity_bins"])
    for b, n in chunk["intensity_bins"].items():
        bins[b] = bins.get(b, 0) + n
    out["intensity_bins"] = bins
    return out


def _score_pending(spark: "SparkSession", rows: "DataFrame", scoring_input: _Input, registry: Registry,
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


def _write_scored(spark: "SparkSession", scored: "DataFrame", version: ModelVersion, task: str, lake: LakeLayout,
                  report: RunReport, txn: delta.Txn | None = None,
                  carry: tuple[str, ...] = ()) -> tuple[Any, list[Any]]:
    """MERGE the scored rows into gold and the refused ones into quarantine; returns the run's
    stats (good, bad, labelled, correct, peak worker RSS) and one row per Python worker.

    ``txn``: a streaming micro-batch's identity; each MERGE then carries it, and a replayed batch's
    MERGE commits nothing (:func:`lakeloop.io.delta.merge_insert_new`). ``carry``: columns of
    ``scored`` written too, to both tables (added to them if they lack them)."""
    from pyspark.sql import functions as F

    ok = F.col("p.error").isNull()
    truth = TRUTH_COLUMNS[task]
    labelled = ok & F.col(truth).isNotNull()
    correct = labelled & (F.col("p.label") == F.col(truth)) if task == "classification" else F.lit(False)
    stats = scored.agg(
        F.count(F.when(ok, 1)).alias("good"),
        F.count(F.when(~ok, 1)).alias("bad"),
        F.count(F.when(labelled, 1)).alias("labelled"),
        F.count(F.when(correct, 1)).alias("correct"),
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


def _count(report: RunReport, pending: _Pending, n_bounded: int | None, n_scored: int, stats: Any,
           workers: list[Any], cfg: ScoreConfig) -> None:
    """The run's counts and the facts about the Python workers that scored; ``n_bounded``: the rows
    pending in all when ``max_rows_per_run`` / ``commit_every_rows`` bound the run (else None)."""
    n_pending = n_bounded if n_bounded is not None else n_scored
    if n_bounded is not None:
        report.counts["remaining"] = n_bounded - n_scored
        if n_bounded > n_scored:
            report.warnings.append(f"{n_bounded - n_scored} row(s) left for the next run (score.max_rows_per_run = "
                                   f"{cfg.max_rows_per_run}); run score again to go on")
    n_keyed = pending.inputs - pending.null_ids - pending.duplicates
    report.counts.update(
        inputs=pending.inputs,
        already_scored=n_keyed - pending.already_quarantined - n_pending,
        already_quarantined=pending.already_quarantined,
        scored=int(stats["good"]),
        quarantined=int(stats["bad"]),
        python_workers=len(workers),
        model_loads=int(sum(w["loads"] for w in workers)),
    )
    if pending.null_ids or pending.duplicates:
        report.counts.update(skipped_null_id=pending.null_ids, skipped_duplicate_id=pending.duplicates)
    if stats["rss"] is not None:
        report.details["python_worker_peak_rss_mb"] = round(stats["rss"] / 2**20, 1)
    report.details["python_worker_devices"] = sorted({w["worker_device"] for w in workers})
    report.details["batches"] = {"batch_size": cfg.batch_size, "max_batch_bytes": cfg.max_batch_bytes}


def _record_quality(spark: "SparkSession", report: RunReport, stats: Any, scoring_input: _Input,
                    lake: LakeLayout, gold_commit: tuple[int, str]) -> None:
    """This run's own figures: a classifier's accuracy over the labelled rows it scored, from the
    run's counts (nothing is read back). The version's accuracy, per split, is the evaluation's
    (``evaluate`` -> gold.model_evaluations): one figure, computed in one place."""
    if scoring_input.task != "classification":
        _record_task_quality(spark, report, scoring_input, lake, gold_commit[0])
        return
    accuracy = round(stats["correct"] / stats["labelled"], 6) if stats["labelled"] else None
    report.details.update(accuracy_this_run=accuracy, labelled_this_run=int(stats["labelled"] or 0),
                          model_evaluations=lake.model_evaluations)
    if accuracy is not None:
        report.metrics["accuracy_this_run"] = accuracy


def _record_task_quality(spark: "SparkSession", report: RunReport, scoring_input: _Input, lake: LakeLayout,
                         gold_version: int) -> None:
    """A multilabel or regression image model's figures over every prediction of the version whose
    input had a target: exact-match rate of the label sets, or MAE and RMSE."""
    from lakeloop.scoring.tables import task_quality

    gold = delta.read_table(spark, lake.predictions, gold_version).where(_this_version(scoring_input.version))
    quality = task_quality(gold, scoring_input.task, "model_version")
    report.details["labelled_predictions_for_version"] = quality.pop("labelled")
    report.details.update(quality, predictions_delta_version=gold_version)
    report.metrics.update({k: v for k, v in quality.items() if v is not None})


def _record_drift(report: RunReport, stats: dict[str, Any], metadata: dict[str, Any], profile: Profile) -> None:
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

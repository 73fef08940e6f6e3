"""The batch scoring driver for image models: the rows of a lake table that have no prediction yet
-> Delta ``gold.predictions``.

:func:`score_images` opens the input (:mod:`lakeloop.scoring.inputs`), plans what is pending (an
anti-join against gold and quarantine, or nothing when the tables are as its last run recorded
them, :mod:`lakeloop.io.step_state`), scores and writes it in bounded chunks with the shared steps
(:mod:`lakeloop.scoring.core`), and reports the run's counts, its own accuracy and input drift,
throughput and worker memory (the version's accuracy is the evaluate job's, in
``gold.model_evaluations``). :func:`lakeloop.scoring.score_table` chooses it or the table driver
(:mod:`lakeloop.scoring.tables`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile, ScoreConfig, TaskFault
from lakeloop.io import delta
from lakeloop.io.step_state import read_step_state, write_step_state
from lakeloop.layout import LakeLayout
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.scoring.batch import TASK_RESULT_FIELDS, TRUTH_COLUMNS
from lakeloop.scoring.core import (INPUT_COLUMN, NO_STATS, add_stats, follow_input, input_name,
                                   predictions_schema, quarantine_schema, record_drift, record_quality, score_rows,
                                   write_scored)
from lakeloop.scoring.inputs import ScoringInput, open_input, this_version, warn_without_worker_reuse
from lakeloop.scoring.udf import bounded_chunks, one_row_per_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def score_images(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
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
        ``split`` (the row's split in the silver.features version the model trained on,
        :mod:`lakeloop.splits`; the input's own ``split`` for a row not there; null for rows in
        neither). Evaluation reads it from here.
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
    cfg = profile.score
    report = report or RunReport.start("score")
    lake = LakeLayout(profile.lake_root)
    started = time.perf_counter()
    report.outputs.update(predictions=lake.predictions, quarantine=lake.quarantine_predictions)
    warn_without_worker_reuse(spark, report)
    registry = Registry.for_profile(profile)
    scoring_input = open_input(spark, profile, registry, report)
    with report.timed("plan"):
        pending, chunks, n_pending, unchanged = _plan(spark, scoring_input, cfg, lake, report)
    stats, workers, n_scored = _score_chunks(spark, chunks, scoring_input, registry, cfg, lake, report, started,
                                             profile.faults.fail_task)
    _count(report, pending, n_pending, n_scored, stats, workers, cfg)
    _follow(spark, cfg, scoring_input, lake, report, unchanged)
    # A run that found the tables as the last run left them wrote nothing: that state is still theirs.
    gold_commit = (unchanged["predictions"]["delta_version"], unchanged["predictions"]["committed_at"]) \
        if unchanged else delta.last_commit(spark, lake.predictions)
    record_quality(report, stats, scoring_input, lake)
    record_drift(report, stats, scoring_input.metadata, profile)
    _record_scored_state(spark, report, scoring_input, lake, unchanged, gold_commit)
    report.durations_s["total"] = round(time.perf_counter() - started, 3)
    return report


def _follow(spark: "SparkSession", cfg: ScoreConfig, scoring_input: ScoringInput, lake: LakeLayout, report: RunReport,
            unchanged: dict[str, Any] | None) -> None:
    """The lake's own image tables change (a relabel, a mirrored deletion): their predictions follow
    (:func:`lakeloop.scoring.core.follow_input`); nothing to follow when the input and gold are as
    the last run left them."""
    if cfg.input not in ("features", "images"):
        return
    if unchanged:
        report.counts.update(removed=0, relabelled=0)
        return
    with report.timed("follow_input"):
        follow_input(spark, scoring_input, lake, report)


@dataclass
class _Pending:
    """The rows to score, and what the plan counted on the way."""

    rows: "DataFrame | None"  # None: nothing is pending, known without a plan (the counts carried over)
    inputs: int
    null_ids: int
    duplicates: int
    already_quarantined: int  # the input's keys quarantine.predictions holds for this version


def _plan_pending(spark: "SparkSession", scoring_input: ScoringInput, cfg: ScoreConfig, lake: LakeLayout,
                  report: RunReport) -> _Pending:
    """Input rows with an id, one per id, minus those with a prediction or a quarantine row for this version."""
    # bronze.images and silver.features are unique by image_id (MERGEd on it); another table may not be.
    keyed = one_row_per_key(scoring_input.source, "image_id", scoring_input.uri,
                            unique=cfg.input in ("features", "images"))
    report.warnings.extend(keyed.warnings)
    of_version = this_version(scoring_input.version)
    # Pinned reads: the plan below may be recomputed after this run's own MERGEs, and must not
    # see them (it would then find nothing to write, or count rows twice).
    predicted_ids = delta.read_pinned_or_empty(spark, lake.predictions, predictions_schema()) \
        .where(of_version).select("image_id")
    quarantined_ids = delta.read_pinned_or_empty(spark, lake.quarantine_predictions, quarantine_schema()) \
        .where(of_version).select("image_id")
    # Counted against the quarantine, which is small, not against gold: the keys with a prediction
    # are then the keyed inputs less the quarantined and the pending ones (see _count).
    n_quarantined = 0 if quarantined_ids.isEmpty() else keyed.rows.join(quarantined_ids, "image_id",
                                                                         "left_semi").count()
    pending = keyed.rows.join(predicted_ids.unionByName(quarantined_ids), "image_id", "left_anti")
    return _Pending(pending, keyed.n_inputs, keyed.n_without_key, keyed.n_repeated, n_quarantined)


def _scored_state(spark: "SparkSession", scoring_input: ScoringInput, lake: LakeLayout,
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


def _record_scored_state(spark: "SparkSession", report: RunReport, scoring_input: ScoringInput, lake: LakeLayout,
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


def _state_uri(scoring_input: ScoringInput, lake: LakeLayout) -> str:
    """Where the score step records (:mod:`lakeloop.io.step_state`) the state it left an input and a
    model in: one record per model name and input table."""
    digest = hashlib.sha256(scoring_input.uri.encode()).hexdigest()[:12]
    return lake.step_state("score", f"{scoring_input.version.name}-{digest}")


def _pending_as_the_last_run_left_it(spark: "SparkSession", scoring_input: ScoringInput, lake: LakeLayout,
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


def _plan(spark: "SparkSession", scoring_input: ScoringInput, cfg: ScoreConfig, lake: LakeLayout,
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


def _score_chunks(spark: "SparkSession", chunks: list["DataFrame"], scoring_input: ScoringInput, registry: Registry,
                  cfg: ScoreConfig, lake: LakeLayout, report: RunReport, started: float,
                  fault: TaskFault | None = None) -> tuple[dict[str, Any], list[Any], int]:
    """Score and MERGE each chunk in turn; the run's stats, Python workers and rows scored."""
    stats: dict[str, Any] = dict(NO_STATS) if not chunks else {}
    workers: list[Any] = []
    n_scored = 0
    from pyspark.sql import functions as F

    for number, rows in enumerate(chunks, 1):
        rows = rows.withColumn(INPUT_COLUMN, F.lit(input_name(scoring_input.uri, lake)))
        scored, n_chunk = score_rows(spark, rows, scoring_input, registry, cfg, report, carry=(INPUT_COLUMN,),
                                     fault=fault)
        try:
            chunk_stats, chunk_workers = write_scored(spark, scored, scoring_input.version, scoring_input.task, lake,
                                                       report, carry=(INPUT_COLUMN,))
        finally:
            delta.release(scored)
        stats, workers, n_scored = add_stats(stats, chunk_stats), workers + chunk_workers, n_scored + n_chunk
        if len(chunks) > 1:
            report.details.setdefault("chunks", []).append({"chunk": number, "rows": n_chunk,
                                                            "committed_at_s": round(time.perf_counter() - started, 1)})
    report.throughput["rows_per_s"] = round(n_scored / report.durations_s["score"], 1) \
        if n_scored and report.durations_s.get("score") else 0.0
    return stats, workers, n_scored


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

"""Streaming scoring: Structured Streaming over a Delta table or a Kafka topic -> ``gold.predictions``,
exactly once.

:func:`score_stream` reads ``score.input`` with Delta's streaming source, or with Spark's Kafka
source when it is ``kafka`` (:mod:`lakeloop.scoring.kafka`), and scores each micro-batch with the
same UDF, model cache and writes as the batch job (:mod:`lakeloop.scoring.job`). What makes it
exactly once:

- Spark's checkpoint (in the lake, :meth:`LakeLayout.stream_checkpoint`) records which input
  files (or offsets) each micro-batch took before the batch runs, and that the batch is done after it ran.
  A driver killed in between replays the same batch, with the same id, on restart.
- Each batch's two MERGEs (predictions, quarantine) carry Delta's transaction identifier
  (``txnAppId`` = the query's id, ``txnVersion`` = the batch id): a table that has committed a
  batch skips it when it is replayed, so a replay commits nothing where the first try had.
- The MERGEs insert only keys the table lacks, so rows another run already scored (a batch
  ``score`` of the same model version) are not written twice either.

``trigger: available_now`` scores what is new since the last run and stops: the shape of a
scheduled run, which reads only the files the checkpoint has not seen instead of anti-joining
the whole input against gold. An interval trigger keeps the query running.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile, ScoreKafkaConfig
from lakeloop.errors import ConfigError
from lakeloop.io import delta, streams
from lakeloop.layout import LakeLayout, table_ref
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.scoring import kafka
from lakeloop.scoring.batch import INPUT_CONTENT
from lakeloop.scoring.core import (NO_STATS, add_stats, predictions_schema, quarantine_schema, record_drift,
                                   record_quality, score_rows, write_scored)
from lakeloop.scoring.inputs import ScoringInput, open_input, this_version, warn_without_worker_reuse
from lakeloop.scoring.udf import check_table_columns, one_row_per_key, resolve_model

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Micro-batches listed in the report: the last ones only, so a long-running stream's report stays small.
_BATCHES_KEPT = 50


@dataclass
class _StreamState:
    """What the micro-batches of one run add up to (they run one after the other on the driver)."""

    scoring_input: ScoringInput
    query_name: str
    started: float
    kafka: ScoreKafkaConfig | None = None  # the input is this topic
    query_id: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    workers: list[Any] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("batches", "replayed_batches", "inputs", "scored", "quarantined", "already_scored", "already_quarantined",
         "skipped_null_id", "skipped_duplicate_id"), 0))
    batches: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None


def stream_checkpoint(profile: Profile, scoring_input: ScoringInput) -> str:
    """The query's checkpoint: one per input table and model version, under ``score.stream.checkpoint``
    when it is set, else in the lake (:meth:`LakeLayout.stream_checkpoint`)."""
    ref = profile.score.input
    # features, images, bronze.frames as they are; a URI by a hash of it (two URIs may end alike).
    source = ref if ref in ("features", "images") or table_ref(ref) else \
        kafka.checkpoint_name(profile.score.kafka) if ref == "kafka" else \
        "uri-" + hashlib.sha256(scoring_input.uri.encode()).hexdigest()[:12]
    version = scoring_input.version
    root = profile.score.stream.checkpoint
    if root:
        return f"{root.rstrip('/')}/{source}/{version.name}/v{version.version}"
    return LakeLayout(profile.lake_root).stream_checkpoint("score", source, version.name, version.version)


def score_stream(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Score ``score.input`` as a stream: each new row once, for the model version resolved at the start.

    Reads ``score.*`` as :func:`lakeloop.scoring.job.score_images` does (``input``, ``model``,
    ``input_column``, ``batch_size``, ``max_batch_bytes``, ``torch_threads_per_task``) and
    ``score.stream.*``: ``trigger`` (``available_now`` or an interval such as ``30 seconds``),
    ``max_files_per_trigger`` (input files per micro-batch), ``skip_change_commits``,
    ``checkpoint``. ``score.max_rows_per_run`` and ``commit_every_rows`` do not apply: every
    micro-batch is a commit, ``max_files_per_trigger`` bounds it.

    Writes
    ------
    ``gold.predictions`` and ``quarantine.predictions``, as the batch job does, each row once;
    the query's checkpoint.

    Raises
    ------
    ConfigError
        a table model (``features.table``): tables are scored by the batch job; an input
        without ``image_id`` or an image column.
    SourceError, ModelNotFound
        as :func:`lakeloop.scoring.job.score_images`.
    JobFailed
        the query stopped on an error of Spark or Delta (its message says which batch).
    """
    if profile.features.table is not None:
        raise ConfigError("score --stream scores images; a table model (features.table is set) is scored by the "
                          "batch job: drop --stream")
    cfg = profile.score
    report = report or RunReport.start("score")
    lake = LakeLayout(profile.lake_root)
    report.outputs.update(predictions=lake.predictions, quarantine=lake.quarantine_predictions)
    warn_without_worker_reuse(spark, report)
    registry = Registry.for_profile(profile)
    from_kafka = cfg.input == "kafka"
    scoring_input = _open_kafka_input(profile, registry, report) if from_kafka else \
        open_input(spark, profile, registry, report)
    checkpoint = stream_checkpoint(profile, scoring_input)
    version = scoring_input.version
    state = _StreamState(scoring_input, f"lakeloop-score-{version.name}-v{version.version}", time.perf_counter(),
                         kafka=cfg.kafka if from_kafka else None)
    report.outputs["checkpoint"] = checkpoint
    report.details["stream"] = {"trigger": cfg.stream.trigger, "checkpoint": checkpoint, **(
        {"max_offsets_per_trigger": cfg.kafka.max_offsets_per_trigger} if from_kafka else
        {"max_files_per_trigger": cfg.stream.max_files_per_trigger,
         "skip_change_commits": cfg.stream.skip_change_commits})}

    def each_batch(batch: "DataFrame", batch_id: int) -> None:
        try:
            _score_micro_batch(spark, batch, int(batch_id), state, registry, profile, report)
        except Exception as exc:
            state.error = exc  # what the query's error is reported by, once it has stopped
            raise

    source = kafka.read_messages(spark, cfg.kafka) if from_kafka else (
        spark.readStream.format("delta")
        .option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
        .option("skipChangeCommits", str(cfg.stream.skip_change_commits).lower())
        .load(scoring_input.uri))
    writer = (source.writeStream.queryName(state.query_name).foreachBatch(each_batch)
              .option("checkpointLocation", checkpoint))

    def started(query: Any) -> None:
        state.query_id = str(query.id)
        report.details["stream"]["query_id"] = state.query_id

    with report.timed("stream"):
        streams.run_query(writer, cfg.stream.trigger, "score", checkpoint, lambda: state.counts["batches"],
                          lambda: state.error, started)
    _summarise(spark, state, profile, lake, report)
    return report


def _open_kafka_input(profile: Profile, registry: Registry, report: RunReport) -> ScoringInput:
    """The topic as the scoring input (encoded images in ``content``) and the model pinned to one version.

    Raises
    ------
    ConfigError
        the model was trained on a table, or needs table columns besides the image (a message
        holds the image only).
    SourceError
        no bootstrap server answers.
    """
    cfg = profile.score.kafka
    # "{kafka}" is the connector too, left unexpanded without a supported pyspark (lakeloop.runtime.jars says why).
    if profile.jvm.packages and not any(":spark-sql-kafka-0-10_" in p or p == "{kafka}" for p in profile.jvm.packages):
        raise ConfigError(f"score.input is kafka but jvm.packages ({', '.join(profile.jvm.packages)}) lacks Spark's "
                          f"Kafka connector: add \"{{kafka}}\" (the connector of the installed pyspark's stack, as "
                          f"conf/local.yaml does) and run ./dev/setup.sh --profile {profile.name}")
    kafka.check_reachable(cfg)
    with report.timed("resolve_model"):
        version, metadata = resolve_model(registry, profile.score.model)
    if metadata.get("input_kind") == "table":
        raise ConfigError(f"model {version.name}:{version.version} was trained on a table, not on images; frames on "
                          f"Kafka are scored by an image model")
    uri = kafka.kafka_uri(cfg)
    check_table_columns(["image_id", "content", "label"], {**metadata, "name": version.name,
                                                         "version": version.version}, f"score.input {uri}")
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    # The servers and topic, and only the names of further options: their values may be credentials.
    report.details["input"] = {"uri": uri, "column": "content", "kind": INPUT_CONTENT,
                               "starting_offsets": cfg.starting_offsets, "options": sorted(cfg.options)}
    return ScoringInput(uri, None, "content", INPUT_CONTENT, version, metadata, None)


def _query_id(spark: "SparkSession", state: _StreamState) -> str:
    """The running query's id (kept in its checkpoint, so the same across restarts; a new checkpoint
    is a new id): the micro-batch can run before ``start()`` has returned it."""
    if state.query_id is None:
        state.query_id = next(str(q.id) for q in spark.streams.active if q.name == state.query_name)
    return state.query_id


def _taken_keys(spark: "SparkSession", scoring_input: ScoringInput, lake: LakeLayout) -> "DataFrame":
    """image_id and the Kafka columns of the rows gold.predictions and quarantine.predictions hold for
    the model version (null Kafka columns for rows of another input)."""
    from pyspark.sql import functions as F


    parts = []
    for uri, schema in ((lake.predictions, predictions_schema()), (lake.quarantine_predictions, quarantine_schema())):
        rows = delta.read_pinned_or_empty(spark, uri, schema).where(this_version(scoring_input.version))
        parts.append(rows.select("image_id", *[F.col(c) if c in rows.columns else F.lit(None).cast(t).alias(c)
                                               for c, t in zip(kafka.KAFKA_COLUMNS, ("string", "int", "long"))]))
    return parts[0].unionByName(parts[1])


def _score_micro_batch(spark: "SparkSession", batch: "DataFrame", batch_id: int, state: _StreamState,
                       registry: Registry, profile: Profile, report: RunReport) -> None:
    """Score one micro-batch and MERGE it under the batch's transaction identifier."""
    scoring_input, cfg = state.scoring_input, profile.score
    lake = LakeLayout(profile.lake_root)
    if state.kafka is not None:
        batch = kafka.frames_from_messages(batch, state.kafka, _taken_keys(spark, scoring_input, lake))
    # Unique by image_id: bronze.images and silver.features are MERGEd on it; Kafka frames are keyed
    # by position where a key repeats (frames_from_messages).
    keyed = one_row_per_key(batch, "image_id", scoring_input.uri, unique=cfg.input in ("features", "images", "kafka"))
    for warning in keyed.warnings:
        report.warnings.append(f"micro-batch {batch_id}: {warning}")
    counts = state.counts
    counts["inputs"] += keyed.n_inputs
    counts["skipped_null_id"] += keyed.n_without_key
    counts["skipped_duplicate_id"] += keyed.n_repeated
    counts["batches"] += 1
    n_keyed = keyed.n_inputs - keyed.n_without_key - keyed.n_repeated
    entry: dict[str, Any] = {"batch": batch_id, "rows": keyed.n_inputs}
    if n_keyed:
        # The micro-batch's own session (a clone the stream made): the Arrow batch sizes are set there.
        carry = kafka.KAFKA_COLUMNS if state.kafka is not None else ()
        scored, _ = score_rows(batch.sparkSession, keyed.rows, scoring_input, registry, cfg, report,
                                   carry=(*carry, kafka.REFUSED) if carry else (),
                                   errors=kafka.message_error if carry else None, fault=profile.faults.fail_task)
        # One identity per query and micro-batch; hashed, as Delta keeps every app id in the table's log.
        app_id = "lakeloop-score-" + hashlib.sha256(_query_id(spark, state).encode()).hexdigest()[:16]
        try:
            stats, workers = write_scored(spark, scored, scoring_input.version, scoring_input.task, lake, report,
                                           txn=delta.Txn(app_id, batch_id), carry=carry)
        finally:
            delta.release(scored)
        merges = [report.details.pop(k, None) for k in ("predictions_merge", "quarantine_merge")]
        ran = [m for m in merges if m is not None]
        inserted, quarantined = (int((m or {}).get("num_inserted_rows", 0)) for m in merges)
        counts["scored"] += inserted
        counts["quarantined"] += quarantined
        counts["already_scored"] += int(stats["good"]) - inserted
        counts["already_quarantined"] += int(stats["bad"]) - quarantined
        entry.update(scored=inserted, quarantined=quarantined)
        if ran and all(m.get("skipped_by_txn") for m in ran):
            counts["replayed_batches"] += 1
            entry["replayed"] = True
        state.stats, state.workers = add_stats(state.stats, stats), state.workers + workers
    entry["committed_at_s"] = round(time.perf_counter() - state.started, 1)
    state.batches = (state.batches + [entry])[-_BATCHES_KEPT:]
    report.counts.update(counts)
    print(f"[lakeloop score --stream] micro-batch {batch_id}: {keyed.n_inputs} row(s)"
          + (" (a replay: already committed, nothing written)" if entry.get("replayed") else
             f", {entry.get('scored', 0)} scored, {entry.get('quarantined', 0)} quarantined"), flush=True)


def _summarise(spark: "SparkSession", state: _StreamState, profile: Profile, lake: LakeLayout,
               report: RunReport) -> None:
    """Counts, throughput, the micro-batches, and the quality figures of the batch job."""

    counts = {k: v for k, v in state.counts.items() if v or k in ("batches", "inputs", "scored", "quarantined")}
    # A worker's counters are its totals so far, and it scores many micro-batches: its last figures count.
    loads: dict[tuple[Any, Any], int] = {}
    for w in state.workers:
        key = (w["worker_pid"], w["worker_device"])
        loads[key] = max(loads.get(key, 0), int(w["loads"]))
    counts.update(python_workers=len(loads), model_loads=sum(loads.values()))
    report.counts.clear()
    report.counts.update(counts)
    report.details["stream"]["micro_batches"] = state.batches
    report.details["python_worker_devices"] = sorted({device for _, device in loads})
    stats = state.stats or dict(NO_STATS)
    if stats.get("rss") is not None:
        report.details["python_worker_peak_rss_mb"] = round(stats["rss"] / 2**20, 1)
    seconds = report.durations_s.get("stream")
    report.throughput["rows_per_s"] = round(counts["scored"] / seconds, 1) if seconds and counts["scored"] else 0.0
    if delta.is_delta_table(spark, lake.predictions):
        record_quality(report, stats, state.scoring_input, lake)
    record_drift(report, stats, state.scoring_input.metadata, profile)
    report.durations_s["total"] = round(time.perf_counter() - state.started, 3)

"""Image ingestion as a stream: ``ingest_images --stream``, new files of the source folder ->
``bronze.images`` / ``quarantine.images`` / the ledger, through the batch job's own checks.

Spark's file source (``binaryFile``, its listing only: no bytes are read by the stream) hands
each micro-batch at most ``ingest_images.stream.max_files_per_trigger`` new files; the batch job's
steps (:func:`lakeloop.ingest.images.unseen_files`, :func:`~lakeloop.ingest.images.ingest_unseen`)
read, decode, check and MERGE them. Every write is a MERGE on the files' keys, and files the
ledger holds are left out, so a micro-batch replayed after a crash adds nothing twice, and files
the batch job already took are not taken again.

What Spark's file source never hands over, sweeps take through the same steps, listing the
folder with the pyarrow filesystem (no Spark job) and leaving out what the ledger holds:

* at the start of each run, files under names Spark hides (``_DSC0001.JPG``, ``_drafts/``,
  ``.thumb.jpg``) and empty files;
* at the end of an ``available_now`` run, and every :data:`SWEEP_EVERY` micro-batches of a
  continuous one, every file: also a file the source listed while it was empty and that was
  written later, or one that changed between the listing and the read (the source hands a path
  over once).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lakeloop.config import ImageIngestConfig, Profile, TaskFault
from lakeloop.ingest.image_files import FILE_KEYS, LISTING_SCHEMA, extension_glob, files_by_pyarrow, require_source
from lakeloop.ingest.images import OUTCOMES, ingest_unseen, start_ingestion, unseen_files
from lakeloop.io import hadoop, streams
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import LakeLayout
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
SWEEP_EVERY = 10
_RETRY = f"the sweep at the end of this run (or every {SWEEP_EVERY} micro-batches of a continuous one) takes them"
_BATCHES_KEPT = 50


@dataclass
class _IngestStreamState:
    source_root: str
    started: float
    fault: TaskFault | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("batches", "files_listed", "files_already_seen", "inputs", *OUTCOMES), 0))
    batches: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None


def ingest_checkpoint(profile: Profile, source_root: str) -> str:
    """The query's checkpoint: one per source folder, under ``ingest_images.stream.checkpoint`` when
    it is set, else in the lake."""
    # The source and the lake: two lakes fed from one folder under one checkpoint root keep apart.
    key = "source-" + hashlib.sha256(f"{source_root}\n{profile.lake_root}".encode()).hexdigest()[:16]
    root = profile.ingest_images.stream.checkpoint
    return f"{root.rstrip('/')}/{key}" if root else LakeLayout(profile.lake_root).ingest_checkpoint(key)


def ingest_images_stream(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Ingest the files that arrived in ``ingest_images.source`` since the last run, as a stream.

    Reads ``ingest_images.*`` as :func:`lakeloop.ingest.images.ingest_images` does, and
    ``ingest_images.stream.*``: ``trigger``, ``max_files_per_trigger``, ``max_file_age``,
    ``checkpoint``.

    Writes
    ------
    ``bronze.images``, ``quarantine.images`` and the ledger, as the batch job does: every file once,
    with one outcome; the query's checkpoint.

    Raises
    ------
    ConfigError
        no source configured.
    SourceError
        the source folder does not exist.
    JobFailed
        the query stopped on an error of Spark or Delta, or a micro-batch's files did not add up.
    """
    cfg = profile.ingest_images
    report, lake, files = start_ingestion(profile, report)
    source_root = hadoop.qualify(spark, cfg.source)
    require_source(spark, source_root)
    state = _IngestStreamState(source_root, time.perf_counter(), profile.faults.fail_task)
    report.counts["swept_files"] = 0
    _sweep(spark, cfg, lake, files, state, report, "passed_over")
    checkpoint = ingest_checkpoint(profile, source_root)
    report.outputs["checkpoint"] = checkpoint
    report.details["stream"] = {"trigger": cfg.stream.trigger, "checkpoint": checkpoint,
                                "max_files_per_trigger": cfg.stream.max_files_per_trigger}
    _run_query(spark, cfg, lake, files, state, checkpoint, report)
    if cfg.stream.trigger == "available_now":
        _sweep(spark, cfg, lake, files, state, report, "all")
    _summarise(state, report)
    return report


def _sweep(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, files: LakeFiles,
           state: _IngestStreamState, report: RunReport, which: Literal["passed_over", "all"]) -> None:
    """Take the files the ledger lacks of those :func:`files_by_pyarrow` lists (``passed_over``:
    hidden names and empty files; ``all``: every file); ``swept_files`` counts them."""
    with report.timed("sweep"):
        rows = files_by_pyarrow(files, state.source_root, cfg.extensions, which)
        if rows:
            listed = spark.createDataFrame(rows, LISTING_SCHEMA)
            report.counts["swept_files"] += _ingest_listed(spark, cfg, lake, files, listed, state, report, "sweep")


def _ingest_listed(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, files: LakeFiles,
                   listed: "DataFrame", state: _IngestStreamState, report: RunReport, batch: int | str) -> int:
    """The batch job's steps over some files of the folder: leave out those in the ledger, read,
    check and MERGE the others; returns how many were taken."""
    from pyspark import StorageLevel

    listed = listed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        listing = unseen_files(spark, cfg, lake.images_ledger, state.source_root, listed, partial=True)
        try:
            retry = "the next sweep takes them" if batch == "sweep" else _RETRY
            outcomes = ingest_unseen(spark, cfg, lake, listing, files, report, retry=retry, fault=state.fault) \
                if listing.n_unseen else dict.fromkeys(OUTCOMES, 0)
        finally:
            listing.unseen.unpersist()
    finally:
        listed.unpersist()
    counts = state.counts
    counts["files_listed"] += listing.n_listed
    counts["inputs"] += listing.n_unseen
    counts["files_already_seen"] += listing.n_listed - listing.n_unseen
    for outcome, n in outcomes.items():
        counts[outcome] += n
    entry = {"batch": batch, "files": listing.n_listed, **{k: v for k, v in outcomes.items() if v},
             "committed_at_s": round(time.perf_counter() - state.started, 1)}
    state.batches = (state.batches + [entry])[-_BATCHES_KEPT:]
    print(f"[lakeloop ingest_images --stream] {'sweep' if batch == 'sweep' else f'micro-batch {batch}'}: "
          f"{listing.n_listed} file(s), " + (", ".join(f"{n} {k}" for k, n in outcomes.items() if n) or "none new"),
          flush=True)
    return listing.n_unseen


def _run_query(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, files: LakeFiles,
               state: _IngestStreamState, checkpoint: str, report: RunReport) -> None:
    """Start the file stream and wait for it to end (``available_now``) or to be stopped."""
    from pyspark.sql import functions as F

    def each_batch(batch: "DataFrame", batch_id: int) -> None:
        try:
            state.counts["batches"] += 1
            listed = batch.select(*FILE_KEYS, F.lit(True).alias("spark_readable"), F.lit(False).alias("dot_name"))
            _ingest_listed(spark, cfg, lake, files, listed, state, report, int(batch_id))
            if cfg.stream.trigger != "available_now" and state.counts["batches"] % SWEEP_EVERY == 0:
                _sweep(spark, cfg, lake, files, state, report, "all")
        except Exception as exc:
            state.error = exc  # what the query's error is reported by, once it has stopped
            raise

    # The listing only: selecting these columns before the sink keeps the stream from reading bytes.
    stream = (spark.readStream.schema(_BINARY_FILE_SCHEMA).format("binaryFile")
              .option("recursiveFileLookup", "true").option("pathGlobFilter", extension_glob(cfg.extensions))
              .option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
              .option("maxFileAge", cfg.stream.max_file_age)
              .load(state.source_root)
              .select("path", "length", F.col("modificationTime").alias("modification_time")))
    writer = stream.writeStream.queryName("lakeloop-ingest-images").foreachBatch(each_batch) \
        .option("checkpointLocation", checkpoint)
    with report.timed("stream"):
        streams.run_query(writer, cfg.stream.trigger, "ingest_images", checkpoint, lambda: state.counts["batches"],
                          lambda: state.error)


def _summarise(state: _IngestStreamState, report: RunReport) -> None:
    counts = dict(state.counts)
    counts["duplicates"] = counts.pop("duplicate")  # the batch job's name
    report.counts.update(counts)
    report.details["stream"]["micro_batches"] = state.batches
    elapsed = time.perf_counter() - state.started
    report.durations_s["total"] = round(elapsed, 3)
    report.throughput["files_per_s"] = round(counts["inputs"] / elapsed, 1) if elapsed > 0 else 0.0

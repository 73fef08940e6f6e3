"""Image ingestion: a folder tree at any Hadoop URI -> Delta ``bronze.images`` + ``quarantine.images``.

Steps (each a function tests and notebooks can call):

1. :func:`lakeloop.ingest.image_files.list_source_files` lists every image file (no bytes
   read), also those Spark's own listing hides (names starting with ``_`` or ``.``).
2. :func:`select_unseen` keeps files whose (path, length, modification time) is not in the
   ingestion ledger, so a rerun over an unchanged folder reads no bytes at all.
3. Files under a ``.`` name are skipped (``ingest_images.hidden_files: skip``, the default)
   and files over ``ingest_images.max_file_bytes`` are refused, both without being read;
   :func:`lakeloop.ingest.image_files.read_files` reads the others' bytes.
4. :func:`inspect_files` decodes each file with Pillow inside Spark (a pandas UDF) and
   adds ``image_id`` = sha256 of the bytes. Files over ``ingest_images.content_max_bytes``
   are ingested by reference (:func:`inspect_references`): hashed and checked from their
   source in chunks, with a null ``content`` in bronze; later steps read them from ``path``
   and refuse one whose sha256 is no longer ``image_id``.
5. :func:`ingest_images` writes: new images MERGEd into bronze on ``image_id`` (duplicate
   content stored once), refused files MERGEd into quarantine on (path, content), then every
   file into the ledger (one row per path) with its outcome (``ingested``, ``duplicate``,
   ``quarantined`` or ``skipped``). All writes are MERGEs on keys, so a run killed anywhere
   and started again ends as one clean run, and a file rewritten with the same bytes adds
   no row anywhere.
6. :func:`lakeloop.ingest.image_sources.follow_source` brings bronze to the folder as it is:
   labels of present files, moved paths, label conflicts, and with ``source_mode: mirror`` the
   images no file holds any more removed.

Every listed file ends in exactly one outcome; the run checks
``inputs == ingested + duplicate + quarantined + skipped`` and fails loudly if not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.config import ImageIngestConfig, Profile, TaskFault
from lakeloop.errors import ConfigError, JobFailed
from lakeloop.ingest.image_files import FILE_KEYS, list_source_files, local_refusals, read_files
from lakeloop.ingest.image_sources import FOLLOWED, follow_source
from lakeloop.ingest.image_rows import (  # noqa: F401 - re-exported: importable from here as before
    FORGOTTEN_REASON,
    HIDDEN_REASON,
    LEDGER_KEYS,
    OUTCOME_DUPLICATE,
    OUTCOME_INGESTED,
    OUTCOME_QUARANTINED,
    OUTCOME_SKIPPED,
    OUTCOMES,
    QUARANTINE_KEYS,
    attach_labels,
    bronze_rows,
    label_from_parent_folder,
    ledger_rows,
    ledger_schema,
    quarantine_rows,
    relative_path,
    skipped_ledger_rows,
)
from lakeloop.io import delta, hadoop
from lakeloop.io.batches import arrow_batch_settings
from lakeloop.io.lakefs import LakeFiles
from lakeloop.io.tombstones import forgotten_images
from lakeloop.layout import LakeLayout
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

CHECK_SCHEMA = "ok boolean, format string, width int, height int, mode string, error string, reason string"
# Refused files shown on the run page, and the largest whose bytes are read for a thumbnail.
SAMPLES = 12
SAMPLE_MAX_BYTES = 8 * 1024 * 1024


def select_unseen(listing: "DataFrame", ledger: "DataFrame") -> "DataFrame":
    """Files of ``listing`` whose (path, length, modification_time) the ledger does not hold."""
    return listing.join(ledger.select(*LEDGER_KEYS), on=list(LEDGER_KEYS), how="left_anti")


def _inspect_udf(max_pixels: int, fault: TaskFault | None = None, jpeg_draft: bool = True):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(CHECK_SCHEMA)
    def inspect(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from lakeloop.faults import fail_if_chosen
        from lakeloop.ingest.image_checks import inspect_image

        fail_if_chosen(fault, "ingest_images")
        for contents in batches:
            checks = [inspect_image(c, max_pixels, jpeg_draft) for c in contents]
            yield pd.DataFrame(
                {
                    "ok": [c.ok for c in checks],
                    "format": [c.format for c in checks],
                    "width": pd.array([c.width for c in checks], dtype="Int32"),
                    "height": pd.array([c.height for c in checks], dtype="Int32"),
                    "mode": [c.mode for c in checks],
                    "error": [c.error for c in checks],
                    "reason": [c.reason for c in checks],
                }
            )

    return inspect


def inspect_files(files: "DataFrame", source_root: str, max_pixels: int,
                  fault: TaskFault | None = None, jpeg_draft: bool = True) -> "DataFrame":
    """Add ``image_id`` (sha256 hex of the bytes), ``relative_path`` and Pillow's ``check`` struct
    (``fault``: the reliability tests' injected task failure, :mod:`lakeloop.faults`)."""
    from pyspark.sql import functions as F

    return files.withColumn("image_id", F.sha2(F.col("content"), 256)).withColumn(
        "relative_path", relative_path(F.col("path"), source_root)
    ).withColumn("check", _inspect_udf(max_pixels, fault, jpeg_draft)(F.col("content")))


def _reference_udf(max_pixels: int, hadoop_conf: dict[str, str], jpeg_draft: bool = True):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(f"image_id string, {CHECK_SCHEMA}")
    def inspect(paths: pd.Series, lengths: pd.Series) -> pd.DataFrame:
        from lakeloop.io.lakefs import LakeFiles

        files = LakeFiles(hadoop_conf)
        rows = [_hash_and_inspect(files, path, int(length), max_pixels, jpeg_draft)
                for path, length in zip(paths, lengths)]
        return pd.DataFrame(rows, columns=["image_id", "ok", "format", "width", "height", "mode", "error", "reason"]
                            ).astype({"width": "Int32", "height": "Int32"})

    return inspect


def _hash_and_inspect(files: LakeFiles, path: str, length: int, max_pixels: int, jpeg_draft: bool = True) -> tuple:
    """(sha256, the check's fields) of one file, read once from its source in 8 MiB chunks into a
    local spool (memory up to 64 MiB, then a temporary file) while hashing, then checked by Pillow
    from that copy, so the digest and the check are of the same bytes. All None when the file
    vanished or its size is not the listed one (changed since listing: the next run takes it).
    Other read errors of the source are raised: the task fails and Spark tries it again, rather
    than a file refused as corrupt for a network error."""
    import hashlib
    import tempfile

    from lakeloop.ingest.image_checks import inspect_image_stream

    fs, inner = files.filesystem(path)
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as copy:
        try:
            with fs.open_input_stream(inner) as stream:
                while chunk := stream.read(8 * 1024 * 1024):
                    digest.update(chunk)
                    copy.write(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return (None,) * 8
        if size != length:
            return (None,) * 8
        copy.seek(0)
        check = inspect_image_stream(copy, size, max_pixels, jpeg_draft)
    return (digest.hexdigest(), check.ok, check.format, check.width, check.height, check.mode, check.error,
            check.reason)


def inspect_references(files: "DataFrame", source_root: str, max_pixels: int, lake_files: LakeFiles,
                       jpeg_draft: bool = True) -> "DataFrame":
    """:func:`inspect_files` rows of files ingested by reference (over ``ingest_images.content_max_bytes``):
    the sha256 and Pillow's check come from reading each file at its source in chunks, and
    ``content`` stays null, so no large value passes through Spark or into Delta. Files gone or
    resized since listing are left out (the next run takes them)."""
    from pyspark.sql import functions as F

    # Nondeterministic: Spark then evaluates it once per row, never again for the filter below (a
    # second read could find the file gone and let a row without an image_id through).
    facts = _reference_udf(max_pixels, dict(lake_files.hadoop_conf), jpeg_draft).asNondeterministic()(
        F.col("path"), F.col("length"))
    check = F.struct(*[F.col(f"_ref.{name}").alias(name) for name in
                       ("ok", "format", "width", "height", "mode", "error", "reason")])
    return files.select(*FILE_KEYS, facts.alias("_ref")).where(F.col("_ref.image_id").isNotNull()).select(
        *FILE_KEYS, F.lit(None).cast("binary").alias("content"), F.col("_ref.image_id").alias("image_id"),
        relative_path(F.col("path"), source_root).alias("relative_path"), check.alias("check"))


def refused_unread(files: "DataFrame", source_root: str, max_file_bytes: int) -> "DataFrame":
    """Files over ``max_file_bytes`` as :func:`inspect_files` rows: refused (``too_large``) unread."""
    from pyspark.sql import functions as F

    error = F.format_string(
        f"file too large: %,d bytes is more than ingest_images.max_file_bytes = {max_file_bytes:,} (Spark reads "
        f"at most 2 GiB = 2,147,483,647 bytes a file); split or re-encode it at its origin, or keep it out of "
        f"the source folder", F.col("length"))
    return _refused_rows(files, source_root, error, "too_large")


def refused_locally(files: "DataFrame", refusals: dict[str, tuple[str, str]], source_root: str) -> "DataFrame":
    """The files of ``files`` found unreadable before reading (``refusals``: path -> (reason,
    message), from :func:`lakeloop.ingest.image_files.local_refusals`) as :func:`inspect_files`
    rows, refused unread."""
    from pyspark.sql import functions as F

    def lookup(index: int) -> "Column":
        pairs = [F.lit(x) for path, refusal in refusals.items() for x in (path, refusal[index])]
        return F.element_at(F.create_map(*pairs), F.col("path"))

    return _refused_rows(files.where(F.col("path").isin(list(refusals))), source_root, lookup(1), lookup(0))


def _refused_rows(files: "DataFrame", source_root: str, error: "Column", reason: "str | Column") -> "DataFrame":
    from pyspark.sql import functions as F

    check = F.struct(F.lit(False).alias("ok"), *[F.lit(None).cast(t).alias(n) for n, t in (
        ("format", "string"), ("width", "int"), ("height", "int"), ("mode", "string"))],
        error.alias("error"), (F.lit(reason) if isinstance(reason, str) else reason).alias("reason"))
    return files.select(*FILE_KEYS, F.lit(None).cast("binary").alias("content"),
                        F.lit(None).cast("string").alias("image_id"),
                        relative_path(F.col("path"), source_root).alias("relative_path"), check.alias("check"))


@dataclass
class _Listing:
    """What the listing step found: every matching file, those the ledger has not seen, and how
    the unseen ones split: skipped for a hidden name, too large to read, to read."""

    source_root: str
    listed: "DataFrame"
    unseen: "DataFrame"
    n_listed: int
    n_unseen: int
    n_skipped: int
    n_too_large: int
    n_spark_hides: int
    n_by_reference: int = 0
    partial: bool = False  # ``listed`` is some files of the folder (a micro-batch), not all of them
    largest_read: int = 0  # bytes of the largest unseen file whose content is read into bronze


def _skip(cfg: ImageIngestConfig) -> "Column":
    from pyspark.sql import functions as F

    return F.col("dot_name") & F.lit(cfg.hidden_files == "skip")


def _by_reference(cfg: ImageIngestConfig) -> "Column":
    """Files ingested by reference: larger than ``content_max_bytes``, not so large they are refused."""
    from pyspark.sql import functions as F

    return (F.col("length") > cfg.content_max_bytes) & (F.col("length") <= cfg.max_file_bytes)


def _list_unseen(spark: "SparkSession", cfg: ImageIngestConfig, ledger_uri: str, files: LakeFiles) -> _Listing:
    """List the source and keep the files the ledger has not seen (both persisted), counting in
    one pass how the unseen ones split."""
    source_root = hadoop.qualify(spark, cfg.source)
    listed = list_source_files(spark, source_root, cfg.extensions, files)
    return unseen_files(spark, cfg, ledger_uri, source_root, listed)


def unseen_files(spark: "SparkSession", cfg: ImageIngestConfig, ledger_uri: str, source_root: str,
                 listed: "DataFrame", partial: bool = False) -> _Listing:
    """The files of ``listed`` (a persisted listing: path, length, modification_time,
    spark_readable, dot_name) that the ledger has not seen, persisted, and how they split."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    seen = delta.read_pinned_or_empty(spark, ledger_uri, ledger_schema())
    unseen = select_unseen(listed, seen).persist(StorageLevel.MEMORY_AND_DISK)
    taken = ~_skip(cfg)
    counts = unseen.agg(
        F.count(F.lit(1)).alias("unseen"), F.count(F.when(~taken, 1)).alias("skipped"),
        F.count(F.when(taken & (F.col("length") > cfg.max_file_bytes), 1)).alias("too_large"),
        F.count(F.when(taken & ~F.col("spark_readable"), 1)).alias("spark_hides"),
        F.count(F.when(taken & _by_reference(cfg), 1)).alias("by_reference"),
        F.max(F.when(taken & (F.col("length") <= F.lit(min(cfg.max_file_bytes, cfg.content_max_bytes))),
                     F.col("length"))).alias("largest_read"),
    ).first()
    return _Listing(source_root, listed, unseen, listed.count(), counts["unseen"], counts["skipped"],
                    counts["too_large"], counts["spark_hides"], counts["by_reference"], partial,
                    int(counts["largest_read"] or 0))


def _check_files(spark: "SparkSession", cfg: ImageIngestConfig, listing: _Listing, files: LakeFiles,
                 fault: TaskFault | None) -> "DataFrame":
    """Read, inspect and label the unseen files that are not skipped (the too large ones refused
    unread); held (:func:`lakeloop.io.delta.held`: three MERGEs write it; free it with
    :func:`lakeloop.io.delta.release`)."""
    from pyspark.sql import functions as F

    taken = listing.unseen.where(~_skip(cfg))
    # A local file no read can succeed on (a link to nothing, no read permission) would fail
    # Spark's whole scan: refused unread instead, saying why.
    refusals = local_refusals([r.path for r in taken.select("path").collect()]) \
        if listing.source_root.startswith("file:") else {}
    refused = refused_locally(taken, refusals, listing.source_root) if refusals else None
    taken = taken.where(~F.col("path").isin(list(refusals)))
    labels = delta.read_table(spark, cfg.labels_table) if cfg.label_from == "labels_table" else None
    # Most of the folder is new (a first run): scan it whole rather than path by path, unless
    # the scan would meet a file it may not read.
    unreadable = any(reason == "unreadable" for reason, _ in refusals.values())
    whole = not listing.partial and not unreadable and listing.n_unseen * 2 >= listing.n_listed
    read = read_files(spark, taken, listing.source_root if whole else None, cfg.extensions,
                      min(cfg.max_file_bytes, cfg.content_max_bytes), files if listing.n_spark_hides else None,
                      cfg.max_batch_bytes)
    inspected = inspect_files(read, listing.source_root, cfg.max_pixels, fault, cfg.jpeg_draft)
    if listing.n_by_reference:
        inspected = inspected.unionByName(inspect_references(
            taken.where(_by_reference(cfg)), listing.source_root, cfg.max_pixels, files, cfg.jpeg_draft))
    if listing.n_too_large:
        inspected = inspected.unionByName(refused_unread(
            taken.where(F.col("length") > cfg.max_file_bytes), listing.source_root, cfg.max_file_bytes))
    if refused is not None:
        inspected = inspected.unionByName(refused)
    return delta.held(attach_labels(inspected, cfg, labels), on_disk=True)


def _write_outcomes(spark: "SparkSession", checked: "DataFrame", skipped: "DataFrame", cfg: ImageIngestConfig,
                    lake: LakeLayout, source_root: str, report: RunReport, n_refused: int,
                    erased: "DataFrame | None" = None) -> dict[str, int]:
    """Bronze, then quarantine (when the run refused a file, or to create it), then the ledger (each an
    idempotent MERGE; ``erased`` files, whose images were forgotten, are skipped); returns files per
    outcome."""
    with report.timed("write_bronze"):
        report.details["bronze_merge"] = delta.merge_insert_new(
            spark, bronze_rows(checked, report.run_id), lake.bronze_images, ["image_id"],
            properties=delta.CHANGE_FEED_ON)  # build_features reads only the rows each run adds
    with report.timed("write_quarantine"):
        if n_refused or not delta.is_delta_table(spark, lake.quarantine_images):
            delta.merge_insert_new(spark, quarantine_rows(checked, report.run_id, cfg.quarantine_content_max_bytes),
                                   lake.quarantine_images, list(QUARANTINE_KEYS), add_columns=True)
    with report.timed("write_ledger"):
        bronze_now = delta.read_table(spark, lake.bronze_images, delta.table_version(spark, lake.bronze_images))
        outcomes = ledger_rows(checked, bronze_now, report.run_id).unionByName(
            skipped_ledger_rows(skipped, source_root, report.run_id))
        if erased is not None:
            outcomes = outcomes.unionByName(skipped_ledger_rows(erased, source_root, report.run_id, FORGOTTEN_REASON))
        outcomes = delta.held(outcomes)
        try:
            by_outcome = {r["outcome"]: r["count"] for r in outcomes.groupBy("outcome").count().collect()}
            # One row per path: a file copied over itself (same bytes, new time) updates its row.
            delta.merge_upsert(spark, outcomes, lake.images_ledger, ["path"], ["length", "modification_time"],
                               add_columns=True)
        finally:
            delta.release(outcomes)
    return {k: by_outcome.get(k, 0) for k in OUTCOMES}


def _tally_checks(checked: "DataFrame") -> dict[str, int]:
    """Files read, refused and accepted without a label, in one pass over the checked files."""
    from pyspark.sql import functions as F

    ok = F.col("check.ok")
    return checked.agg(F.count(F.lit(1)).alias("read"), F.count(F.when(~ok, 1)).alias("refused"),
                       F.count(F.when(ok & F.col("label").isNull(), 1)).alias("unlabeled")).first().asDict()


def _summarise_checks(checked: "DataFrame", tally: dict[str, int], report: RunReport) -> None:
    """Warn about unlabelled images; count the quarantine reasons by class (they add up to the
    quarantined count)."""
    from pyspark.sql import functions as F

    unlabeled = tally["unlabeled"]
    reasons = checked.where(~F.col("check.ok")).groupBy(F.col("check.reason").alias("reason")).count().collect() \
        if tally["refused"] else []
    if unlabeled:
        report.warnings.append(f"{unlabeled} accepted image(s) have no label (file directly in the source root, "
                               f"or missing from the labels table)")
    histogram = report.details.setdefault("quarantine_reasons", {})
    for row in reasons:
        histogram[row["reason"]] = histogram.get(row["reason"], 0) + row["count"]
    if reasons:
        report.details["quarantine_samples"] = quarantine_samples(checked.where(~F.col("check.ok")).select(
            "path", "length", "content", F.col("check.reason").alias("reason"), F.col("check.error").alias("error")))


def quarantine_samples(refused: "DataFrame", limit: int = SAMPLES) -> list[dict[str, Any]]:
    """The first ``limit`` refused files by path, for the run page: path, reason, message and a
    thumbnail (PNG, base64) where the bytes decode; files over :data:`SAMPLE_MAX_BYTES` are not read."""
    import base64

    from pyspark.sql import functions as F

    from lakeloop.figures import thumbnail_png

    rows = refused.select("path", "reason", "error", F.when(F.col("length") <= SAMPLE_MAX_BYTES, F.col("content"))
                          .alias("content")).orderBy("path").limit(limit).collect()
    samples = []
    for row in rows:
        thumb = thumbnail_png(row["content"])
        samples.append({"path": row["path"], "reason": row["reason"], "error": (row["error"] or "")[:300],
                        "thumbnail_png": base64.b64encode(thumb).decode("ascii") if thumb else None})
    return samples


def ingest_unseen(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, listing: _Listing,
                  files: LakeFiles, report: RunReport,
                  retry: str = "the next run will take them", fault: TaskFault | None = None) -> dict[str, int]:
    """Check and write the unseen files; returns files per outcome, after checking they add up.
    ``retry`` says what takes a file that changed or vanished between listing and reading. The
    checks' Python workers get at most ``cfg.max_batch_bytes`` of file content at a time."""
    settings = {**arrow_batch_settings(None, cfg.max_batch_bytes), **_row_group_cap(listing, cfg)}
    with delta.scoped_conf(spark, settings):
        return _ingest_unseen(spark, cfg, lake, listing, files, report, retry, fault)


# Parquet's writer (parquet-mr) measures a row group's size only every 100 rows at first: rows of
# 5 MB photos make a row group of 500 MB before it looks, buffered and copied in the executor's heap.
ROW_GROUP_ROWS = "parquet.block.row.count.limit"


def _row_group_cap(listing: _Listing, cfg: ImageIngestConfig) -> dict[str, str]:
    """Session settings that keep a row group of bronze's file bytes near ``max_batch_bytes``: at most
    that many bytes over the largest file this run reads, in rows (Spark hands SQL settings to the
    Parquet writers of Delta's commands)."""
    if not listing.largest_read:
        return {}
    return {ROW_GROUP_ROWS: str(max(1, cfg.max_batch_bytes // listing.largest_read))}


def _ingest_unseen(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, listing: _Listing,
                   files: LakeFiles, report: RunReport, retry: str, fault: TaskFault | None) -> dict[str, int]:
    skipped = listing.unseen.where(_skip(cfg))
    n_skipped = listing.n_skipped
    if listing.n_by_reference:  # added up over a stream's micro-batches
        report.details["by_reference_files"] = report.details.get("by_reference_files", 0) + listing.n_by_reference
    with report.timed("decode"):
        checked = _check_files(spark, cfg, listing, files, fault)
    try:
        with report.timed("decode"):
            checked, erased, n_erased = _without_forgotten(spark, checked, lake)
            tally = _tally_checks(checked)
            n_read = tally["read"] + n_erased
        if n_read + n_skipped != listing.n_unseen:
            report.warnings.append(
                f"{listing.n_unseen - n_read - n_skipped} listed file(s) changed or vanished before they were read; "
                f"they are not in the ledger and {retry}"
            )
        outcomes = _write_outcomes(spark, checked, skipped, cfg, lake, listing.source_root, report, tally["refused"],
                                   erased)
        with report.timed("summarize"):
            _summarise_checks(checked, tally, report)
    finally:
        delta.release(checked)
    if sum(outcomes.values()) != n_read + n_skipped:
        raise JobFailed(
            f"accounting mismatch in run {report.run_id}: took {n_read + n_skipped} files but ingested "
            f"{outcomes[OUTCOME_INGESTED]} + duplicate {outcomes[OUTCOME_DUPLICATE]} + quarantined "
            f"{outcomes[OUTCOME_QUARANTINED]} + skipped {outcomes[OUTCOME_SKIPPED]}; see ledger {lake.images_ledger}"
        )
    if n_skipped:
        report.warnings.append(f"{n_skipped} file(s) under names starting with '.' were skipped "
                               f"(ingest_images.hidden_files = skip); the ledger lists them")
    if n_erased:
        report.counts["forgotten"] = report.counts.get("forgotten", 0) + n_erased
        report.warnings.append(f"{n_erased} file(s) hold images erased with lakeloop forget and were skipped "
                               f"(ledger reason {FORGOTTEN_REASON}); remove them from the source")
    return outcomes


def _without_forgotten(spark: "SparkSession", checked: "DataFrame", lake: LakeLayout
                       ) -> tuple["DataFrame", "DataFrame | None", int]:
    """The checked files less those whose bytes are an image erased with ``lakeloop forget`` (their
    tombstones, :mod:`lakeloop.io.tombstones`); those files' (path, length, time); their number."""
    from pyspark.sql import functions as F

    forgotten = forgotten_images(spark, lake)
    if forgotten.isEmpty():
        return checked, None, 0
    erased = checked.join(F.broadcast(forgotten), "image_id", "left_semi").select(*FILE_KEYS)
    n_erased = erased.count()
    if not n_erased:
        return checked, None, 0
    return checked.join(F.broadcast(forgotten), "image_id", "left_anti"), erased, n_erased


def start_ingestion(profile: Profile, report: RunReport | None) -> tuple[RunReport, LakeLayout, LakeFiles]:
    """The run's report (with its source and outputs), the lake, and the source's storage access.

    Raises
    ------
    ConfigError
        no source configured.
    """
    if not profile.ingest_images.source:
        raise ConfigError("ingest_images.source is not set; set it in the profile or pass --source URI")
    report = report or RunReport.start("ingest_images")
    lake = LakeLayout(profile.lake_root)
    report.details["source"] = profile.ingest_images.source
    report.outputs.update(bronze=lake.bronze_images, quarantine=lake.quarantine_images, ledger=lake.images_ledger)
    return report, lake, LakeFiles(profile.hadoop_conf())


def ingest_images(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Ingest ``profile.ingest_images.source`` into bronze/quarantine; return the run report.

    Reads settings ``ingest_images.*`` and ``lake_root``; reaches the source without Spark too
    (to find the files Spark's listing hides) with the profile's storage settings. Idempotent:
    files already in the ledger are skipped without reading their bytes. Rows written carry
    ``report.run_id``.

    Raises
    ------
    ConfigError
        no source configured, or a labels table without the configured columns.
    SourceError
        the source folder does not exist.
    JobFailed
        the per-file accounting does not add up (a bug; nothing is hidden).
    """
    cfg = profile.ingest_images
    report, lake, files = start_ingestion(profile, report)
    started = time.perf_counter()
    had_bronze = delta.is_delta_table(spark, lake.bronze_images)
    with report.timed("list"):
        listing = _list_unseen(spark, cfg, lake.images_ledger, files)
    try:
        report.counts.update(files_listed=listing.n_listed, files_already_seen=listing.n_listed - listing.n_unseen,
                             inputs=listing.n_unseen)
        outcomes = dict.fromkeys(OUTCOMES, 0)
        if listing.n_unseen:
            outcomes = ingest_unseen(spark, cfg, lake, listing, files, report, fault=profile.faults.fail_task)
        if listing.n_unseen < listing.n_listed or outcomes[OUTCOME_DUPLICATE] or had_bronze:
            # (A first run whose every file held other bytes: each image is where and as bronze has it.)
            follow_source(spark, cfg, lake, listing.listed, listing.n_listed, listing.source_root, report)
        else:
            report.counts.update(dict.fromkeys(FOLLOWED, 0))
    finally:
        listing.unseen.unpersist()
        listing.listed.unpersist()
    elapsed = time.perf_counter() - started
    report.counts.update(ingested=outcomes[OUTCOME_INGESTED], duplicates=outcomes[OUTCOME_DUPLICATE],
                         quarantined=outcomes[OUTCOME_QUARANTINED], skipped=outcomes[OUTCOME_SKIPPED])
    report.durations_s["total"] = round(elapsed, 3)
    report.throughput["files_per_s"] = round(listing.n_unseen / elapsed, 1) if elapsed > 0 else 0.0
    return report

"""Image ingestion: a folder tree at any Hadoop URI -> Delta ``bronze.images`` + ``quarantine.images``.

Steps (each a function tests and notebooks can call):

1. :func:`list_source_files` lists image files (no bytes read) with Spark's binaryFile source.
2. :func:`select_unseen` keeps files whose (path, length, modification time) is not in the
   ingestion ledger, so a rerun over an unchanged folder reads no bytes at all.
3. :func:`read_files` reads just those files' bytes, again through binaryFile.
4. :func:`inspect_files` decodes each file with Pillow inside Spark (a pandas UDF) and
   adds ``image_id`` = sha256 of the bytes.
5. :func:`ingest_images` writes: new images MERGEd into bronze on ``image_id`` (duplicate
   content stored once), refused files MERGEd into quarantine, then every file into the
   ledger with its outcome (``ingested``, ``duplicate`` or ``quarantined``). All writes are
   MERGEs on keys, so a run killed anywhere and started again ends as one clean run.

Every listed file ends in exactly one outcome; the run checks
``inputs == ingested + duplicate + quarantined`` and fails loudly if not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.config import ImageIngestConfig, Profile
from lakeloop.errors import ConfigError, JobFailed, SourceError
from lakeloop.io import delta, hadoop
from lakeloop.layout import LakeLayout
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

LEDGER_KEYS = ("path", "length", "modification_time")

OUTCOME_INGESTED = "ingested"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_QUARANTINED = "quarantined"

CHECK_SCHEMA = "ok boolean, format string, width int, height int, mode string, error string"


def _extension_glob(extensions: tuple[str, ...]) -> str:
    """``("png", "jpg")`` -> ``*.{[pP][nN][gG],[jJ][pP][gG]}``: Hadoop globs are case-sensitive.

    The profile checked the entries (letters and digits, an optional leading dot)."""
    parts = []
    for ext in extensions:
        ext = ext.lower().lstrip(".")
        parts.append("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in ext))
    return "*.{" + ",".join(parts) + "}"


def _escape_glob(path: str) -> str:
    # binaryFile.load() treats its paths as globs; a file named "a[1].png" must be read literally.
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def list_source_files(spark: "SparkSession", source: str, extensions: tuple[str, ...]) -> "DataFrame":
    """All files under ``source`` (recursively) whose ending is in ``extensions``, any case.

    Columns: ``path``, ``length``, ``modification_time``. No file content is read. The
    result is persisted; unpersist it when done.

    Raises
    ------
    SourceError
        if ``source`` does not exist.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if not hadoop.exists(spark, source):
        raise SourceError(
            f"image source {source} does not exist; check ingest_images.source "
            f"(or pass --source URI) and that the folder is reachable from Spark"
        )
    listing = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", _extension_glob(extensions))
        .load(source)
    )
    scanned = listing.select("path", "length", F.col("modificationTime").alias("modification_time"))
    # Cached: the caller counts and joins it again, and a listing of many files is not free.
    scanned = scanned.persist(StorageLevel.MEMORY_AND_DISK)
    # Spark's file scans skip zero-length files, but an empty upload is an input like any
    # other and must reach quarantine: find them in the file index and add them back.
    indexed = listing.inputFiles()
    if len(indexed) == scanned.count():
        return scanned
    shown = {r.path for r in scanned.select("path").collect()}
    missing = [uri for uri in indexed if _scan_path_form(uri) not in shown]
    empty = hadoop.empty_files(spark, missing)
    return scanned.unionByName(spark.createDataFrame(empty, scanned.schema)) if empty else scanned


def _scan_path_form(uri: str) -> str:
    """``file:///a%20b/x.png`` (file index form) -> ``file:/a b/x.png`` (binaryFile's ``path`` form)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    if parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"
    return f"{parts.scheme}:{unquote(parts.path)}"


def select_unseen(listing: "DataFrame", ledger: "DataFrame") -> "DataFrame":
    """Files of ``listing`` whose (path, length, modification_time) the ledger does not hold."""
    return listing.join(ledger.select(*LEDGER_KEYS), on=list(LEDGER_KEYS), how="left_anti")


def read_files(
    spark: "SparkSession", files: "DataFrame", source: str | None = None, extensions: tuple[str, ...] = ()
) -> "DataFrame":
    """Bytes of the listed ``files`` via binaryFile: ``path, length, modification_time, content``.

    Only (path, length, modification_time) seen at listing time are kept: a file rewritten
    since is left for the next run. Empty files are not read (Spark's scan skips them);
    they get empty ``content``. With ``source`` (and its ``extensions``) the whole folder
    is scanned and filtered, which is much faster than handing Spark thousands of single
    paths to index; without it, exactly the listed paths are read (an incremental run).
    """
    from pyspark.sql import functions as F

    empty = files.where("length = 0").select(*LEDGER_KEYS, F.lit(bytearray()).alias("content"))
    if source is not None:
        reader = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", _extension_glob(extensions))
            .load(source)
        )
    else:
        paths = [row.path for row in files.where("length > 0").select("path").collect()]
        if not paths:
            return empty
        reader = spark.read.format("binaryFile").load([_escape_glob(p) for p in paths])
    read = reader.select(
        "path", "length", F.col("modificationTime").alias("modification_time"), "content"
    ).join(files.select(*LEDGER_KEYS), on=list(LEDGER_KEYS), how="left_semi")
    return read.unionByName(empty)


def _inspect_udf(max_pixels: int):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(CHECK_SCHEMA)
    def inspect(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from lakeloop.ingest.image_checks import inspect_image

        for contents in batches:
            checks = [inspect_image(c, max_pixels) for c in contents]
            yield pd.DataFrame(
                {
                    "ok": [c.ok for c in checks],
                    "format": [c.format for c in checks],
                    "width": pd.array([c.width for c in checks], dtype="Int32"),
                    "height": pd.array([c.height for c in checks], dtype="Int32"),
                    "mode": [c.mode for c in checks],
                    "error": [c.error for c in checks],
                }
            )

    return inspect


def relative_path(path: "Column", source_root: str) -> "Column":
    """``path`` relative to the qualified source root (the key a labels table joins on)."""
    from pyspark.sql import functions as F

    prefix = source_root.rstrip("/") + "/"
    return F.when(path.startswith(prefix), F.substring(path, len(prefix) + 1, 1 << 30)).otherwise(path)


def inspect_files(files: "DataFrame", source_root: str, max_pixels: int) -> "DataFrame":
    """Add ``image_id`` (sha256 hex of the bytes), ``relative_path`` and Pillow's ``check`` struct."""
    from pyspark.sql import functions as F

    return files.withColumn("image_id", F.sha2(F.col("content"), 256)).withColumn(
        "relative_path", relative_path(F.col("path"), source_root)
    ).withColumn("check", _inspect_udf(max_pixels)(F.col("content")))


def label_from_parent_folder(relative: "Column") -> "Column":
    """Name of the folder holding the file; null for files directly in the source root."""
    from pyspark.sql import functions as F

    parts = F.split(relative, "/")
    return F.when(F.size(parts) >= 2, F.element_at(parts, -2)).otherwise(F.lit(None).cast("string"))


def attach_labels(
    inspected: "DataFrame", cfg: ImageIngestConfig, labels: "DataFrame | None" = None
) -> "DataFrame":
    """Add ``label`` by the configured rule (parent folder, a labels table keyed by relative path, or none)."""
    from pyspark.sql import functions as F

    if cfg.label_from == "parent_folder":
        return inspected.withColumn("label", label_from_parent_folder(F.col("relative_path")))
    if cfg.label_from == "none":
        return inspected.withColumn("label", F.lit(None).cast("string"))
    if labels is None:
        raise ConfigError("ingest_images.label_from = labels_table: pass the labels table's DataFrame "
                          "(ingest_images reads ingest_images.labels_table)")
    for column in (cfg.labels_path_column, cfg.labels_label_column):
        if column not in labels.columns:
            raise ConfigError(
                f"labels table {cfg.labels_table} has no column {column!r} (it has {', '.join(labels.columns)}); "
                f"set ingest_images.labels_path_column / labels_label_column"
            )
    table = labels.select(
        F.col(cfg.labels_path_column).cast("string").alias("_label_path"),
        F.col(cfg.labels_label_column).cast("string").alias("label"),
    ).dropDuplicates(["_label_path"])
    return inspected.join(table, inspected["relative_path"] == table["_label_path"], "left").drop("_label_path")


def bronze_rows(checked: "DataFrame", run_id: str) -> "DataFrame":
    """One row per new image content: the accepted files, first path (by name) per ``image_id``."""
    from pyspark.sql import functions as F

    accepted = checked.where(F.col("check.ok"))
    # Pick the first path per content on the narrow (image_id, path) columns, then keep those
    # rows with a broadcast semi-join, so the image bytes are never shuffled.
    first = accepted.groupBy("image_id").agg(F.min("path").alias("path"))
    return (
        accepted.join(F.broadcast(first), ["image_id", "path"], "left_semi")
        .select(
            "image_id",
            "path",
            "relative_path",
            "label",
            F.col("check.format").alias("format"),
            F.col("check.width").alias("width"),
            F.col("check.height").alias("height"),
            F.col("check.mode").alias("mode"),
            "content",
            F.col("length").alias("size_bytes"),
            F.col("modification_time").alias("source_mtime"),
            F.current_timestamp().alias("ingested_at"),
            F.lit(run_id).alias("run_id"),
        )
    )


def quarantine_rows(checked: "DataFrame", run_id: str, content_max_bytes: int) -> "DataFrame":
    """The refused files with their reason; bytes kept when at most ``content_max_bytes``."""
    from pyspark.sql import functions as F

    return checked.where(~F.col("check.ok")).select(
        "path",
        "length",
        "modification_time",
        F.when(F.col("length") <= content_max_bytes, F.col("content")).alias("content"),
        F.col("check.error").alias("error"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def ledger_rows(checked: "DataFrame", bronze: "DataFrame", run_id: str) -> "DataFrame":
    """Each file's outcome. A file is ``ingested`` when it is the one bronze holds for its content
    (same path and mtime), so a rerun after a crash names the same files as a clean run would."""
    from pyspark.sql import functions as F

    canonical = bronze.select(
        "image_id", F.col("path").alias("_b_path"), F.col("source_mtime").alias("_b_mtime")
    )
    joined = checked.join(canonical, "image_id", "left")
    outcome = (
        F.when(~F.col("check.ok"), F.lit(OUTCOME_QUARANTINED))
        .when((F.col("_b_path") == F.col("path")) & (F.col("_b_mtime") == F.col("modification_time")),
              F.lit(OUTCOME_INGESTED))
        .otherwise(F.lit(OUTCOME_DUPLICATE))
    )
    return joined.select(
        "path",
        "length",
        "modification_time",
        "relative_path",
        outcome.alias("outcome"),
        F.when(F.col("check.ok"), F.col("image_id")).alias("image_id"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("seen_at"),
    )


def _ledger_schema():
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    return StructType(
        [
            StructField("path", StringType()),
            StructField("length", LongType()),
            StructField("modification_time", TimestampType()),
            StructField("relative_path", StringType()),
            StructField("outcome", StringType()),
            StructField("image_id", StringType()),
            StructField("run_id", StringType()),
            StructField("seen_at", TimestampType()),
        ]
    )


@dataclass
class _Listing:
    """What the listing step found: every matching file, and those the ledger has not seen."""

    source_root: str
    listed: "DataFrame"
    unseen: "DataFrame"
    n_listed: int
    n_unseen: int


def _list_unseen(spark: "SparkSession", cfg: ImageIngestConfig, ledger_uri: str) -> _Listing:
    """List the source and keep the files the ledger has not seen (both persisted)."""
    from pyspark import StorageLevel

    source_root = hadoop.qualify(spark, cfg.source)
    listed = list_source_files(spark, source_root, cfg.extensions)
    seen = delta.read_pinned_or_empty(spark, ledger_uri, _ledger_schema())
    unseen = select_unseen(listed, seen).persist(StorageLevel.MEMORY_AND_DISK)
    return _Listing(source_root, listed, unseen, listed.count(), unseen.count())


def _check_files(spark: "SparkSession", cfg: ImageIngestConfig, listing: _Listing) -> "DataFrame":
    """Read, inspect and label the unseen files; persisted, since three writes use it."""
    from pyspark import StorageLevel

    labels = delta.read_table(spark, cfg.labels_table) if cfg.label_from == "labels_table" else None
    # Most of the folder is new (a first run): scan it whole rather than path by path.
    whole = listing.n_unseen * 2 >= listing.n_listed
    files = read_files(spark, listing.unseen, listing.source_root if whole else None, cfg.extensions)
    checked = attach_labels(inspect_files(files, listing.source_root, cfg.max_pixels), cfg, labels)
    return checked.persist(StorageLevel.MEMORY_AND_DISK)


def _write_outcomes(spark: "SparkSession", checked: "DataFrame", cfg: ImageIngestConfig, lake: LakeLayout,
                    report: RunReport) -> dict[str, int]:
    """Bronze, then quarantine, then the ledger (each an idempotent MERGE); returns files per outcome."""
    from pyspark import StorageLevel

    with report.timed("write_bronze"):
        report.details["bronze_merge"] = delta.merge_insert_new(
            spark, bronze_rows(checked, report.run_id), lake.bronze_images, ["image_id"])
    with report.timed("write_quarantine"):
        delta.merge_insert_new(spark, quarantine_rows(checked, report.run_id, cfg.quarantine_content_max_bytes),
                               lake.quarantine_images, list(LEDGER_KEYS))
    with report.timed("write_ledger"):
        bronze_now = delta.read_table(spark, lake.bronze_images, delta.table_version(spark, lake.bronze_images))
        outcomes = ledger_rows(checked, bronze_now, report.run_id).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            by_outcome = {r["outcome"]: r["count"] for r in outcomes.groupBy("outcome").count().collect()}
            delta.merge_insert_new(spark, outcomes, lake.images_ledger, list(LEDGER_KEYS))
        finally:
            outcomes.unpersist()
    return {k: by_outcome.get(k, 0) for k in (OUTCOME_INGESTED, OUTCOME_DUPLICATE, OUTCOME_QUARANTINED)}


def _summarise_checks(checked: "DataFrame", report: RunReport) -> None:
    """Warn about unlabelled images; count the quarantine reasons."""
    from pyspark.sql import functions as F

    unlabeled = checked.where(F.col("check.ok") & F.col("label").isNull()).count()
    reasons = (
        checked.where(~F.col("check.ok"))
        .groupBy(F.regexp_extract("check.error", r"^([^:(]+)", 1).alias("reason"))
        .count()
        .collect()
    )
    if unlabeled:
        report.warnings.append(f"{unlabeled} accepted image(s) have no label (file directly in the source root, "
                               f"or missing from the labels table)")
    for reason_row in reasons:
        report.details.setdefault("quarantine_reasons", {})[reason_row["reason"].strip()] = reason_row["count"]


def _ingest_unseen(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, listing: _Listing,
                   report: RunReport) -> dict[str, int]:
    """Check and write the unseen files; returns files per outcome, after checking they add up."""
    with report.timed("decode"):
        checked = _check_files(spark, cfg, listing)
    try:
        with report.timed("decode"):
            n_read = checked.count()
        if n_read != listing.n_unseen:
            report.warnings.append(
                f"{listing.n_unseen - n_read} listed file(s) changed or vanished before they were read; "
                f"they are not in the ledger and the next run will take them"
            )
        outcomes = _write_outcomes(spark, checked, cfg, lake, report)
        with report.timed("summarize"):
            _summarise_checks(checked, report)
    finally:
        checked.unpersist()
    if sum(outcomes.values()) != n_read:
        raise JobFailed(
            f"accounting mismatch in run {report.run_id}: read {n_read} files but ingested "
            f"{outcomes[OUTCOME_INGESTED]} + duplicate {outcomes[OUTCOME_DUPLICATE]} + quarantined "
            f"{outcomes[OUTCOME_QUARANTINED]}; see ledger {lake.images_ledger}"
        )
    return outcomes


def ingest_images(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Ingest ``profile.ingest_images.source`` into bronze/quarantine; return the run report.

    Reads settings ``ingest_images.*`` and ``lake_root``. Idempotent: files already in
    the ledger are skipped without reading their bytes. Rows written carry ``report.run_id``.

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
    if not cfg.source:
        raise ConfigError("ingest_images.source is not set; set it in the profile or pass --source URI")
    report = report or RunReport.start("ingest_images")
    lake = LakeLayout(profile.lake_root)
    report.details["source"] = cfg.source
    report.outputs.update(bronze=lake.bronze_images, quarantine=lake.quarantine_images, ledger=lake.images_ledger)
    started = time.perf_counter()
    with report.timed("list"):
        listing = _list_unseen(spark, cfg, lake.images_ledger)
    try:
        report.counts.update(files_listed=listing.n_listed, files_already_seen=listing.n_listed - listing.n_unseen,
                             inputs=listing.n_unseen)
        outcomes = dict.fromkeys((OUTCOME_INGESTED, OUTCOME_DUPLICATE, OUTCOME_QUARANTINED), 0)
        if listing.n_unseen:
            outcomes = _ingest_unseen(spark, cfg, lake, listing, report)
    finally:
        listing.unseen.unpersist()
        listing.listed.unpersist()
    elapsed = time.perf_counter() - started
    report.counts.update(ingested=outcomes[OUTCOME_INGESTED], duplicates=outcomes[OUTCOME_DUPLICATE],
                         quarantined=outcomes[OUTCOME_QUARANTINED])
    report.durations_s["total"] = round(elapsed, 3)
    report.throughput["files_per_s"] = round(listing.n_unseen / elapsed, 1) if elapsed > 0 else 0.0
    return report

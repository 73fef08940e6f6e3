"""The rows image ingestion writes: ``bronze.images`` (:func:`bronze_rows`), ``quarantine.images``
(:func:`quarantine_rows`) and the ingestion ledger (:func:`ledger_rows`, :func:`skipped_ledger_rows`),
each file's label (:func:`attach_labels`), and the outcomes a file can end in.

Column expressions on the checked files' DataFrame; :mod:`lakeloop.ingest.images` runs the steps
(and re-exports these names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeloop.config import ImageIngestConfig
from lakeloop.errors import ConfigError
from lakeloop.ingest.image_files import FILE_KEYS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# A file is the same input while its (path, length, modification time) is; the ledger holds one row per path.
LEDGER_KEYS = FILE_KEYS
QUARANTINE_KEYS = ("path", "content_sha256", "length")

OUTCOME_INGESTED = "ingested"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_QUARANTINED = "quarantined"
OUTCOME_SKIPPED = "skipped"
OUTCOMES = (OUTCOME_INGESTED, OUTCOME_DUPLICATE, OUTCOME_QUARANTINED, OUTCOME_SKIPPED)

HIDDEN_REASON = "hidden_name"
FORGOTTEN_REASON = "forgotten"  # the file's bytes are an image erased with lakeloop forget


def relative_path(path: "Column", source_root: str) -> "Column":
    """``path`` relative to the qualified source root (the key a labels table joins on)."""
    from pyspark.sql import functions as F

    prefix = source_root.rstrip("/") + "/"
    return F.when(path.startswith(prefix), F.substring(path, len(prefix) + 1, 1 << 30)).otherwise(path)


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
    """The refused files with their reason class and message; bytes kept when at most
    ``content_max_bytes``. Keyed by (path, content_sha256, length): the same bytes at the same
    path are one row, however often the file is copied over itself."""
    from pyspark.sql import functions as F

    return checked.where(~F.col("check.ok")).select(
        "path",
        "length",
        "modification_time",
        F.when(F.col("length") <= content_max_bytes, F.col("content")).alias("content"),
        F.col("image_id").alias("content_sha256"),
        F.col("check.reason").alias("reason"),
        F.col("check.error").alias("error"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def ledger_rows(checked: "DataFrame", bronze: "DataFrame", run_id: str) -> "DataFrame":
    """Each read (or refused unread) file's outcome. A file is ``ingested`` when it is the one
    bronze holds for its content (the same path), so a rerun after a crash, or after the file was
    copied over itself, names the same files as a clean run would."""
    from pyspark.sql import functions as F

    canonical = bronze.select("image_id", F.col("path").alias("_b_path"))
    joined = checked.join(canonical, "image_id", "left")
    outcome = (
        F.when(~F.col("check.ok"), F.lit(OUTCOME_QUARANTINED))
        .when(F.col("_b_path") == F.col("path"), F.lit(OUTCOME_INGESTED))
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
        F.col("image_id").alias("content_sha256"),
        F.col("check.reason").alias("reason"),
    )


def skipped_ledger_rows(skipped: "DataFrame", source_root: str, run_id: str,
                        reason: str = HIDDEN_REASON) -> "DataFrame":
    """Ledger rows of files skipped: unread for their hidden (``.``) names, or (``FORGOTTEN_REASON``)
    holding an erased image; nothing of their content is kept."""
    from pyspark.sql import functions as F

    return skipped.select(
        *FILE_KEYS, relative_path(F.col("path"), source_root).alias("relative_path"),
        F.lit(OUTCOME_SKIPPED).alias("outcome"), F.lit(None).cast("string").alias("image_id"),
        F.lit(run_id).alias("run_id"), F.current_timestamp().alias("seen_at"),
        F.lit(None).cast("string").alias("content_sha256"), F.lit(reason).alias("reason"),
    )


def ledger_schema():
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
            StructField("content_sha256", StringType()),
            StructField("reason", StringType()),
        ]
    )

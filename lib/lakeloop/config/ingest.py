"""``ingest_images.*`` and ``ingest_tables.*``: the settings of the two ingest jobs, and their checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lakeloop.config.checks import at_least, check_batch_bytes, check_trigger, require_uri
from lakeloop.errors import ConfigError


@dataclass(frozen=True)
class IngestStreamConfig:
    """``ingest_images --stream``: new files of the source folder as a Structured Streaming query."""

    trigger: str = "available_now"  # or an interval such as "1 minute"
    max_files_per_trigger: int = 1000  # files per micro-batch
    # Spark's file source ignores a new file whose modification time is this much older than the
    # newest file it has seen (a copy that kept an old time): large, so that none is passed over.
    max_file_age: str = "3650d"
    checkpoint: str | None = None  # default <lake>/_streams/ingest_images/<source hash>


@dataclass(frozen=True)
class ImageIngestConfig:
    """Settings of ``jobs/ingest_images.py``; see docs/jobs/ingest_images.md."""

    source: str | None = None
    extensions: tuple[str, ...] = ("png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp")
    max_pixels: int = 25_000_000
    label_from: Literal["parent_folder", "labels_table", "none"] = "parent_folder"
    labels_table: str | None = None
    labels_path_column: str = "path"
    labels_label_column: str = "label"
    quarantine_content_max_bytes: int = 1_048_576
    # Larger files are ingested by reference: bronze keeps their path, size, time, sha256 and
    # header facts but not their bytes, and later steps read them from the source (sha256 checked).
    content_max_bytes: int = 16 * 1024 * 1024
    # Larger files are quarantined unread: Spark reads at most 2 GiB (2**31 - 1 bytes) a file.
    max_file_bytes: int = 2_000_000_000
    # Files under a name starting with "." (".thumb.jpg", ".cache/x.png"): "skip" lists them in the
    # ledger as skipped, unread; "ingest" takes them like any other. Names starting with "_" are
    # always taken.
    hidden_files: Literal["skip", "ingest"] = "skip"
    # What the lake does when the folder changes (batch runs; a stream only adds). landing: files may be
    # removed after ingestion and the lake keeps their images; mirror: the lake follows the folder, so an
    # image no path holds any more (its file deleted, or rewritten with other bytes) leaves bronze, then
    # silver.features and gold.predictions, and the deleted paths leave the ledger and quarantine. In both,
    # the labels of images whose files are present follow their folder or labels table.
    source_mode: Literal["landing", "mirror"] = "landing"
    # The check of a JPEG decodes it at 1/8 scale (libjpeg's scaled decoding): every byte is still read
    # and entropy-decoded, so a file cut short or broken is refused as a full decode refuses it, at about
    # half the cost for a baseline JPEG. false: decode every JPEG at full size.
    jpeg_draft: bool = True
    # Bytes of file content a Python worker is handed at a time to check (besides the record cap
    # spark.sql.execution.arrow.maxRecordsPerBatch): a batch of camera photos stays this size.
    max_batch_bytes: int = 32 * 1024 * 1024
    stream: IngestStreamConfig = field(default_factory=IngestStreamConfig)


@dataclass(frozen=True)
class TableSource:
    """One table of ``jobs/ingest_tables.py``: where it is, its schema and its key."""

    source: str
    format: Literal["csv", "json", "parquet"]
    keys: tuple[str, ...]
    schema: str | None = None
    infer_schema: bool = False
    options: dict[str, str] = field(default_factory=dict)
    evolve_schema: bool = False
    on_type_error: Literal["quarantine", "fail"] = "quarantine"
    raw_max_chars: int = 10_000
    # JSON lines only: every line must be standard JSON holding one object (checked with Python's
    # json module); false takes Spark's lenient reader (single quotes, trailing junk ...) instead.
    strict_json: bool = True
    # Which record of a key wins when the source holds several (a day file updating yesterday's): the
    # latest, by this column of the record (e.g. updated_at), or, unset, by its file's modification
    # time. Earlier records of the key are superseded (counted, not written, not quarantined); records
    # of a key that tie for the latest are duplicates: the first in input order is kept, the rest
    # quarantined (duplicate_key).
    order_by: str | None = None
    # upsert: the source holds new and changed records (keys it no longer holds stay in bronze);
    # snapshot: the source is the whole table, so a key it no longer holds is deleted from bronze
    # (and then from the table's features and predictions); held back, with a warning, in a run
    # that quarantined any record (its key may be the one missing); append: the source only adds
    # (events, measurements): a key's first record is final, and a later record of a key bronze holds
    # with other values is quarantined (key_exists), as is a second record of a key in one run.
    mode: Literal["upsert", "snapshot", "append"] = "upsert"
    # A change feed's deletions: a SQL condition on a record's columns (e.g. "op = 'D'"). A key whose
    # latest record matches it is deleted from bronze (then from the table's features and
    # predictions); that record is counted (delete_records), not written.
    delete_when: str | None = None


@dataclass(frozen=True)
class TableIngestConfig:
    """Settings of ``jobs/ingest_tables.py``: the tables it knows, by name."""

    tables: dict[str, TableSource] = field(default_factory=dict)
    # A table whose source files, settings, bronze and quarantine tables are all as its last
    # successful run left them is not read again (that run's counts are carried over); false: read it.
    skip_unchanged: bool = True
    # JSON lines nested more deeply than this ([[[...]]] or {"a": {"a": ...}}) are quarantined
    # before any parser sees them: Python's json module (and the Jackson parser Spark uses) give up
    # near 1,000 levels, and a record of 100,000 would otherwise fail the task on every run.
    max_nesting: int = 1000


def check_image_ingest(cfg: ImageIngestConfig) -> None:
    check_batch_bytes(cfg.max_batch_bytes, "ingest_images.max_batch_bytes", "33554432")
    if not cfg.extensions:
        raise ConfigError("ingest_images.extensions is empty; list the file endings to ingest, e.g. [png, jpg]")
    for ext in cfg.extensions:
        if not re.fullmatch(r"\.?[A-Za-z0-9]+", ext):
            raise ConfigError(f"ingest_images.extensions entry {ext!r} must be letters and digits only, e.g. png")
    at_least(cfg.max_pixels, 1, "ingest_images.max_pixels", "25000000")
    at_least(cfg.quarantine_content_max_bytes, 0, "ingest_images.quarantine_content_max_bytes", "1048576")
    at_least(cfg.content_max_bytes, 0, "ingest_images.content_max_bytes", "16777216")
    if not 1 <= cfg.max_file_bytes <= 2**31 - 1:
        raise ConfigError(
            f"ingest_images.max_file_bytes = {cfg.max_file_bytes} must be between 1 and 2147483647 (2 GiB - 1: "
            f"the most Spark reads of one file), e.g. 2000000000"
        )
    if cfg.label_from == "labels_table" and not cfg.labels_table:
        raise ConfigError(
            "ingest_images.label_from = labels_table but ingest_images.labels_table is not set; name the Delta "
            "table of labels (a URI), or set ingest_images.label_from to parent_folder or none"
        )
    check_trigger(cfg.stream.trigger, "ingest_images.stream.trigger")
    at_least(cfg.stream.max_files_per_trigger, 1, "ingest_images.stream.max_files_per_trigger", "1000")
    if not re.fullmatch(r"[1-9][0-9]*(s|m|min|h|d)", cfg.stream.max_file_age):
        raise ConfigError(f"ingest_images.stream.max_file_age = {cfg.stream.max_file_age!r} must be a count and a "
                          f"unit (s, m, h, d), e.g. 3650d")
    if cfg.stream.checkpoint is not None:
        require_uri(cfg.stream.checkpoint, "ingest_images.stream.checkpoint")


# Reader options lakeloop sets itself: a user value would hide malformed records
# (mode=DROPMALFORMED), crash on them (FAILFAST) or bypass the declared schema.
RESERVED_READER_OPTIONS = {
    "mode": "lakeloop reads in PERMISSIVE mode so that malformed records reach quarantine",
    "columnnameofcorruptrecord": "lakeloop names the corrupt-record column itself",
    "enforceschema": "lakeloop checks CSV headers against the schema itself",
    "inferschema": "use ingest_tables.tables.<name>.infer_schema instead",
}


def check_table_source(name: str, table: TableSource) -> None:
    """Check one table of ingest_tables.tables (also called by the reader, for a TableSource built by hand)."""
    prefix = f"ingest_tables.tables.{name}"
    require_uri(table.source, f"{prefix}.source")
    if not table.keys:
        raise ConfigError(f"{prefix}.keys is empty; name the column(s) that identify a row")
    if table.schema is None and not table.infer_schema:
        raise ConfigError(
            f"{prefix} has no schema; declare one as DDL (schema: \"id INT, name STRING\") or set infer_schema: true"
        )
    for key in table.options:
        reason = RESERVED_READER_OPTIONS.get(key.lower())
        if reason:
            raise ConfigError(f"{prefix}.options.{key} cannot be set: {reason}; remove it")
    at_least(table.raw_max_chars, 1, f"{prefix}.raw_max_chars", "10000")
    if table.mode == "append" and (table.order_by is not None or table.delete_when is not None):
        setting = "order_by" if table.order_by is not None else "delete_when"
        raise ConfigError(f"{prefix}.{setting} is set but {prefix}.mode is append, which keeps a key's first record "
                          f"and never updates or deletes it; set mode to upsert (the latest record wins) or remove "
                          f"{setting}")
    if table.delete_when is not None and not table.delete_when.strip():
        raise ConfigError(f"{prefix}.delete_when is empty; write a SQL condition on the record's columns, e.g. "
                          f"\"op = 'D'\", or leave it unset")
    if table.order_by is not None:
        declared = [part.strip().split()[0].strip("`").lower() for part in (table.schema or "").split(",")
                    if part.strip()]
        if not table.order_by.strip():
            raise ConfigError(f"{prefix}.order_by is empty; name a column of the record (e.g. updated_at), or "
                              f"leave it unset to let the newest file win")
        if declared and table.order_by.lower() not in declared:
            raise ConfigError(f"{prefix}.order_by = {table.order_by!r} is not a column of its schema "
                              f"({', '.join(declared)}); name one of them, or leave it unset to let the newest "
                              f"file win")

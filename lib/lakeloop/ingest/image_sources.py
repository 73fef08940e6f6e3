"""After a batch ingestion run: bronze follows the source folder as it is now.

For every image a present file holds (a file the listing found as the ledger recorded it: same
path, size and time), :func:`image_placements` gathers its paths and their labels by the
configured rule (folder or labels table, :func:`lakeloop.ingest.image_rows.attach_labels`), and
:func:`follow_source` updates bronze where it differs:

- **relabelled**: the image's label is the one its present files give (a file moved to another
  label folder, a changed labels-table row);
- **moved**: the image's ``path`` is one a file holds it at now (bronze's own while it is still
  there, else the first by name), so the image read by reference is found again;
- **conflicts**: the same bytes under two or more labels get no label (training leaves them out)
  and a row in ``quarantine.image_label_conflicts`` listing the paths and labels; the row goes
  when the folder no longer disagrees;
- with ``ingest_images.source_mode: mirror``, **removed**: an image no present file holds (deleted,
  or its path rewritten with other bytes) is deleted from bronze in the same commit, and the paths
  the folder no longer has leave the ledger and ``quarantine.images``. Held back, with a warning,
  when the listing found no file at all (an unmounted or emptied folder is more likely than a
  wish to empty the lake).

Deletes and updates are Delta MERGEs recorded in bronze's change data feed, which
``build_features`` follows. Each write commits nothing when nothing differs, so a rerun on an
unchanged folder commits nothing, and a run killed halfway is finished by the next.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from lakeloop.config import ImageIngestConfig
from lakeloop.ingest.image_files import FILE_KEYS
from lakeloop.ingest.image_rows import attach_labels, relative_path
from lakeloop.io import delta
from lakeloop.io.step_state import read_step_state, write_step_state
from lakeloop.layout import LakeLayout
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FOLLOWED = ("relabelled", "moved", "label_conflicts", "removed", "paths_removed")


def present_files(ledger: "DataFrame", listed: "DataFrame") -> "DataFrame":
    """The ledger's rows of the files ``listed`` holds as the ledger recorded them."""
    return ledger.join(listed.select(*FILE_KEYS), list(FILE_KEYS), "left_semi")


def image_placements(present: "DataFrame", cfg: ImageIngestConfig, labels: "DataFrame | None") -> "DataFrame":
    """One row per image a present file holds: ``image_id``, ``paths`` and ``labels`` (each
    distinct and sorted; a file without a label adds none)."""
    from pyspark.sql import functions as F

    held = present.where(F.col("image_id").isNotNull()).select("image_id", "path", "relative_path")
    return attach_labels(held, cfg, labels).groupBy("image_id").agg(
        F.array_sort(F.collect_set("label")).alias("labels"), F.array_sort(F.collect_set("path")).alias("paths"))


def bronze_as_placed(placements: "DataFrame", bronze: "DataFrame", source_root: str) -> "DataFrame":
    """Bronze's images that a present file holds, with the ``path``, ``relative_path`` and ``label``
    their files give now, next to bronze's own (``_path``, ``_label``) and the placements."""
    from pyspark.sql import functions as F

    own = bronze.select("image_id", F.col("path").alias("_path"), F.col("label").alias("_label"))
    joined = placements.join(own, "image_id")
    path = F.when(F.array_contains("paths", F.col("_path")), F.col("_path")).otherwise(F.element_at("paths", 1))
    label = F.when(F.size("labels") == 1, F.element_at("labels", 1)).otherwise(F.lit(None).cast("string"))
    return joined.select("image_id", path.alias("path"), relative_path(path, source_root).alias("relative_path"),
                         label.alias("label"), "labels", "paths", "_path", "_label")


def follow_source(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, listed: "DataFrame",
                  n_listed: int, source_root: str, report: RunReport) -> dict[str, int]:
    """Update bronze (and with ``mirror`` the ledger and quarantine) to the folder as ``listed``
    (every file of the source, as listed at the start of this run); returns what changed, also
    added to ``report.counts``."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    counts = dict.fromkeys(FOLLOWED, 0)
    if not (delta.is_delta_table(spark, lake.bronze_images) and delta.is_delta_table(spark, lake.images_ledger)):
        report.counts.update(counts)
        return counts
    state_uri = lake.step_state("ingest_images", "follow-" + hashlib.sha256(source_root.encode()).hexdigest()[:12])
    listing = _listing_digest(listed)
    previous = read_step_state(spark, state_uri)
    if previous.get("state") == _state(spark, cfg, lake, listing) and isinstance(previous.get("label_conflicts"), int):
        # The folder, the labels and the tables are as the last follow left them: nothing to do.
        counts["label_conflicts"] = previous["label_conflicts"]
        _warn_conflicts(counts, lake, report)
        report.counts.update(counts)
        return counts
    ledger = delta.read_table(spark, lake.images_ledger, delta.table_version(spark, lake.images_ledger))
    bronze = delta.read_table(spark, lake.bronze_images, delta.table_version(spark, lake.bronze_images))
    labels = delta.read_table(spark, cfg.labels_table) if cfg.label_from == "labels_table" else None
    present = present_files(ledger, listed)
    placed = bronze_as_placed(image_placements(present, cfg, labels), bronze, source_root) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    try:
        tally = placed.agg(
            F.count(F.lit(1)).alias("placed"),
            F.count(F.when(~F.col("label").eqNullSafe(F.col("_label")), 1)).alias("relabelled"),
            F.count(F.when(F.col("path") != F.col("_path"), 1)).alias("moved"),
            F.count(F.when(F.size("labels") > 1, 1)).alias("label_conflicts")).first()
        mirror = cfg.source_mode == "mirror"
        if mirror and not n_listed:
            report.warnings.append(
                f"ingest_images.source_mode is mirror but {source_root} holds no image file: nothing was removed "
                f"from the lake (an unmounted or emptied folder is more likely than a wish to empty it); to remove "
                f"images, delete them from a folder that still holds others, or use lakeloop forget")
            mirror = False
        with report.timed("follow_source"):
            bronze_metrics = delta.update_columns(spark, placed, lake.bronze_images, ["image_id"],
                                                  ["path", "relative_path", "label"], delete_missing=mirror)
            _record_conflicts(spark, placed, lake, report.run_id)
            if mirror:
                counts["paths_removed"] = delta.delete_keys(spark, listed, lake.images_ledger, ["path"], absent=True)
                delta.delete_keys(spark, present.select("path", "content_sha256"), lake.quarantine_images,
                                  ["path", "content_sha256"], absent=True)
        counts.update(relabelled=tally["relabelled"], moved=tally["moved"], label_conflicts=tally["label_conflicts"],
                      removed=bronze_metrics.get("num_deleted_rows", 0))
    finally:
        placed.unpersist()
    write_step_state(spark, state_uri, {"state": _state(spark, cfg, lake, listing),
                                        "label_conflicts": counts["label_conflicts"], "run_id": report.run_id})
    _warn_conflicts(counts, lake, report)
    report.counts.update(counts)
    return counts


def _warn_conflicts(counts: dict[str, int], lake: LakeLayout, report: RunReport) -> None:
    if counts["label_conflicts"]:
        report.warnings.append(
            f"{counts['label_conflicts']} image(s) are in the source under two or more labels (the same bytes in "
            f"different label folders, or labelled differently in the labels table): they have no label and "
            f"training leaves them out until the source agrees; {lake.image_label_conflicts} lists their paths")


def _listing_digest(listed: "DataFrame") -> list:
    """The listing's file count and an order-free digest of its (path, length, modification time)."""
    from pyspark.sql import functions as F

    row = listed.agg(F.count(F.lit(1)).alias("n"),
                     F.expr("bit_xor(xxhash64(path, length, modification_time))").alias("digest")).first()
    return [row["n"], row["digest"]]


def _state(spark: "SparkSession", cfg: ImageIngestConfig, lake: LakeLayout, listing: list) -> dict:
    """All that following the source depends on: the listing, the label rule and mode, and the
    commits of the tables it reads and writes (version and time, :func:`lakeloop.io.delta.commit_state`)."""
    tables = {"bronze": lake.bronze_images, "ledger": lake.images_ledger, "conflicts": lake.image_label_conflicts,
              "quarantine": lake.quarantine_images}
    if cfg.label_from == "labels_table":
        tables["labels"] = cfg.labels_table
    return {"listing": listing, "source_mode": cfg.source_mode, "label_from": cfg.label_from,
            "labels_columns": [cfg.labels_path_column, cfg.labels_label_column],
            **{name: delta.commit_state(spark, uri) for name, uri in tables.items()}}


def _record_conflicts(spark: "SparkSession", placed: "DataFrame", lake: LakeLayout, run_id: str) -> None:
    """``quarantine.image_label_conflicts`` holds exactly the images placed under several labels
    now (created on the first one; a resolved conflict's row is deleted)."""
    from pyspark.sql import functions as F

    conflicts = placed.where(F.size("labels") > 1).select(
        "image_id", "paths", "labels", F.current_timestamp().alias("found_at"), F.lit(run_id).alias("run_id"))
    if delta.is_delta_table(spark, lake.image_label_conflicts) or not conflicts.isEmpty():
        delta.merge_upsert(spark, conflicts, lake.image_label_conflicts, ["image_id"], ["paths", "labels"],
                           delete_missing=True)

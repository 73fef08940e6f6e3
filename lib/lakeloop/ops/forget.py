"""Erase one record from the whole lake (``lakeloop forget``): an image, by its id or the path it
was read from, or a row of an ingested table, by its key.

The record is found as ``lakeloop lineage`` finds it (:mod:`lakeloop.ops.lineage`: bronze,
quarantine, the ledger, silver, gold, the training sets, the model versions that saw it). Then,
unless it is a dry run, in this order (each step can be run again: a second ``forget`` finishes
what a killed one began and changes nothing after a complete one):

1. a **tombstone** in ``_ledger/forgotten`` (the image's id, or the table and key), written first
   so that no ingestion takes the record back in: ``ingest_images`` skips a file whose bytes are a
   forgotten image (ledger outcome ``skipped``, reason ``forgotten``; nothing of it kept) and
   ``ingest_tables`` drops a forgotten key's records (counted ``forgotten``);
2. a Delta DELETE of its rows in every table that holds them;
3. every **training set** holding it is retired (its folder deleted: those are copies of
   ``silver.features``; the next ``train`` makes a new one without the record);
4. each **model version** whose training set held it gets the erasure in its ``erasures.json``
   (the registry cannot un-train a model: the weights may still hold what it learned);
5. **VACUUM** of exactly the tables it deleted from, with ``maintain.vacuum_retention_hours``:
   the files that held the record stay in those tables' history until that many hours after
   this run, and the first VACUUM after that (``lakeloop maintain``, or ``forget`` again) deletes
   them. A retention of 0 (``maintain.allow_short_retention: true``) deletes them now, and with
   them every older version of those tables (time travel, and a reader still on one, lose them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakeloop.config import DELTA_SAFE_RETENTION_HOURS, Profile
from lakeloop.io import delta
from lakeloop.io.lakefs import LakeFiles
from lakeloop.io.tombstones import KIND_IMAGE, KIND_TABLE_ROW, TOMBSTONE_KEYS, table_key_text, tombstone_schema
from lakeloop.layout import LakeLayout, safe_uri
from lakeloop.ops.lineage import Lineage, image_lineage, table_lineage
from lakeloop.registry import Registry
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

@dataclass
class Erasure:
    """What ``forget`` found and did."""

    lineage: Lineage
    dry_run: bool
    retention_hours: float
    deleted: dict[str, int] = field(default_factory=dict)  # table name -> rows deleted
    retired: list[str] = field(default_factory=list)  # training sets deleted
    marked: list[str] = field(default_factory=list)  # model versions marked, "name:version"
    vacuumed: list[str] = field(default_factory=list)
    tombstones: int = 0

    @property
    def found(self) -> bool:
        """Whether any place held the record."""
        return self.lineage.found

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.lineage.record, "dry_run": self.dry_run, "found": self.lineage.as_dict()["places"],
                "deleted": self.deleted, "training_sets_retired": self.retired,
                "model_versions_marked": self.marked, "models": self.lineage.models,
                "vacuumed": self.vacuumed, "retention_hours": self.retention_hours, "tombstones": self.tombstones}

    def text(self) -> str:
        lineage = self.lineage
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"{lineage.record}: {'dry run, nothing changed' if self.dry_run else 'erased'}"]
        for place in lineage.places:
            what = "training set, retired (folder deleted)" if place.is_training_set else f"{place.rows} row(s)"
            lines.append(f"  {verb}: {place.name}: {what}  ({safe_uri(place.uri)})")
        if not lineage.places:
            lines.append("  no table or training set of this lake holds it")
        lines.append(f"model versions whose training set held it: {len(lineage.models)} (their weights cannot be "
                     f"un-trained{'' if self.dry_run else '; each is marked in its erasures.json'})")
        for model in lineage.models:
            lines.append(f"  {model['model']}:{model['version']} ({', '.join(model['splits'])})")
        if self.vacuumed or self.dry_run:
            until = datetime.now() + timedelta(hours=self.retention_hours)
            lines.append(
                f"VACUUM with retention {self.retention_hours:g} h (maintain.vacuum_retention_hours) "
                f"{'would run' if self.dry_run else 'ran'} on the tables it {verb} from: the files that held it "
                + ("are gone" if self.retention_hours == 0 and not self.dry_run else
                   f"stay in their history until {until:%Y-%m-%d %H:%M} and go with the first VACUUM after that "
                   f"(lakeloop maintain, or this command again)"))
        return "\n".join(lines)


def forget_image(spark: "SparkSession", profile: Profile, image_id: str | None = None, path: str | None = None,
                 dry_run: bool = False, report: RunReport | None = None) -> Erasure:
    """Erase an image (by ``image_id`` or the ``path`` it was read from) from the lake; see the module.

    Raises
    ------
    ConfigError
        neither or both of ``image_id`` and ``path``.
    """
    found = image_lineage(spark, profile, image_id=image_id, path=path)
    stones = [(KIND_IMAGE, None, i) for i in found.image_ids]
    return _erase(spark, profile, found, stones, dry_run, report)


def forget_table_row(spark: "SparkSession", profile: Profile, table: str, key: str, dry_run: bool = False,
                     report: RunReport | None = None) -> Erasure:
    """Erase the row of ingested table ``table`` with key ``key`` (``K`` or ``col=value,...``) from the
    lake, and the quarantined records whose raw text holds that key; see the module.

    Raises
    ------
    ConfigError
        ``table`` is not an ingested table of the profile, or the key does not fit it.
    """
    found = table_lineage(spark, profile, table, key)
    assert found.table_key is not None
    stones = [(KIND_TABLE_ROW, table, table_key_text(found.table_key[1]))]
    return _erase(spark, profile, found, stones, dry_run, report)


def _erase(spark: "SparkSession", profile: Profile, found: Lineage, stones: list[tuple], dry_run: bool,
           report: RunReport | None) -> Erasure:
    lake = LakeLayout(profile.lake_root)
    retention = profile.maintain.vacuum_retention_hours
    erasure = Erasure(found, dry_run, retention)
    if dry_run:
        return erasure
    report = report or RunReport.start("forget")
    with report.timed("tombstone"):
        erasure.tombstones = _write_tombstones(spark, lake, stones, report.run_id)
    tables = [p for p in found.places if not p.is_training_set]
    with report.timed("delete"):
        for place in tables:
            table = delta.read_table(spark, place.uri)
            erasure.deleted[place.name] = delta.delete_where(spark, place.uri, place.where_for(table))
    with report.timed("retire_training_sets"):
        files = LakeFiles(profile.hadoop_conf())
        for root in sorted({p.uri.rsplit("/", 1)[0] for p in found.places if p.is_training_set}):
            files.delete_dir(root)
            erasure.retired.append(root)
    registry = Registry.for_profile(profile)
    for model in found.models:
        version = registry.resolve(model["model"], model["version"])
        registry.mark_erasure(version, {"record": found.record, "splits": model["splits"], "run_id": report.run_id})
        erasure.marked.append(f"{model['model']}:{model['version']}")
    with report.timed("vacuum"):
        for place in tables:
            delta.vacuum(spark, place.uri, retention, below_safety_check=retention < DELTA_SAFE_RETENTION_HOURS)
            erasure.vacuumed.append(place.uri)
    report.counts.update(rows_deleted=sum(erasure.deleted.values()), tables=len(tables),
                         training_sets_retired=len(erasure.retired), model_versions_marked=len(erasure.marked))
    report.details.update(record=found.record, deleted=erasure.deleted, retired=erasure.retired,
                          marked=erasure.marked, retention_hours=retention)
    return erasure


def _write_tombstones(spark: "SparkSession", lake: LakeLayout, stones: list[tuple], run_id: str) -> int:
    """Insert the tombstones the lake lacks; how many there are for the record."""
    from pyspark.sql import functions as F

    if not stones:
        return 0
    rows = spark.createDataFrame([(*s, None, run_id) for s in stones], tombstone_schema()) \
        .withColumn("forgotten_at", F.current_timestamp())
    delta.merge_insert_new(spark, rows, lake.forgotten, list(TOMBSTONE_KEYS))
    return len(stones)

"""The README's first command, run twice on one checkout, adds nothing the second time: the demo
writer leaves files that are already there alone, and every table keeps the rows it had."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.ingest.images import ingest_images
from lakeloop.ingest.tables import ingest_tables
from lakeloop.io import delta
from lakeloop_dev.demo_data import write_demo_raw_zone
from support.lakes import layout, make_profile

pytestmark = [pytest.mark.slow, pytest.mark.stacks]


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_writing_the_demo_raw_zone_again_touches_no_file(tmp_path):
    write_demo_raw_zone(tmp_path / "raw")
    before = _stamps(tmp_path / "raw")

    write_demo_raw_zone(tmp_path / "raw")

    assert _stamps(tmp_path / "raw") == before


def test_the_demo_ingested_twice_leaves_every_table_as_after_the_first_run(spark, lake, tmp_path):
    raw = tmp_path / "raw"
    profile = make_profile(lake, ("ingest_images.source", f"file:{raw}/images"),
                           ("ingest_tables.tables.digits_meta.source", f"file:{raw}/tables/digits_meta.csv"))
    tables = [layout(profile).bronze_images, layout(profile).quarantine_images, layout(profile).images_ledger,
              layout(profile).bronze_table("digits_meta"), layout(profile).quarantine_table("digits_meta")]

    write_demo_raw_zone(raw)
    first = ingest_images(spark, profile)
    ingest_tables(spark, profile)
    after_first = {uri: (delta.table_version(spark, uri), delta.read_table(spark, uri).count()) for uri in tables}
    write_demo_raw_zone(raw)
    second = ingest_images(spark, profile)
    ingest_tables(spark, profile)

    assert (first.counts["ingested"], first.counts["quarantined"]) == (1797, 4)
    assert (second.counts["inputs"], second.counts["files_already_seen"]) == (0, first.counts["inputs"])
    assert {uri: (delta.table_version(spark, uri), delta.read_table(spark, uri).count()) for uri in tables} == after_first

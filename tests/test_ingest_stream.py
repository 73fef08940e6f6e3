"""ingest_images --stream: new files of the raw folder through the batch job's checks into bronze,
quarantine and the ledger, each file once, also the files Spark's file source never hands over."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakeloop.config import load_profile
from lakeloop.errors import ConfigError
from lakeloop.ingest.images import ingest_images
from lakeloop.ingest.stream import ingest_checkpoint, ingest_images_stream
from lakeloop.io import delta
from lakeloop.report import RunReport
from support.imagefiles import ZOO_MAX_PIXELS, rgb_png, write_image_zoo_records
from support.lakes import layout, make_profile
from support.reliability import lost_and_duplicated

# Files Spark's file source passes over, beside the zoo: the stream's sweep takes them.
PASSED_OVER = {"cam/_DSC0001.PNG": "ingested", "_drafts/DSC0003.png": "ingested", "cam/.thumb.png": "skipped",
               "cam/empty.png": "quarantined"}


def _profile(lake: str, source: Path, *overrides):
    return make_profile(lake, ("ingest_images.source", f"file:{source}"), ("ingest_images.max_pixels", ZOO_MAX_PIXELS),
                        ("ingest_images.stream.max_files_per_trigger", 10), *overrides)


def _raw_folder(root: Path) -> dict[str, str]:
    """The image zoo plus the files of :data:`PASSED_OVER`; relative path -> expected ledger outcome
    (duplicates count as ingested: which copy bronze keeps depends on the order files arrive)."""
    records = write_image_zoo_records(root)
    expected = {path: ("ingested" if r.ledger_outcome == "duplicate" else r.ledger_outcome)
                for path, r in records.items()}
    for seed, name in enumerate(PASSED_OVER):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"" if "empty" in name else rgb_png(seed=100 + seed))
    return {**expected, **PASSED_OVER}


def _lake_state(spark, profile) -> dict[str, object]:
    bronze = delta.read_table(spark, layout(profile).bronze_images)
    quarantine = delta.read_table(spark, layout(profile).quarantine_images)
    ledger = delta.read_table(spark, layout(profile).images_ledger).collect()
    return {
        "bronze": sorted((r.image_id, r.label, r.format, r.width, r.height) for r in bronze.collect()),
        "quarantine": sorted((r.path.split("/raw/", 1)[1], r.reason) for r in quarantine.collect()),
        "ledger": {r.relative_path: "ingested" if r.outcome == "duplicate" else r.outcome for r in ledger},
        "ledger_rows": len(ledger),
    }


@pytest.mark.slow
def test_a_stream_ingests_every_file_once_as_a_batch_run_would_hidden_names_and_empty_files_too(
        spark, tmp_path):
    root = tmp_path / "raw"
    expected = _raw_folder(root)
    profile = _profile(f"file:{tmp_path / 'lake'}", root)

    report = ingest_images_stream(spark, profile, report=RunReport("ingest_images", "stream-1"))

    state = _lake_state(spark, profile)
    assert state["ledger"] == expected and state["ledger_rows"] == len(expected)
    assert report.counts["inputs"] == len(expected) and report.counts["batches"] >= 2
    assert report.counts["swept_files"] >= len(PASSED_OVER)  # and the zoo's own empty and hidden files
    outcomes = sum(report.counts[k] for k in ("ingested", "duplicates", "quarantined", "skipped"))
    assert outcomes == len(expected)
    batch_profile = _profile(f"file:{tmp_path / 'lake-batch'}", root)
    ingest_images(spark, batch_profile)
    clean = _lake_state(spark, batch_profile)
    assert state == clean  # the stream leaves the lake a batch run leaves

    (root / "bird" / "late.png").write_bytes(rgb_png(seed=7))
    (root / "bird" / "_late.png").write_bytes(rgb_png(seed=8))
    again = ingest_images_stream(spark, profile, report=RunReport("ingest_images", "stream-2"))

    assert (again.counts["inputs"], again.counts["ingested"]) == (2, 2)
    assert again.counts["swept_files"] == 1  # _late.png: Spark's file source never hands it over


@pytest.mark.slow
@pytest.mark.fault
def test_a_replayed_ingestion_micro_batch_adds_nothing(spark, tmp_path, reliability):
    """A driver killed after a micro-batch's MERGEs but before its checkpoint commit replays it:
    the files are in the ledger then, and nothing is written twice."""
    root = tmp_path / "raw"
    expected = _raw_folder(root)
    profile = _profile(f"file:{tmp_path / 'lake'}", root)
    ingest_images_stream(spark, profile, report=RunReport("ingest_images", "first"))
    lake = layout(profile)
    versions = {t: delta.table_version(spark, t) for t in (lake.bronze_images, lake.quarantine_images,
                                                           lake.images_ledger)}
    commits = Path(ingest_checkpoint(profile, f"file:{root}").removeprefix("file:")) / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    for name in (str(last), f".{last}.crc"):  # as if the driver died before committing the last batch
        (commits / name).unlink(missing_ok=True)

    replay = ingest_images_stream(spark, profile, report=RunReport("ingest_images", "replay"))

    ledger = [r.path for r in delta.read_table(spark, lake.images_ledger).select("path").collect()]
    reliability.record("the last micro-batch's checkpoint commit lost (a driver killed after its MERGEs); rerun",
                       "ingest_images --stream", "replayed vs first run", len(expected),
                       *lost_and_duplicated([f"file:{root}/{p}" for p in expected], ledger))
    assert replay.counts["batches"] == 1 and replay.counts["ingested"] + replay.counts["quarantined"] == 0
    replayed = [b for b in replay.details["stream"]["micro_batches"] if b["batch"] != "sweep"]
    assert replay.counts["inputs"] == 0 and replayed[0]["files"] > 0
    assert {t: delta.table_version(spark, t) for t in versions} == versions


@pytest.mark.slow
def test_a_file_listed_while_empty_and_written_later_is_ingested_by_the_next_run(spark, tmp_path):
    """Spark's file source lists a path once: a file it saw empty (an upload in progress) is never
    handed over again; the sweep at the end of the run takes it once it has its bytes."""
    root = tmp_path / "raw"
    (root / "cam").mkdir(parents=True)
    for seed in range(3):
        (root / "cam" / f"{seed}.png").write_bytes(rgb_png(seed=seed))
    (root / "cam" / "uploading.png").write_bytes(b"")
    profile = _profile(f"file:{tmp_path / 'lake'}", root)
    first = ingest_images_stream(spark, profile, report=RunReport("ingest_images", "while-empty"))
    assert (first.counts["ingested"], first.counts["quarantined"]) == (3, 1)

    (root / "cam" / "uploading.png").write_bytes(rgb_png(seed=9))
    second = ingest_images_stream(spark, profile, report=RunReport("ingest_images", "written"))

    assert (second.counts["ingested"], second.counts["swept_files"]) == (1, 1)
    ledger = {r.relative_path: r.outcome for r in delta.read_table(spark, layout(profile).images_ledger).collect()}
    assert ledger["cam/uploading.png"] == "ingested"


def test_an_ingestion_trigger_that_is_neither_available_now_nor_an_interval_is_refused(lake):
    with pytest.raises(ConfigError, match="ingest_images.stream.trigger = 'soon'"):
        load_profile("test", [("lake_root", lake), ("ingest_images.stream.trigger", "soon")])


def test_a_missing_source_folder_is_named_by_the_stream(spark, tmp_path):
    from lakeloop.errors import SourceError

    profile = _profile(f"file:{tmp_path / 'lake'}", tmp_path / "nowhere")
    with pytest.raises(SourceError, match="image source .*nowhere does not exist"):
        ingest_images_stream(spark, profile, report=RunReport("ingest_images", "missing"))
    shutil.rmtree(tmp_path / "lake", ignore_errors=True)

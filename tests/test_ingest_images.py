"""Image ingestion end to end on real local Spark + Delta, with good, odd, broken and duplicate files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lakeloop.errors import ConfigError, SourceError
from lakeloop.ingest.image_files import list_source_files, read_files
from lakeloop.ingest.images import (
    bronze_rows,
    ingest_images,
    inspect_files,
    attach_labels,
)
from lakeloop.io import delta
from support.imagefiles import ZOO_MAX_PIXELS, rgb_png, write_image_zoo_records
from support.lakes import layout, make_profile


def _profile(lake: str, source: Path, *overrides):
    return make_profile(
        lake, ("ingest_images.source", f"file:{source}"), ("ingest_images.max_pixels", ZOO_MAX_PIXELS), *overrides
    )


def _lake_state(spark, profile) -> dict[str, set]:
    """The lake's content without run ids and times: what must be equal between two clean runs."""
    bronze = delta.read_table(spark, layout(profile).bronze_images)
    quarantine = delta.read_table(spark, layout(profile).quarantine_images)
    ledger = delta.read_table(spark, layout(profile).images_ledger)
    return {
        "bronze": {
            (r.image_id, r.relative_path, r.label, r.format, r.width, r.height, r.mode)
            for r in bronze.collect()
        },
        "quarantine": {(r.path.split("/raw/", 1)[1], r.error) for r in quarantine.collect()},
        "ledger": {(r.relative_path, r.outcome, r.image_id) for r in ledger.collect()},
    }


@pytest.fixture
def zoo(tmp_path: Path):
    root = tmp_path / "raw"
    return root, write_image_zoo_records(root)


@pytest.mark.quick
def test_every_zoo_file_is_accounted_for(spark, lake, zoo):
    root, records = zoo
    profile = _profile(lake, root)
    report = ingest_images(spark, profile)

    expected_ingested = {p for p, r in records.items() if r.ledger_outcome == "ingested"}
    expected_dupes = {p for p, r in records.items() if r.ledger_outcome == "duplicate"}
    expected_bad = {p for p, r in records.items() if r.ledger_outcome == "quarantined"}
    assert report.counts["inputs"] == len(records)  # notes.txt and labels.csv are not inputs
    assert report.counts["ingested"] == len(expected_ingested)
    assert report.counts["duplicates"] == len(expected_dupes)
    assert report.counts["quarantined"] == len(expected_bad)
    assert report.counts["inputs"] == (
        report.counts["ingested"] + report.counts["duplicates"] + report.counts["quarantined"]
    )
    # The reasons histogram adds up: every quarantined file is counted under exactly one class.
    assert sum(report.details["quarantine_reasons"].values()) == report.counts["quarantined"] == len(expected_bad)

    bronze = {r.relative_path: r for r in delta.read_table(spark, layout(profile).bronze_images).collect()}
    assert set(bronze) == expected_ingested
    for rel, row in bronze.items():
        rec = records[rel]
        assert (row.format, row.width, row.height, row.mode, row.label) == (
            rec.format, rec.width, rec.height, rec.mode, rec.label
        ), rel
        assert row.image_id == hashlib.sha256(row.content).hexdigest() == rec.image_id
        assert row.content == (root / rel).read_bytes()
        assert row.size_bytes == len(row.content)

    quarantine = delta.read_table(spark, layout(profile).quarantine_images).collect()
    by_rel = {r.path.split("/raw/", 1)[1]: r for r in quarantine}
    assert set(by_rel) == expected_bad
    for rel, row in by_rel.items():
        assert records[rel].reason in row.error, (rel, row.error)
        assert row.content == (root / rel).read_bytes()  # small enough to keep

    ledger = {r.relative_path: r for r in delta.read_table(spark, layout(profile).images_ledger).collect()}
    assert {rel: r.outcome for rel, r in ledger.items()} == {p: r.ledger_outcome for p, r in records.items()}
    for rel, rec in records.items():
        if rec.outcome == "ok":
            assert ledger[rel].image_id == rec.image_id


@pytest.mark.quick
def test_rerun_writes_nothing_and_reads_no_bytes(spark, lake, zoo):
    root, records = zoo
    profile = _profile(lake, root)
    ingest_images(spark, profile)
    versions = {u: delta.table_version(spark, u) for u in
                (layout(profile).bronze_images, layout(profile).quarantine_images, layout(profile).images_ledger)}
    state = _lake_state(spark, profile)

    again = ingest_images(spark, profile)

    assert again.counts["inputs"] == 0
    assert again.counts["files_already_seen"] == len(records)
    assert "decode" not in again.durations_s  # nothing was read
    assert {u: delta.table_version(spark, u) for u in versions} == versions
    assert _lake_state(spark, profile) == state


def test_added_files_only_they_arrive(spark, lake, zoo):
    root, records = zoo
    profile = _profile(lake, root)
    ingest_images(spark, profile)
    bronze_before = delta.read_table(spark, layout(profile).bronze_images).count()

    (root / "cat" / "new one.png").write_bytes(rgb_png(seed=99))
    shutil.copyfile(root / "cat" / "tabby.png", root / "dog" / "tabby again.png")
    (root / "dog" / "cut.png").write_bytes(rgb_png(seed=98)[:50])
    report = ingest_images(spark, profile)

    assert report.counts["inputs"] == 3
    assert (report.counts["ingested"], report.counts["duplicates"], report.counts["quarantined"]) == (1, 1, 1)
    assert delta.read_table(spark, layout(profile).bronze_images).count() == bronze_before + 1
    ledger = delta.read_table(spark, layout(profile).images_ledger)
    assert ledger.count() == len(records) + 3
    assert ledger.where("relative_path = 'dog/tabby again.png'").first().outcome == "duplicate"


def test_rewritten_file_is_taken_again(spark, lake, zoo):
    root, _ = zoo
    profile = _profile(lake, root)
    ingest_images(spark, profile)
    target = root / "cat" / "tabby.png"
    target.write_bytes(rgb_png(seed=1234))  # same path, new content, new length/mtime

    report = ingest_images(spark, profile)

    assert report.counts["inputs"] == 1 and report.counts["ingested"] == 1
    bronze = delta.read_table(spark, layout(profile).bronze_images)
    assert bronze.where(f"image_id = '{hashlib.sha256(target.read_bytes()).hexdigest()}'").count() == 1


def test_crash_after_bronze_write_then_rerun_equals_a_clean_run(spark, tmp_path, zoo):
    """A run killed after its bronze MERGE (before quarantine and ledger) and started again
    leaves the lake exactly as one clean run does."""
    root, _ = zoo
    clean = _profile(f"file:{tmp_path / 'clean-lake'}", root)
    ingest_images(spark, clean)

    crashed = _profile(f"file:{tmp_path / 'crashed-lake'}", root)
    cfg = crashed.ingest_images
    # The first step of a run, exactly as ingest_images does it, and then the "crash".
    files = read_files(spark, list_source_files(spark, f"file:{root}", cfg.extensions))
    checked = attach_labels(inspect_files(files, f"file:{root}", cfg.max_pixels), cfg)
    delta.merge_insert_new(spark, bronze_rows(checked, "killed-run"), layout(crashed).bronze_images, ["image_id"])

    report = ingest_images(spark, crashed)

    assert report.counts["inputs"] == report.counts["ingested"] + report.counts["duplicates"] + report.counts["quarantined"]
    assert _lake_state(spark, crashed) == _lake_state(spark, clean)


def test_labels_from_a_labels_table(spark, lake, tmp_path, zoo):
    root, records = zoo
    labels_uri = f"{lake}/bronze/my_labels"
    spark.createDataFrame([("cat/tabby.png", "striped"), ("dog/Rex.PNG", "good boy")], "file STRING, tag STRING") \
        .write.format("delta").save(labels_uri)
    profile = _profile(
        lake, root,
        ("ingest_images.label_from", "labels_table"),
        ("ingest_images.labels_table", labels_uri),
        ("ingest_images.labels_path_column", "file"),
        ("ingest_images.labels_label_column", "tag"),
    )
    report = ingest_images(spark, profile)

    labels = {r.relative_path: r.label for r in delta.read_table(spark, layout(profile).bronze_images).collect()}
    assert labels["cat/tabby.png"] == "striped" and labels["dog/Rex.PNG"] == "good boy"
    assert labels["cat/a[1].png"] is None
    assert any("no label" in w for w in report.warnings)


def test_labels_table_with_wrong_column_is_a_clear_error(spark, lake, zoo):
    root, _ = zoo
    labels_uri = f"{lake}/bronze/my_labels"
    spark.createDataFrame([("cat/tabby.png", "x")], "path STRING, tag STRING").write.format("delta").save(labels_uri)
    profile = _profile(lake, root, ("ingest_images.label_from", "labels_table"),
                       ("ingest_images.labels_table", labels_uri))
    with pytest.raises(ConfigError, match="has no column 'label'.*labels_label_column"):
        ingest_images(spark, profile)


def test_missing_source_is_a_clear_error(spark, lake, tmp_path):
    profile = _profile(lake, tmp_path / "nowhere")
    with pytest.raises(SourceError, match=r"nowhere does not exist.*ingest_images.source"):
        ingest_images(spark, profile)


def test_tables_are_plain_delta_for_another_reader(spark, lake, zoo):
    """delta-rs (the ``deltalake`` package), not Spark, reads the same rows."""
    from deltalake import DeltaTable

    root, records = zoo
    profile = _profile(lake, root)
    ingest_images(spark, profile)
    for uri in (layout(profile).bronze_images, layout(profile).quarantine_images, layout(profile).images_ledger):
        theirs = DeltaTable(uri.removeprefix("file:")).to_pyarrow_table(columns=["path"]).column("path").to_pylist()
        ours = [r.path for r in delta.read_table(spark, uri).select("path").collect()]
        assert sorted(theirs) == sorted(ours)


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rgb_png(seed=seed))


def test_names_spark_hides_are_inputs_underscores_ingested_dots_skipped_and_listed(spark, lake, tmp_path):
    """A camera folder: cam/_DSC0001.JPG, cam/DSC0002.JPG, cam/.thumb.jpg, _drafts/DSC0003.JPG.
    Spark's listing shows one of them; every one is an input, with an outcome in the ledger."""
    root = tmp_path / "raw"
    for seed, name in enumerate(["cam/_DSC0001.JPG", "cam/DSC0002.JPG", "cam/.thumb.jpg", "_drafts/DSC0003.JPG",
                                 "_sub/.deeper/y.png", "x/_x.jpg"]):
        _image(root / name, seed)
    profile = _profile(lake, root)

    report = ingest_images(spark, profile)

    assert report.counts["inputs"] == 6
    assert (report.counts["ingested"], report.counts["skipped"], report.counts["quarantined"]) == (4, 2, 0)
    assert any("names starting with '.' were skipped" in w for w in report.warnings)
    ledger = {r.relative_path: (r.outcome, r.reason) for r in delta.read_table(spark, layout(profile).images_ledger).collect()}
    assert ledger == {
        "cam/_DSC0001.JPG": ("ingested", None), "cam/DSC0002.JPG": ("ingested", None),
        "_drafts/DSC0003.JPG": ("ingested", None), "x/_x.jpg": ("ingested", None),
        "cam/.thumb.jpg": ("skipped", "hidden_name"), "_sub/.deeper/y.png": ("skipped", "hidden_name"),
    }
    bronze = {r.relative_path: r for r in delta.read_table(spark, layout(profile).bronze_images).collect()}
    assert bronze["cam/_DSC0001.JPG"].content == (root / "cam/_DSC0001.JPG").read_bytes()
    assert bronze["_drafts/DSC0003.JPG"].label == "_drafts"

    again = ingest_images(spark, profile)
    assert (again.counts["inputs"], again.counts["files_already_seen"]) == (0, 6)

    taking_all = _profile(f"file:{tmp_path / 'lake-all'}", root, ("ingest_images.hidden_files", "ingest"))
    everything = ingest_images(spark, taking_all)
    assert (everything.counts["ingested"], everything.counts["skipped"]) == (6, 0)


def test_a_file_over_max_file_bytes_is_quarantined_unread_and_the_images_beside_it_ingested(spark, lake, tmp_path):
    """A sparse 2.2 GB file (no disk used) beside ordinary images: Spark never opens it."""
    root = tmp_path / "raw"
    for seed in range(3):
        _image(root / "cam" / f"{seed}.png", seed)
    big = root / "cam" / "raw-video.jpg"
    with open(big, "wb") as handle:
        handle.truncate(2_200_000_000)
    profile = _profile(lake, root)

    report = ingest_images(spark, profile)

    assert (report.counts["inputs"], report.counts["ingested"], report.counts["quarantined"]) == (4, 3, 1)
    assert report.details["quarantine_reasons"] == {"too_large": 1}
    (row,) = delta.read_table(spark, layout(profile).quarantine_images).collect()
    assert row.path.endswith("cam/raw-video.jpg") and row.reason == "too_large" and row.content is None
    assert "2,200,000,000 bytes is more than ingest_images.max_file_bytes = 2,000,000,000" in row.error
    again = ingest_images(spark, profile)
    assert again.counts["inputs"] == 0
    assert delta.read_table(spark, layout(profile).quarantine_images).count() == 1


def test_a_file_copied_over_itself_adds_no_row_anywhere(spark, lake, zoo):
    """Same bytes at the same path with a new modification time (a sync tool, the demo run twice):
    the file is read again, but bronze, quarantine and the ledger keep one row for it."""
    import os
    import time

    root, records = zoo
    profile = _profile(lake, root)
    ingest_images(spark, profile)
    counts = {u: delta.read_table(spark, u).count() for u in
              (layout(profile).bronze_images, layout(profile).quarantine_images, layout(profile).images_ledger)}
    later = time.time() + 60
    for rel in ("cat/tabby.png", "dog/also empty.png", next(p for p, r in records.items() if r.outcome != "ok")):
        os.utime(root / rel, (later, later))

    report = ingest_images(spark, profile)

    assert report.counts["inputs"] == 3
    assert {u: delta.read_table(spark, u).count() for u in counts} == counts
    ledger = delta.read_table(spark, layout(profile).images_ledger).where("relative_path = 'cat/tabby.png'").collect()
    assert [r.outcome for r in ledger] == ["ingested"]
    assert ingest_images(spark, profile).counts["inputs"] == 0  # the ledger has the new times


def test_a_photo_over_content_max_bytes_is_ingested_by_reference_and_a_change_to_it_is_reported(spark, lake, tmp_path):
    """bronze keeps a large file's path, size, sha256 and header facts, not its bytes; build_features
    reads it from the source, and quarantines it (saying why) once the file no longer has those bytes."""
    from sklearn.datasets import load_sample_image

    from lakeloop.features import build_features
    from support.imagefiles import encode, truncated

    from PIL import Image

    root = tmp_path / "raw"
    for seed in range(3):
        _image(root / "cam" / f"{seed}.png", seed)
    photo = root / "cam" / "china.jpg"
    photo.write_bytes(encode(Image.fromarray(load_sample_image("china.jpg")), "JPEG", quality=90))
    cut = root / "cam" / "cut.jpg"  # a large file cut short: checked from its source, refused with its reason
    cut.write_bytes(truncated(encode(Image.fromarray(load_sample_image("flower.jpg")), "JPEG", quality=95), 0.6))
    profile = _profile(lake, root, ("ingest_images.content_max_bytes", 20_000), ("features.join_table", None))

    report = ingest_images(spark, profile)

    assert (report.counts["inputs"], report.counts["ingested"], report.details["by_reference_files"]) == (5, 4, 2)
    assert report.counts["quarantined"] == 1 and report.details["quarantine_reasons"] == {"truncated": 1}
    (refused,) = delta.read_table(spark, layout(profile).quarantine_images).collect()
    assert refused.path.endswith("cam/cut.jpg") and refused.content is None and refused.length > 20_000
    assert refused.content_sha256 == hashlib.sha256(cut.read_bytes()).hexdigest()
    assert "truncated image data" in refused.error
    rows = {r.relative_path: r for r in delta.read_table(spark, layout(profile).bronze_images).collect()}
    big = rows["cam/china.jpg"]
    assert big.content is None and big.size_bytes == photo.stat().st_size > 20_000
    assert big.image_id == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert (big.format, big.width, big.height, big.mode) == ("JPEG", 640, 427, "RGB")
    assert all(rows[f"cam/{seed}.png"].content for seed in range(3))
    assert ingest_images(spark, profile).counts["inputs"] == 0

    photo.write_bytes(encode(Image.fromarray(load_sample_image("flower.jpg")), "JPEG", quality=90))
    built = build_features(spark, profile)

    assert (built.counts["images"], built.counts["quarantined"]) == (4, 1)
    assert any("ingested by reference are gone or changed" in w for w in built.warnings)
    (refused,) = delta.read_table(spark, layout(profile).quarantine_features).collect()
    assert refused.image_id == big.image_id and refused.path.endswith("cam/china.jpg")
    assert "changed since it was recorded" in refused.error and "run ingest_images again" in refused.error
    assert big.image_id in refused.error  # the sha256 it was ingested with

    again = ingest_images(spark, profile)  # the new version is a new image, again by reference
    assert (again.counts["inputs"], again.counts["ingested"]) == (1, 1)
    assert build_features(spark, profile).counts["quarantined"] == 0
    features = {r.image_id: r for r in delta.read_table(spark, layout(profile).features).collect()}
    new_id = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert len(features[new_id].pixels) == 32 * 32 and big.image_id not in features

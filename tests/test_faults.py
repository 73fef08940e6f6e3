"""Task failures: with ``faults.fail_task`` (a test profile setting) one Spark task of a job's work
fails on its first attempt; Spark runs it again, and the lake ends as a clean run leaves it, row for
row. One clean run per job is shared by the comparisons; each test records its figures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lakeloop.config import load_profile
from lakeloop.errors import ConfigError
from lakeloop.features import build_features
from lakeloop.ingest.images import ingest_images
from lakeloop.io import delta
from lakeloop.report import RunReport
from lakeloop.scoring import score_table
from support.imagefiles import ZOO_MAX_PIXELS, write_image_zoo_records
from support.lakes import copy_lake, layout
from support.reliability import lost_and_duplicated
from test_scoring import publish_lenet

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def _with_fault(lake_root: str, source: str, job: str, marker: Path):
    """The clean runs' settings, on ``lake_root``, with the first attempt of partition 0 of ``job``'s work failing."""
    return load_profile("test", [("lake_root", lake_root), *_settings(source),
                                 ("faults.fail_task", {"job": job, "partition": 0, "attempt": 0,
                                                       "marker": str(marker)})])


def _settings(source: str) -> list[tuple]:
    return [("ingest_images.source", source), ("ingest_images.max_pixels", ZOO_MAX_PIXELS),
            ("features.join_table", None), ("score.input", "images")]


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory):
    """The image zoo ingested, featurised and scored once, without faults; a lake after each step."""
    root = tmp_path_factory.mktemp("faults")
    write_image_zoo_records(root / "raw")
    ingested = load_profile("test", [("lake_root", f"file:{root}/ingested"), *_settings(f"file:{root}/raw")])
    ingest_images(spark, ingested)
    settings = _settings(f"file:{root}/raw")
    featurised = copy_lake(ingested, root / "featurised", *settings)
    build_features(spark, featurised)
    published = copy_lake(featurised, root / "published", *settings)
    publish_lenet(spark, published, seed=0, train_steps=0)
    scored = copy_lake(published, root / "scored", *settings)
    score_table(spark, scored)
    return {"ingested": ingested, "featurised": featurised, "published": published, "scored": scored}


def _fired(marker: Path, job: str) -> list[str]:
    return sorted(p.name for p in marker.glob(f"{job}-*")) if marker.is_dir() else []


def _rows(spark, uri: str, columns: list[str]) -> list[tuple]:
    def plain(value):
        return hashlib.sha256(value).hexdigest() if isinstance(value, (bytes, bytearray)) else value

    rows = delta.read_table(spark, uri).select(*columns).collect()
    return sorted(tuple(plain(v) if not isinstance(v, list) else tuple(round(x, 6) for x in v) for v in r)
                  for r in rows)


def test_a_decoding_task_that_fails_once_is_retried_and_ingestion_equals_a_clean_run(spark, clean, tmp_path,
                                                                                      reliability):
    faulted = _with_fault(f"file:{tmp_path / 'lake'}", clean["ingested"].ingest_images.source, "ingest_images",
                          tmp_path / "marker")

    ingest_images(spark, faulted)

    assert _fired(tmp_path / "marker", "ingest_images"), "the fault never fired"
    ours, theirs = layout(faulted), layout(clean["ingested"])
    ledger = _rows(spark, ours.images_ledger, ["path", "outcome", "image_id", "reason"])
    clean_ledger = _rows(spark, theirs.images_ledger, ["path", "outcome", "image_id", "reason"])
    lost, duplicated = lost_and_duplicated([r[0] for r in clean_ledger], [r[0] for r in ledger])
    reliability.record("a decoding task fails on its first attempt", "ingest_images", "faulted vs clean",
                       len(clean_ledger), lost, duplicated)
    assert [(r[0].split("/raw/")[1], *r[1:]) for r in ledger] == \
        [(r[0].split("/raw/")[1], *r[1:]) for r in clean_ledger]
    bronze_columns = ["image_id", "relative_path", "label", "format", "width", "height", "mode", "content"]
    assert _rows(spark, ours.bronze_images, bronze_columns) == _rows(spark, theirs.bronze_images, bronze_columns)
    assert _rows(spark, ours.quarantine_images, ["content_sha256", "reason", "error"]) == \
        _rows(spark, theirs.quarantine_images, ["content_sha256", "reason", "error"])


def test_a_preprocessing_task_that_fails_once_is_retried_and_features_equal_a_clean_run(spark, clean, tmp_path,
                                                                                         reliability):
    profile = copy_lake(clean["ingested"], tmp_path / "lake")
    faulted = _with_fault(profile.lake_root, profile.ingest_images.source, "build_features", tmp_path / "marker")

    build_features(spark, faulted)

    assert _fired(tmp_path / "marker", "build_features"), "the fault never fired"
    columns = ["image_id", "label", "split", "pixels"]
    ours = _rows(spark, layout(faulted).features, columns)
    theirs = _rows(spark, layout(clean["featurised"]).features, columns)
    lost, duplicated = lost_and_duplicated([r[0] for r in theirs], [r[0] for r in ours])
    reliability.record("a preprocessing task fails on its first attempt", "build_features", "faulted vs clean",
                       len(theirs), lost, duplicated)
    assert ours == theirs


def test_a_scoring_task_that_fails_once_is_retried_and_predictions_equal_a_clean_run(spark, clean, tmp_path,
                                                                                      reliability):
    profile = copy_lake(clean["published"], tmp_path / "lake")
    faulted = _with_fault(profile.lake_root, profile.ingest_images.source, "score", tmp_path / "marker")

    score_table(spark, faulted, RunReport("score", "faulted"))

    assert _fired(tmp_path / "marker", "score"), "the fault never fired"
    columns = ["image_id", "model_version", "label", "scores", "true_label"]
    ours = _rows(spark, layout(faulted).predictions, columns)
    theirs = _rows(spark, layout(clean["scored"]).predictions, columns)
    lost, duplicated = lost_and_duplicated([r[0] for r in theirs], [r[0] for r in ours])
    reliability.record("a scoring task fails on its first attempt", "score", "faulted vs clean", len(theirs), lost,
                       duplicated)
    assert ours == theirs


def test_a_fault_is_refused_in_a_profile_that_is_not_a_test_profile(lake):
    with pytest.raises(ConfigError, match="faults.fail_task .* refused in profile 'local'.*only in a test profile"):
        load_profile("local", [("lake_root", lake), ("faults.fail_task", {"job": "score"})])

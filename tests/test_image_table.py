"""A model that reads table columns beside each image (``features.table_inputs``): images of
noise whose class only a joined table column tells, ingested, featured, trained and scored
through the jobs; and the errors when the columns are not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from support.lakes import make_profile

PER_CLASS = 100
PREPROCESS = {"height": 16, "width": 16, "channels": 1, "resize": "pad", "mean": [0.5], "std": [0.5]}


def write_raw_zone(raw: Path) -> str:
    """Noise images in two label folders, and a CSV keyed by their paths whose ``hint`` is the
    class's sign (plus noise; one value missing) and whose ``colour`` says nothing."""
    from PIL import Image

    rng = np.random.default_rng(5)
    lines = ["path,hint,colour"]
    for label, sign in (("left", -1.0), ("right", 1.0)):
        (raw / "images" / label).mkdir(parents=True)
        for i in range(PER_CLASS):
            relative = f"{label}/n{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, size=(16, 16), dtype=np.uint8)).save(raw / "images" / relative)
            hint = "" if (label, i) == ("left", 7) else f"{sign + rng.normal(scale=0.3):.4f}"
            lines.append(f"{relative},{hint},{rng.choice(['red', 'blue'])}")
    (raw / "hints.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"file:{raw}"


def hinted_profile(lake: str, raw: str, *overrides):
    return make_profile(
        lake,
        ("ingest_images.source", f"{raw}/images"),
        ("ingest_tables.tables", {"hints": {"source": f"{raw}/hints.csv", "format": "csv", "keys": ["path"],
                                            "schema": "path STRING, hint DOUBLE, colour STRING",
                                            "options": {"header": "true"}}}),
        ("features.preprocess", PREPROCESS),
        ("features.join_table", "bronze.hints"), ("features.join_key", "path"),
        ("features.join_columns", ["hint", "colour"]),
        ("features.table_inputs", {"numeric": ["hint"], "categorical": ["colour"]}),
        ("features.training_set_files", 4),
        ("train.model", "lenet5"), ("train.model_name", "hinted"), ("train.epochs", 8), ("train.batch_size", 32),
        ("train.learning_rate", 0.03), ("train.augment", False), ("score.model", "hinted"), *overrides)


@pytest.fixture(scope="module")
def hinted(spark, tmp_path_factory):
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    root = tmp_path_factory.mktemp("hinted")
    profile = hinted_profile(f"file:{root}/lake", write_raw_zone(root / "raw"))
    ingest_images(spark, profile)
    ingest_tables(spark, profile)
    build_features(spark, profile)
    version = train(spark, profile, report=RunReport("train", "train-hinted"))
    return profile, version, score_table(spark, profile)


def test_a_model_reads_the_table_columns_beside_each_image_and_learns_what_only_the_table_knows(hinted):
    profile, version, _ = hinted
    metadata = Registry.for_profile(profile).read_metadata(version)
    assert metadata["input_kind"] == "image_table" and "preprocess" in metadata
    encoding = metadata["table_inputs"]["encoding"]
    assert [c["name"] for c in encoding["numeric"]] == ["hint"]
    assert encoding["numeric"][0]["train_rows_present"] < metadata["features"]["rows"]["train"]  # one missing
    assert [b["kind"] for b in metadata["model"]["spec"]["table_features"]] == ["numeric", "missing_indicator",
                                                                                 "categorical"]
    # The pixels are noise: only the hint column can take the model past a coin toss.
    assert metadata["metrics"]["test"]["accuracy"] > 0.9, metadata["metrics"]["test"]


def test_scoring_silver_features_hands_each_image_its_table_columns(spark, hinted):
    from lakeloop.layout import LakeLayout

    profile, version, report = hinted
    rows = delta.read_table(spark, LakeLayout(profile.lake_root).predictions).toPandas()
    assert report.counts["scored"] == len(rows) == 2 * PER_CLASS
    assert (rows["label"] == rows["true_label"]).mean() > 0.9


def test_score_batch_takes_the_table_columns_beside_the_pixels_without_spark(spark, hinted):
    from lakeloop.layout import LakeLayout
    from lakeloop.models import load_model
    from lakeloop.scoring.batch import score_batch

    profile, version, _ = hinted
    model, metadata = load_model(Registry.for_profile(profile), version)
    rows = delta.read_table(spark, LakeLayout(profile.lake_root).features).select(
        "pixels", "label", "hint", "colour").limit(40).toPandas()
    out = score_batch(model, metadata, list(rows["pixels"]), "pixels", table=rows[["hint", "colour"]])
    assert out["error"].isna().all() and (out["label"] == rows["label"]).mean() > 0.9
    with pytest.raises(ValueError, match=r"reads table column\(s\) \['hint', 'colour'\] beside each image"):
        score_batch(model, metadata, list(rows["pixels"]), "pixels")


def test_scoring_images_that_lack_the_models_table_columns_is_refused_with_the_fix(spark, hinted):
    import dataclasses

    from lakeloop.scoring import score_table

    profile, _, _ = hinted
    images = dataclasses.replace(profile, score=dataclasses.replace(profile.score, input="images"))
    with pytest.raises(ConfigError, match=r"reads table column\(s\) \['hint', 'colour'\] beside each image.*"
                                          r"score silver.features"):
        score_table(spark, images)


def test_table_inputs_must_be_columns_the_features_join():
    with pytest.raises(ConfigError, match=r"features.table_inputs names \['weight'\], which features.join_columns"):
        make_profile("file:/tmp/nowhere", ("features.table_inputs", {"numeric": ["weight"]}))
    with pytest.raises(ConfigError, match=r"features.table_inputs and features.table are both set"):
        make_profile("file:/tmp/nowhere", ("features.table_inputs", {"numeric": ["ink_fraction"]}),
                     ("features.table", {"source": "bronze.wine", "key": "k", "target": "t", "numeric": ["a"]}))


def test_a_second_training_run_reuses_the_image_and_table_training_set_with_its_encoding(spark, hinted):
    from lakeloop.training.dataset import materialize_training_set

    profile, version, _ = hinted
    again = materialize_training_set(spark, profile)
    assert again.reused and again.input_kind == "image_table"
    assert again.encoding == Registry.for_profile(profile).read_metadata(version)["table_inputs"]["encoding"]
    assert pd.read_parquet(again.root.removeprefix("file:") + "/train").columns.tolist() == [
        "image_id", "label_index", "pixels", "inputs"]

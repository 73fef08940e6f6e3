"""Real colour photographs through the whole pipeline (docs/platforms/local.md, "Colour photographs"):
tiles of scikit-learn's two sample photos, labelled by picture and quarter, ingested, featured, trained
with the built-in small_resnet and crop / flip / colour-jitter augmentation through
TorchDistributor, and scored inside Spark with the evaluation transform the model recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakeloop.config import load_profile
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop_dev.photos import write_photo_tiles

CLASSES = 8


def photos_profile(lake: Path, raw: Path, *overrides):
    """The colour photographs' profile (conf/local-photos.yaml, docs/platforms/local.md) pointed at this test's
    folders, with fewer epochs."""
    return load_profile("local-photos", [("lake_root", f"file:{lake}"), ("ingest_images.source", f"file:{raw}"),
                                         ("train.epochs", 6), *overrides])


@pytest.fixture(scope="module")
def photos(spark, tmp_path_factory):
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    root = tmp_path_factory.mktemp("photos")
    counts = write_photo_tiles(root / "raw")
    # Half the tiles (the larger JPEGs) are ingested by reference: features and scoring read them from raw/.
    sizes = sorted(p.stat().st_size for p in (root / "raw").rglob("*.jpg"))
    profile = photos_profile(root / "lake", root / "raw", ("ingest_images.content_max_bytes", sizes[len(sizes) // 2]))
    ingested = ingest_images(spark, profile)
    built = build_features(spark, profile)
    version = train(spark, profile, report=RunReport("train", "train-photos"))
    scored = score_table(spark, profile)
    return root, profile, counts, ingested, built, version, scored


def test_a_colour_model_learns_real_photographs_and_records_its_test_accuracy(photos):
    root, profile, counts, ingested, built, version, _ = photos
    assert len(counts) == CLASSES and ingested.counts["ingested"] == sum(counts.values())
    assert sum(counts.values()) // 2 - 10 < ingested.details["by_reference_files"] < sum(counts.values()) // 2 + 10
    assert built.details["classes"] == sorted(counts) and built.details["preprocess"]["channels"] == 3
    metadata = Registry.for_profile(profile).read_metadata(version)
    accuracy = metadata["metrics"]["test_accuracy"]
    print(f"small_resnet on {sum(counts.values())} photo tiles, {CLASSES} classes: test accuracy {accuracy:.3f}")
    assert metadata["model"]["name"] == "small_resnet" and metadata["input_shape"] == [3, 32, 32]
    assert metadata["training"]["augmentation"] == {"shift": 0, "crop_scale": [0.6, 1.0], "crop_ratio":
                                                    [0.75, 1.3333333333333333], "flip": True, "colour_jitter": 0.1}
    assert accuracy > 3 / CLASSES, metadata["metrics"]  # chance is 1/8


def test_scoring_uses_the_models_evaluation_transform_not_the_training_augmentation(spark, photos):
    """Scoring the same version again, in a copy of the lake, under a profile whose augmentation and
    feature preprocessing are quite different, gives the very same predictions: scoring prepares
    inputs with the spec the model recorded and never augments."""
    from lakeloop.scoring import score_table

    root, profile, _, _, _, version, scored = photos
    lake = LakeLayout(profile.lake_root)
    copy = root / "lake-copy"
    shutil.copytree(Path(profile.lake_root.removeprefix("file:")), copy)
    shutil.rmtree(Path(LakeLayout(f"file:{copy}").predictions.removeprefix("file:")))
    other = photos_profile(copy, Path(profile.ingest_images.source.removeprefix("file:")),
                           ("train.augmentation", {"shift": 4, "crop_scale": [0.2, 0.5], "flip": False,
                                                   "colour_jitter": 0.8}),
                           ("features.preprocess", {"height": 16, "width": 16, "channels": 1, "resize": "pad",
                                                    "mean": [0.5], "std": [0.5]}),
                           ("score.model", f"{version.name}:{version.version}"))

    again = score_table(spark, other)

    assert again.counts["scored"] == scored.counts["scored"] == sum(photos[2].values())
    assert scored.counts["quarantined"] == 0, scored.counts  # the files held by reference were read and scored
    columns = ["image_id", "label", "score"]
    first = delta.read_table(spark, lake.predictions).select(*columns).toPandas().sort_values("image_id")
    second = delta.read_table(spark, LakeLayout(other.lake_root).predictions).select(*columns).toPandas() \
        .sort_values("image_id")
    assert first["image_id"].tolist() == second["image_id"].tolist()
    assert first["label"].tolist() == second["label"].tolist()
    assert (first["score"].to_numpy() == second["score"].to_numpy()).all()


def test_encoded_features_are_decoded_and_cropped_by_training_and_centre_cropped_by_scoring(spark, photos):
    """features.preprocess.storage: encoded keeps each photo re-encoded (shorter side 40) instead of
    raw pixels, and says what a row costs in both modes; training decodes, crops and flips it, and
    scoring silver.features applies the model's evaluation transform (resize + centre crop)."""
    import hashlib

    from lakeloop.features import build_features
    from lakeloop.scoring import score_table
    from lakeloop.config import AugmentConfig
    from lakeloop.training.dataset import materialize_training_set
    from lakeloop.training.driver import train
    from lakeloop.training.loader import epoch_batches, plan_shards

    root, profile, counts, _, pixel_build, _, _ = photos
    copy = root / "lake-encoded"
    shutil.copytree(Path(profile.lake_root.removeprefix("file:")), copy)
    encoded = photos_profile(
        copy, Path(profile.ingest_images.source.removeprefix("file:")),
        ("features.preprocess", {"height": 32, "width": 32, "channels": 3, "resize": "crop", "crop_fraction": 0.875,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "storage": "encoded",
                                 "encoded_short_side": 40, "encoded_format": "JPEG", "encoded_quality": 90}),
        ("train.epochs", 2), ("train.model_name", "photo_regions_encoded"), ("score.model", "photo_regions_encoded"),
        ("score.input", "features"))

    built = build_features(spark, encoded)

    assert built.details["build"]["mode"] == "full" and built.counts["quarantined"] == 0
    assert pixel_build.details["stored_bytes_per_row"] == 32 * 32 * 3
    assert 300 < built.details["stored_bytes_per_row"] < 32 * 32 * 3, built.details["stored_bytes_per_row"]
    print(f"bytes per row: pixels {pixel_build.details['stored_bytes_per_row']}, "
          f"encoded JPEG {built.details['stored_bytes_per_row']}")
    version = train(spark, encoded, report=RunReport("train", "train-photos-encoded"))
    metadata = Registry.for_profile(encoded).read_metadata(version)
    assert metadata["preprocess"]["storage"] == "encoded" and metadata["preprocess"]["resize"] == "crop"
    assert metadata["metrics"]["test_accuracy"] is not None
    ts = materialize_training_set(spark, encoded)  # the set train wrote, reused
    plan = plan_shards(ts.split_uri("train"), world_size=2, batch_size=32)
    crops = AugmentConfig(shift=0, crop_scale=(0.3, 1.0), flip=True, colour_jitter=0.2)

    def digests(epoch: int) -> list[str]:
        return [hashlib.sha256(x.tobytes()).hexdigest() for x, _, _ in
                epoch_batches(ts.split_uri("train"), plan, ts.spec, rank=0, epoch=epoch, seed=3, augmentation=crops)]

    assert ts.reused and digests(1) == digests(1) != digests(2)  # decoded and cropped, the same for a seed
    scored = score_table(spark, encoded)
    assert scored.counts["scored"] == sum(counts.values()) and scored.counts["quarantined"] == 0

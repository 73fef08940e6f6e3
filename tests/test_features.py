"""silver.features: preprocessing exactly as specified, stable splits, idempotent reruns,
and the Petastorm training set: disjoint equal shards, reproducible order."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lakeloop.errors import ConfigError
from lakeloop.features import build_features
from lakeloop.features.silver import join_table_columns
from lakeloop.io import delta
from lakeloop.preprocess import SPLITS, PreprocessSpec, image_to_pixels, pixels_to_tensor, random_shift
from lakeloop.training.dataset import materialize_training_set
from lakeloop.training.loader import epoch_batches, plan_shards, shard_batches
from support.lakes import copy_lake, layout, make_profile

SPEC = PreprocessSpec(height=32, width=32, channels=1, resize="pad", mean=(0.5,), std=(0.5,))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pad_keeps_aspect_and_pads_black():
    white_16x8 = np.full((8, 16), 255, dtype=np.uint8)  # 16 wide, 8 high -> 32x16 band in the middle
    out = np.frombuffer(image_to_pixels(_png(white_16x8), SPEC), dtype=np.uint8).reshape(32, 32)
    assert (out[8:24] == 255).all()
    assert (out[:8] == 0).all() and (out[24:] == 0).all()


def test_stretch_fills_the_frame():
    spec = PreprocessSpec(32, 32, 1, "stretch", (0.5,), (0.5,))
    out = np.frombuffer(image_to_pixels(_png(np.full((8, 16), 200, np.uint8)), spec), np.uint8)
    assert (out == 200).all()


def test_colour_spec_and_modes():
    spec = PreprocessSpec(16, 16, 3, "pad", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[:8, :, 3] = 0  # transparent top half becomes black
    out = np.frombuffer(image_to_pixels(_png(rgba), spec), np.uint8).reshape(16, 16, 3)
    assert (out[8:, :, 0] == 255).all() and (out[8:, :, 1:] == 0).all()
    assert (out[:8] == 0).all()
    gray16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 256)
    out16 = np.frombuffer(image_to_pixels(_png(gray16), SPEC), np.uint8).reshape(32, 32)
    assert out16.max() == 255 and out16.min() == 0  # top 8 bits kept, not clipped to white


def test_normalisation_matches_the_spec():
    pixels = bytes([0, 255, 51, 102])
    spec = PreprocessSpec(2, 2, 1, "pad", (0.5,), (0.5,))
    tensor = pixels_to_tensor([pixels], spec)
    assert tensor.shape == (1, 1, 2, 2) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor.ravel(), [-1.0, 1.0, -0.6, -0.2], atol=1e-6)
    with pytest.raises(ValueError, match="does not match the preprocessing spec 2x2x1 = 4 bytes"):
        pixels_to_tensor([b"\x00" * 3], spec)


def test_random_shift_is_seeded_and_fills_black():
    batch = np.full((4, 1, 8, 8), 9, np.uint8)
    a = random_shift(batch, 2, np.random.default_rng([1, 2, 3]))
    b = random_shift(batch, 2, np.random.default_rng([1, 2, 3]))
    assert (a == b).all() and set(np.unique(a)) <= {0, 9}


@pytest.mark.quick
def test_features_hold_the_spec_pixels_of_each_bronze_image(spark, digits_lake):
    features = delta.read_table(spark, layout(digits_lake).features)
    bronze = delta.read_table(spark, layout(digits_lake).bronze_images)
    sample = features.join(bronze.select("image_id", "content"), "image_id").limit(20).collect()
    for row in sample:
        assert row.pixels == image_to_pixels(row.content, SPEC)
        assert (row.height, row.width, row.channels) == (32, 32, 1)
        assert row.label_index == int(row.label)  # classes "0".."9" sort to their own index
    assert features.count() == bronze.count() == 1797


@pytest.mark.quick
def test_split_is_stable_fractions_hold_and_rerun_commits_nothing(spark, digits_lake, tmp_path):
    profile = copy_lake(digits_lake, tmp_path / "lake")
    uri = layout(profile).features
    before = {r.image_id: r.split for r in delta.read_table(spark, uri).collect()}
    version = delta.table_version(spark, uri)

    report = build_features(spark, profile)

    assert report.details["build"] == {"mode": "incremental", "since_bronze_version": report.details["bronze_version"],
                                       "new_rows": 0}
    assert report.counts["images"] == report.counts["inserted"] == report.counts["updated"] == 0
    assert report.counts["split_train"] + report.counts["split_validation"] + report.counts["split_test"] == 1797
    assert delta.table_version(spark, uri) == version
    full = build_features(spark, make_profile(profile.lake_root, ("features.join_table", None),
                                              ("features.incremental", False)))
    assert full.details["build"] == {"mode": "full", "reason": "features.incremental is false"}
    assert full.counts["images"] == full.counts["unchanged"] == 1797
    assert delta.table_version(spark, uri) == version
    assert {r.image_id: r.split for r in delta.read_table(spark, uri).collect()} == before
    counts = {s: list(before.values()).count(s) for s in SPLITS}
    assert abs(counts["train"] / 1797 - 0.8) < 0.04 and abs(counts["test"] / 1797 - 0.1) < 0.03


def test_changed_spec_rewrites_rows_and_makes_a_new_training_set(spark, digits_lake, tmp_path):
    profile = copy_lake(digits_lake, tmp_path / "lake", ("features.preprocess.height", 28),
                        ("features.preprocess.width", 28))
    first = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "other"))
    report = build_features(spark, profile)
    assert report.counts["updated"] == 1797
    assert report.details["build"]["mode"] == "full" and "recipe changed" in report.details["build"]["reason"]
    assert "spec" in report.details["build"]["reason"]
    assert not any("preprocessed every image" in w for w in report.warnings)
    ts = materialize_training_set(spark, profile)
    assert ts.spec.height == 28 and ts.root != first.root


def _lake_with_new_digits(spark, digits_lake, lake, folder, count=12, before_ingest=None):
    """A copy of the demo lake (its profile) with ``count`` new PNGs, labelled by their folders
    "0".."9", ingested into its bronze; ``before_ingest(profile)`` runs on the copy first."""
    from lakeloop.ingest.images import ingest_images

    rng = np.random.default_rng(7)
    for k in range(count):
        (folder / str(k % 10)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(folder / str(k % 10) / f"new-{k}.png")
    profile = copy_lake(digits_lake, lake, ("ingest_images.source", f"file:{folder}"))
    if before_ingest:
        before_ingest(profile)
    assert ingest_images(spark, profile).counts["ingested"] == count
    return profile


def test_a_build_after_new_images_preprocesses_only_the_new_images(spark, digits_lake, tmp_path):
    profile = _lake_with_new_digits(spark, digits_lake, tmp_path / "lake", tmp_path / "new")
    lake = layout(profile)
    built_from = delta.read_table(spark, lake.features).select("source_version").distinct().collect()

    report = build_features(spark, profile)

    assert report.details["build"]["mode"] == "incremental" and report.details["build"]["new_rows"] == 12
    assert report.counts["images"] == report.counts["inserted"] == 12 and report.counts["quarantined"] == 0
    features = delta.read_table(spark, lake.features)
    assert features.count() == 1797 + 12
    new = features.where(f"source_version = {report.details['bronze_version']}").join(
        delta.read_table(spark, lake.bronze_images).select("image_id", "content"), "image_id").collect()
    assert len(new) == 12 and all(r.pixels == image_to_pixels(r.content, SPEC) for r in new)
    assert all(r.label_index == int(r.label) for r in new)
    # The rows built before keep the bronze version they were built from: nothing rewritten.
    assert features.where(f"source_version <> {report.details['bronze_version']}").select(
        "source_version").distinct().collect() == built_from


def test_a_build_killed_before_it_records_what_it_read_is_redone_without_adding_twice(
        spark, digits_lake, tmp_path, monkeypatch):
    profile = _lake_with_new_digits(spark, digits_lake, tmp_path / "lake", tmp_path / "new")
    clean = _lake_with_new_digits(spark, digits_lake, tmp_path / "clean", tmp_path / "new")
    build_features(spark, clean)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the properties commit")

    with monkeypatch.context() as patch:
        patch.setattr(delta, "set_table_properties", killed)
        with pytest.raises(KeyboardInterrupt):
            build_features(spark, profile)
    report = build_features(spark, profile)

    assert report.details["build"]["new_rows"] == 12 and report.counts["unchanged"] == 12
    assert report.counts["inserted"] == 0

    def rows(p):
        return sorted((r.image_id, r.label_index, r.split, r.pixels) for r in
                      delta.read_table(spark, layout(p).features).select("image_id", "label_index", "split", "pixels")
                      .collect())

    assert rows(profile) == rows(clean)
    properties = [delta.table_properties(spark, layout(p).features) for p in (profile, clean)]
    assert properties[0] == properties[1]


def test_a_build_with_a_new_spec_killed_halfway_leaves_the_next_build_a_full_one(spark, digits_lake, tmp_path,
                                                                                   monkeypatch):
    profile = copy_lake(digits_lake, tmp_path / "lake")
    smaller = make_profile(profile.lake_root, ("features.join_table", None), ("features.preprocess.height", 28),
                           ("features.preprocess.width", 28))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the properties commit")

    with monkeypatch.context() as patch:
        patch.setattr(delta, "set_table_properties", killed)
        with pytest.raises(KeyboardInterrupt):
            build_features(spark, smaller)  # every row rewritten at 28x28, then killed
    report = build_features(spark, profile)  # back to 32x32: must not trust the old record

    assert report.details["build"]["mode"] == "full" and report.counts["updated"] == 1797
    rows = delta.read_table(spark, layout(profile).features).select("height", "width").distinct().collect()
    assert [(r.height, r.width) for r in rows] == [(32, 32)]


def test_a_bronze_table_whose_change_feed_was_off_is_built_in_full_with_a_warning(spark, digits_lake, tmp_path):
    def feed_off(profile):
        spark.sql(f"ALTER TABLE delta.`{layout(profile).bronze_images}` "
                  f"SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'false')")

    # ingest_images turns the feed on again, then adds the rows: one version has no change data.
    profile = _lake_with_new_digits(spark, digits_lake, tmp_path / "lake", tmp_path / "new", before_ingest=feed_off)

    report = build_features(spark, profile)

    assert report.details["build"]["mode"] == "full"
    assert "DELTA_MISSING_CHANGE_DATA" in report.details["build"]["reason"]
    assert report.counts["images"] == 1797 + 12 and report.counts["inserted"] == 12
    assert any("preprocessed every image" in w for w in report.warnings)
    assert build_features(spark, profile).details["build"] == {
        "mode": "incremental", "since_bronze_version": report.details["bronze_version"], "new_rows": 0}


def test_training_set_is_reused_while_version_and_spec_match(spark, digits_lake, tmp_path):
    profile = copy_lake(digits_lake, tmp_path / "lake")
    first = materialize_training_set(spark, profile)
    again = materialize_training_set(spark, profile)
    assert not first.reused and again.reused and again.root == first.root
    assert sum(first.rows.values()) == 1797


def test_shards_are_disjoint_equal_and_cover_the_training_set(spark, digits_lake, tmp_path):
    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))
    url = ts.split_uri("train")
    plan = plan_shards(url, world_size=2, batch_size=50)
    seen, steps = [], []
    for rank in range(2):
        batches = list(epoch_batches(url, plan, ts.spec, rank=rank, epoch=0, seed=3))
        steps.append(len(batches))
        assert all(len(y) == 50 for _, y, _ in batches)
        seen.append({i for _, _, ids in batches for i in ids})
    assert steps[0] == steps[1] == plan.steps_per_epoch
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == ts.rows["train"] == plan.total_rows


def test_epoch_order_is_a_function_of_seed_epoch_rank(spark, digits_lake, tmp_path):
    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))
    url = ts.split_uri("train")
    plan = plan_shards(url, world_size=2, batch_size=32)

    def order(epoch, seed=5, rank=0):
        return [tuple(ids) for _, _, ids in epoch_batches(url, plan, ts.spec, rank=rank, epoch=epoch, seed=seed,
                                                          max_shift=2)]

    def pixels(epoch):
        return np.concatenate([x for x, _, _ in epoch_batches(url, plan, ts.spec, rank=1, epoch=epoch, seed=5,
                                                              max_shift=2)])

    assert order(0) == order(0)
    assert order(1) != order(0)
    assert order(0, seed=6) != order(0)
    assert (pixels(2) == pixels(2)).all()


def test_an_epoch_with_crops_flips_and_jitter_is_the_same_batches_for_the_same_seed(spark, digits_lake, tmp_path):
    """Augmentation on (random resized crop, flip, colour jitter, shift): the batches of (seed, epoch,
    rank), hashed, are identical run after run, and another epoch gets other batches."""
    import hashlib

    from lakeloop.config import AugmentConfig

    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))
    url = ts.split_uri("train")
    plan = plan_shards(url, world_size=2, batch_size=32)
    augmentation = AugmentConfig(shift=2, crop_scale=(0.6, 1.0), flip=True, colour_jitter=0.3)

    def digests(epoch: int) -> list[str]:
        return [hashlib.sha256(x.tobytes() + ids.astype("U64").tobytes()).hexdigest() for x, _, ids in
                epoch_batches(url, plan, ts.spec, rank=1, epoch=epoch, seed=5, augmentation=augmentation)]

    first = digests(2)
    assert len(first) == plan.steps_per_epoch
    assert digests(2) == first
    assert not set(digests(3)) & set(first)
    plain = np.concatenate([x for x, _, _ in epoch_batches(url, plan, ts.spec, rank=1, epoch=2, seed=5)])
    augmented = np.concatenate([x for x, _, _ in epoch_batches(url, plan, ts.spec, rank=1, epoch=2, seed=5,
                                                               augmentation=augmentation)])
    assert plain.shape == augmented.shape and not np.allclose(plain, augmented)


def _uneven_training_set(folder, sizes=(7, 300, 45, 130, 61)):
    """A training set of row groups of uneven sizes; image ``k`` is filled with ``k % 251``, label ``k % 10``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    k = 0
    for f, n in enumerate(sizes):
        ids = range(k, k + n)
        pq.write_table(pa.table({
            "image_id": pa.array([f"img-{i:04d}" for i in ids]),
            "label_index": pa.array([i % 10 for i in ids], pa.int32()),
            "pixels": pa.array([bytes([i % 251]) * SPEC.pixel_bytes for i in ids], pa.binary()),
        }), folder / f"part-{f:05d}.parquet")
        k += n
    return f"file:{folder}"


@pytest.mark.parametrize("batch_size", [16, 100, 333])
def test_every_batch_holds_each_rows_own_pixels_and_label_across_uneven_row_groups(tmp_path, batch_size):
    url = _uneven_training_set(tmp_path / "train")
    plan = plan_shards(url, world_size=2, batch_size=batch_size)
    for rank in range(2):
        batches = list(epoch_batches(url, plan, SPEC, rank=rank, epoch=0, seed=1))
        assert len(batches) == plan.steps_per_epoch and all(len(y) == batch_size for _, y, _ in batches)
        for x, y, ids in batches:
            k = np.array([int(i.removeprefix("img-")) for i in ids])
            assert x.shape == (batch_size, 1, 32, 32) and x.dtype == np.float32
            np.testing.assert_allclose(x[:, 0, 5, 7], ((k % 251) / 255.0 - 0.5) / 0.5, atol=1e-6)
            assert (y == k % 10).all()
        assert len({i for _, _, ids in batches for i in ids}) == plan.rows_per_rank[rank]


def test_too_many_processes_for_the_row_groups_is_a_clear_error(spark, digits_lake, tmp_path):
    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))
    with pytest.raises(ConfigError, match="has 8 row groups but 9 training processes"):
        plan_shards(ts.split_uri("train"), world_size=9, batch_size=32)


def test_evaluation_pass_reads_every_row_once(spark, digits_lake, tmp_path):
    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))
    ids = [i for rank in range(2) for _, _, batch in
           shard_batches(ts.split_uri("validation"), ts.spec, rank=rank, world=2, batch_size=64) for i in batch]
    assert len(ids) == len(set(ids)) == ts.rows["validation"]


def test_an_evaluation_split_of_fewer_row_groups_than_processes_is_read_once_not_refused(spark, digits_lake, tmp_path):
    ts = materialize_training_set(spark, copy_lake(digits_lake, tmp_path / "lake"))  # 8 files a split
    ids = [i for rank in range(11) for _, _, batch in
           shard_batches(ts.split_uri("validation"), ts.spec, rank=rank, world=11, batch_size=64) for i in batch]
    assert len(ids) == len(set(ids)) == ts.rows["validation"]


def test_join_table_wrong_column_is_a_clear_error(spark):
    features = spark.createDataFrame([("a", "x/1.png")], "image_id STRING, relative_path STRING")
    table = spark.createDataFrame([("x/1.png", 1.0)], "file STRING, ink DOUBLE")
    with pytest.raises(ConfigError, match=r"has no column\(s\) \['path'\].*features.join_key"):
        join_table_columns(features, table, "path", ("ink",))
    joined = join_table_columns(features, table, "file", ("ink",))
    assert joined.first().ink == 1.0


def test_encoded_storage_bounds_a_photo_and_the_centre_crop_matches_torchvision():
    """storage: encoded keeps a 640x427 photo as a JPEG with its shorter side at 256; resize: crop of it
    is torchvision's Resize(256) + CenterCrop(224), to within rounding."""
    import io

    from PIL import Image
    from sklearn.datasets import load_sample_image
    from torchvision import transforms

    from lakeloop.preprocess import stored_image

    photo = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(photo, "PNG")
    spec = PreprocessSpec(224, 224, 3, "crop", (0.5,) * 3, (0.5,) * 3, storage="encoded")

    stored = stored_image(photo.getvalue(), spec)

    with Image.open(io.BytesIO(stored)) as img:
        assert (img.format, img.size) == ("JPEG", (384, 256))
    ours = np.frombuffer(image_to_pixels(stored, spec), dtype=np.uint8).reshape(224, 224, 3).astype(int)
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(
        Image.open(io.BytesIO(stored)).convert("RGB"))
    assert np.abs(ours - np.asarray(reference, dtype=int)).mean() < 1
    assert len(stored) < 224 * 224 * 3 / 3


def test_a_flip_alone_mirrors_images_and_neither_crops_nor_zooms():
    from lakeloop.preprocess import normalize
    from lakeloop.config import AugmentConfig
    from lakeloop.training.augment import augment_batch

    spec = PreprocessSpec(16, 16, 3, "pad", (0.5,) * 3, (0.5,) * 3)
    batch = np.random.default_rng(4).integers(0, 256, size=(32, 3, 16, 16), dtype=np.uint8)

    flipped = augment_batch(batch, spec, AugmentConfig(shift=0, flip=True), np.random.default_rng(5))

    plain = normalize(batch, spec)
    same = [np.allclose(f, p, atol=1e-5) for f, p in zip(flipped, plain)]
    mirrored = [np.allclose(f, p[:, :, ::-1], atol=1e-5) for f, p in zip(flipped, plain)]
    assert all(a or b for a, b in zip(same, mirrored)) and 0 < sum(mirrored) < len(batch)

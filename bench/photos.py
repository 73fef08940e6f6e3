"""Benchmark: 224x224 colour photographs, the path where decoding is the cost (issue 12, item 5).

    PYTHONPATH=lib:dev ./.venv/bin/python bench/photos.py [--images 1200] [--score-images 512]

Data: ``--images`` synthetic colour JPEGs of 320x240 (smooth random colour fields with noise,
quality 90: what ``features.preprocess.storage: encoded`` keeps of a photo, shorter side
under 256) in 8 Parquet files, laid out as a training set (image_id, label_index, pixels).

Feeding, one process, ``torch.set_num_threads(1)`` (one reader worker's share of the cores):

* lakeloop's feed (Arrow reader, no prefetch thread: one thread, as bare): per image a Pillow decode
  and a random resized crop to 224x224 with a flip (``train.augmentation``: crop_scale
  [0.08, 1], flip, colour_jitter 0.4), then shift-free colour jitter and normalisation for the
  whole chunk at once; batches of 64;
* bare Pillow + torchvision: ``pyarrow`` reads the same files; per image ``Image.open`` and
  ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, ``ColorJitter(0.4, 0.4, 0.4)``,
  ``ToTensor()``, ``Normalize``, stacked into batches of 64.

Scoring, a torchvision ResNet-18 (random weights) on ``--score-images`` of the same files, the
evaluation transform (resize the shorter side to 256, centre crop 224, normalise):

(a) ``lakeloop.scoring.udf.score`` over a Parquet DataFrame of the JPEG bytes as silver.features
    holds them (``pixels`` of an encoded spec), local[2], one torch thread per task, cold (a fresh
    SparkContext) and warm (a second pass);
(b) a bare PyTorch loop in this process, two torch threads: Pillow decode + torchvision
    ``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``, ``Normalize`` per image, forward,
    softmax, argmax per batch of 32;
(b2) the same loop calling ``lakeloop.scoring.batch.score_batch`` on the same stored JPEG bytes.

Prints two markdown tables of images/s with the ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)

SIZE, BATCH, SCORE_BATCH = 224, 64, 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def synthetic_photo(rng: np.random.Generator, width: int = 320, height: int = 240) -> bytes:
    """A smooth random colour field with fine noise, as a JPEG (compresses like a photograph, not like noise)."""
    from PIL import Image

    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = np.clip(field + rng.integers(-12, 13, size=field.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_training_set(folder: Path, images: int, files: int = 8) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = [synthetic_photo(rng) for _ in range(images)]
    per = -(-images // files)
    for f in range(files):
        part = photos[f * per:(f + 1) * per]
        pq.write_table(pa.table({
            "image_id": pa.array([f"{f:02d}-{i:05d}" for i in range(len(part))]),
            "label_index": pa.array(rng.integers(0, 10, len(part)), pa.int32()),
            "pixels": pa.array(part, pa.binary()),
        }), folder / f"part-{f:05d}.parquet")
    return photos


def spec():
    from lakeloop.preprocess import PreprocessSpec

    return PreprocessSpec(SIZE, SIZE, 3, "crop", MEAN, STD, storage="encoded")


def feed_lakeloop(url: str) -> tuple[int, float]:
    from lakeloop.config import AugmentConfig
    from lakeloop.training.loader import epoch_batches, plan_shards

    plan = plan_shards(url, 1, BATCH)
    augmentation = AugmentConfig(shift=0, crop_scale=(0.08, 1.0), flip=True, colour_jitter=0.4)
    start, rows = time.perf_counter(), 0
    for x, y, _ in epoch_batches(url, plan, spec(), rank=0, epoch=0, seed=1, augmentation=augmentation,
                                 prefetch=0):
        assert x.shape[1:] == (3, SIZE, SIZE)
        rows += len(y)
    return rows, time.perf_counter() - start


def feed_bare(folder: Path) -> tuple[int, float]:
    import pyarrow.parquet as pq
    import torch
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([transforms.RandomResizedCrop(SIZE), transforms.RandomHorizontalFlip(),
                                    transforms.ColorJitter(0.4, 0.4, 0.4), transforms.ToTensor(),
                                    transforms.Normalize(MEAN, STD)])
    start, rows = time.perf_counter(), 0
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=["label_index", "pixels"]):
            x = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in batch.column(1).to_pylist()])
            assert x.shape[1:] == (3, SIZE, SIZE)
            rows += len(x)
    return rows, time.perf_counter() - start


def publish(root: str):
    import torch

    from lakeloop.models import ModelSpec, build_model, model_record, state_dict_bytes
    from lakeloop.registry import Registry

    torch.manual_seed(0)
    model_spec = ModelSpec(num_outputs=10, input_shape=(3, SIZE, SIZE), class_names=tuple(str(i) for i in range(10)))
    model = build_model("resnet18", model_spec)
    metadata = {"model": model_record("resnet18", model_spec), "classes": [str(i) for i in range(10)],
                "preprocess": json.loads(spec().to_json()), "input_shape": [3, SIZE, SIZE]}
    return Registry(root).publish("bench_photos_resnet18", state_dict_bytes(model), metadata)


def score_bare(model, photos: list[bytes]) -> float:
    import torch
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(round(SIZE / 0.875)), transforms.CenterCrop(SIZE),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(0, len(photos), SCORE_BATCH):
            x = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in photos[i:i + SCORE_BATCH]])
            torch.softmax(model(x).double(), dim=1).numpy().argmax(axis=1)
        return len(photos) / (time.perf_counter() - start)


def score_batch_loop(model, metadata, photos: list[bytes]) -> float:
    from lakeloop.scoring.batch import score_batch

    start = time.perf_counter()
    for i in range(0, len(photos), SCORE_BATCH):
        out = score_batch(model, metadata, photos[i:i + SCORE_BATCH], "pixels", "cpu")
        assert out["error"].isna().all()
    return len(photos) / (time.perf_counter() - start)


def score_spark(new_session, registry, version, uri: str, rows: int) -> tuple[float, float]:
    from pyspark.sql import functions as F

    from lakeloop.scoring.udf import arrow_batch_settings, score, scoped_conf

    spark = new_session()
    scored = score(spark.read.parquet(uri), version, registry=registry, input_col="pixels", input_kind="pixels",
                   batch_size=SCORE_BATCH, torch_threads=1)
    rates = []
    for _ in range(2):
        with scoped_conf(spark, arrow_batch_settings(SCORE_BATCH, 256 << 20)):
            start = time.perf_counter()
            total = scored.agg(F.sum("prediction.score"), F.count(F.lit(1)), F.count("prediction.error")).first()
            rates.append(rows / (time.perf_counter() - start))
        assert total[1] == rows and total[2] == 0, total
    return rates[0], rates[1]


def main() -> None:
    import torch

    from lakeloop.config import load_profile
    from lakeloop.models import load_model
    from lakeloop.registry import Registry
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--score-images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="feeding passes per reader, the fastest kept")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-photos-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}", flush=True)
    try:
        photos = write_training_set(work / "train", args.images)
        print(f"{len(photos):,} JPEGs, {np.mean([len(p) for p in photos]) / 1024:.1f} KiB each on average", flush=True)
        torch.set_num_threads(1)
        feeds = {"lakeloop": [], "bare": []}
        for _ in range(args.repeats):  # interleaved rounds, fastest kept
            feeds["lakeloop"].append(feed_lakeloop(f"file://{work / 'train'}"))
            feeds["bare"].append(feed_bare(work / "train"))
        feed = {name: max(runs, key=lambda r: r[0] / r[1]) for name, runs in feeds.items()}
        for name, (rows, seconds) in feed.items():
            print(f"  feed {name}: {rows:,} images in {seconds:.2f}s = {rows / seconds:,.0f} images/s", flush=True)

        root = f"file:{work / 'models'}"
        version = publish(root)
        registry = Registry(root)
        model, metadata = load_model(registry, version)
        sample = photos[:args.score_images]
        torch.set_num_threads(2)
        score_bare(model, sample[:SCORE_BATCH])  # first-use allocations out of the timing
        bare = score_bare(model, sample)
        loop = score_batch_loop(model, metadata, sample)
        print(f"  score: bare {bare:,.1f}, score_batch loop {loop:,.1f} images/s", flush=True)
        import pyarrow as pa
        import pyarrow.parquet as pq

        (work / "score").mkdir()
        half = -(-len(sample) // 2)
        for i in range(2):  # one file per core
            pq.write_table(pa.table({"pixels": pa.array(sample[i * half:(i + 1) * half], pa.binary())}),
                           work / "score" / f"part-{i}.parquet")
        profile = load_profile("local", [("spark.master", "local[2]"), ("lake_root", f"file:{work / 'lake'}")])
        sessions = []

        def new_session():
            if sessions:
                sessions[-1].stop()
            sessions.append(build_session(profile, app_name="lakeloop-bench-photos"))
            return sessions[-1]

        try:
            new_session().read.parquet(f"file:{work / 'score'}").selectExpr("sum(length(pixels))").collect()
            cold, warm = score_spark(new_session, registry, version, f"file:{work / 'score'}", len(sample))
        finally:
            sessions[-1].stop()
        print(f"  score: lakeloop UDF cold {cold:,.1f}, warm {warm:,.1f} images/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    (lake_rows, lake_s), (bare_rows, bare_s) = feed["lakeloop"], feed["bare"]
    print()
    print("| training feed, 224x224x3 from JPEG, 1 thread | images | seconds | images/s | vs bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| bare Pillow decode + torchvision RandomResizedCrop, flip, ColorJitter, ToTensor, Normalize "
          f"| {bare_rows:,} | {bare_s:.2f} | {bare_rows / bare_s:,.0f} | 1.00x |")
    print(f"| lakeloop feed (Arrow reader, no prefetch): decode + crop + flip per image, jitter + normalise per chunk "
          f"| {lake_rows:,} | {lake_s:.2f} | {lake_rows / lake_s:,.0f} | {(lake_rows / lake_s) / (bare_rows / bare_s):.2f}x |")
    print()
    print("| scoring, ResNet-18, 224x224x3 from JPEG | images/s | vs bare PyTorch |")
    print("| --- | ---: | ---: |")
    print(f"| (b) bare PyTorch loop: Pillow + torchvision Resize, CenterCrop, ToTensor, Normalize; 2 threads "
          f"| {bare:,.1f} | 1.00x |")
    print(f"| (b2) lakeloop score_batch loop, same process, 2 threads | {loop:,.1f} | {loop / bare:.2f}x |")
    print(f"| (a) lakeloop scoring UDF, local[2], warm | {warm:,.1f} | {warm / bare:.2f}x |")
    print(f"| (a) lakeloop scoring UDF, local[2], cold (fresh SparkContext) | {cold:,.1f} | {cold / bare:.2f}x |")


if __name__ == "__main__":
    main()

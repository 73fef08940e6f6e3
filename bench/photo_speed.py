"""Photographs at the speed of the JPEG decoder (issue 39): lakeloop's ingest_images + build_features
beside a bare 2-process Pillow loop and Daft, on everyday photos and on camera-size ones; and
scoring the camera photos with ResNet-18 beside bare PyTorch.

    PYTHONPATH=lib:dev ./.venv/bin/python bench/photo_speed.py [--everyday 2000] [--camera 300]
                                                               [--no-daft] [--no-score] [--draft both|on|off]

The photos are made once under build/bench-photos/ from the two photographs scikit-learn ships
(china.jpg, flower.jpg, 427 x 640): a random 4:3 crop, rescaled to 640 x 480 (everyday, JPEG
quality 85, about 100 KB) or 4032 x 3024 (camera, quality 92, about 3 MB), with sensor-like noise,
under two label folders. No downloads.

Every tool does the same work on the same folder, one after the other on the same 2 cores: read
every file, keep its bytes with a digest, decode to RGB, shorter side to 256, encode JPEG at
quality 90, write. The bare loop (2 processes, one full decode per photo, SHA-256, Parquet with
pyarrow) and Daft (its own environment, bench/daft_photo_peer.py) write Parquet; lakeloop writes
bronze, the ledger and quarantine, and silver.features stored encoded (shorter side 256, JPEG 90)
for a 224 x 224 model, in a local[2] session warmed on 40 photos first, to a fresh lake each time. ``--draft both``
runs lakeloop twice, with ``features.preprocess.jpeg_draft`` on and off.

A sampler keeps the largest resident memory of any Python process below this one (Spark's Python
workers) per step. The score row publishes an untrained ResNet-18 (the speed does not depend on
the weights) and scores ``--input images`` of the camera photos; bare PyTorch decodes with Pillow,
applies torchvision's Resize(256) + CenterCrop(224) + normalisation and runs the forward pass in
batches of 32 on 2 threads. Prints one table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import DAFT_ENV, PeakMemory, daft_python  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "build" / "bench-photos"
SIZES = {"everyday": ((640, 480), 85), "camera": ((4032, 3024), 92)}


# ---------------------------------------------------------------------------------------- the photos


def _make_one(job: tuple[str, int, tuple[int, int], int]) -> int:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    target, seed, (width, height), quality = job
    rng = np.random.default_rng(seed)
    sample = load_sample_images()
    which = int(rng.integers(len(sample.images)))
    base = Image.fromarray(sample.images[which])
    crop_h = int(base.height * rng.uniform(0.6, 1.0))
    crop_w = min(base.width, int(crop_h * 4 / 3))
    left, top = int(rng.integers(0, base.width - crop_w + 1)), int(rng.integers(0, base.height - crop_h + 1))
    photo = base.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Sensor-like noise from a 512 x 512 tile at a random offset: cheap even at 12 MP.
    tile = rng.normal(0, 5, (512, 512, 3)).astype(np.int16)
    reps = (height // 512 + 2, width // 512 + 2, 1)
    dy, dx = int(rng.integers(512)), int(rng.integers(512))
    noise = np.tile(tile, reps)[dy:dy + height, dx:dx + width]
    pixels = (np.asarray(photo, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)
    path = Path(target) / ("china" if which == 0 else "flower") / f"photo_{seed:05d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=quality)
    return path.stat().st_size


def make_photos(kind: str, count: int) -> Path:
    """build/bench-photos/<kind>-<count>, made on first use (2 processes)."""
    from multiprocessing import get_context

    folder = PHOTOS / f"{kind}-{count}"
    if (folder / "done.txt").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    size, quality = SIZES[kind]
    print(f"making {count} {kind} photos ({size[0]} x {size[1]}) in {folder}", flush=True)
    with get_context("fork").Pool(2) as pool:
        total = sum(pool.imap_unordered(_make_one, [(str(folder), i, size, quality) for i in range(count)], 4))
    (folder / "done.txt").write_text(f"{count} photos, {total} bytes\n")
    return folder


def _photos(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


# ---------------------------------------------------------------------------------------- the bare loop


def _bare_part(job: tuple[list[str], str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    paths, out = job
    schema = pa.schema([("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()),
                        ("content", pa.binary()), ("thumb", pa.binary())])
    rows: dict[str, list] = {name: [] for name in schema.names}
    with pq.ParquetWriter(out, schema) as writer:
        for number, path in enumerate(paths, 1):
            content = Path(path).read_bytes()
            with Image.open(io.BytesIO(content)) as img:
                rgb = img.convert("RGB")  # one full decode
            scale = 256 / min(rgb.size)
            thumb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
            encoded = io.BytesIO()
            thumb.save(encoded, "JPEG", quality=90)
            for name, value in zip(schema.names, (path, len(content), hashlib.sha256(content).hexdigest(), content,
                                                  encoded.getvalue())):
                rows[name].append(value)
            if number % 16 == 0 or number == len(paths):
                writer.write_table(pa.table(rows, schema=schema))
                rows = {name: [] for name in schema.names}
    return len(paths)


def bare_loop(folder: Path, out: Path, processes: int = 2) -> float:
    from multiprocessing import get_context

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    paths = [str(p) for p in _photos(folder)]
    parts = [(paths[i::processes], str(out / f"part-{i}.parquet")) for i in range(processes)]
    start = time.perf_counter()
    with get_context("fork").Pool(processes) as pool:
        done = sum(pool.map(_bare_part, parts))
    assert done == len(paths)
    return time.perf_counter() - start


def daft_run(folder: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([str(daft_python()), str(REPO / "bench" / "daft_photo_peer.py"), str(folder), str(out)],
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == len(_photos(folder)), result
    return result["seconds"]


# ---------------------------------------------------------------------------------------- lakeloop


def photo_profile(lake: Path, source: Path, draft: bool, *overrides):
    from lakeloop.config import load_profile

    return load_profile("local", [
        ("spark.master", "local[2]"), ("lake_root", f"file:{lake}"), ("ingest_images.source", f"file:{source}"),
        ("features.join_table", None),
        ("features.preprocess", {"height": 224, "width": 224, "channels": 3, "resize": "crop", "storage": "encoded",
                                 "encoded_short_side": 256, "encoded_quality": 90, "mean": [0.485, 0.456, 0.406],
                                 "std": [0.229, 0.224, 0.225], "jpeg_draft": draft}),
        ("ingest_images.jpeg_draft", draft),
        ("observe.tensorboard", False), *overrides])


def lakeloop_run(spark, folder: Path, work: Path, draft: bool, memory: PeakMemory, label: str) -> dict:
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.report import RunReport

    lake = work / f"lake-{label}"
    shutil.rmtree(lake, ignore_errors=True)
    profile = photo_profile(lake, folder, draft)
    result = {}
    for step, run in (("ingest", ingest_images), ("features", build_features)):
        memory.step = f"{label}:{step}"
        report = RunReport.start(step)
        start = time.perf_counter()
        run(spark, profile, report)
        result[step] = time.perf_counter() - start
        memory.step = None
        result[f"{step}_parts"] = {k: round(v, 1) for k, v in report.durations_s.items()}
        result[f"{step}_counts"] = dict(report.counts)
    result["peak_mib"] = max(memory.peaks.get(f"{label}:ingest", 0), memory.peaks.get(f"{label}:features", 0))
    result["profile"] = profile
    return result


# ---------------------------------------------------------------------------------------- scoring


def publish_resnet(profile) -> str:
    import torch

    from lakeloop.io import delta  # noqa: F401 - the lake's session is up
    from lakeloop.models import ModelSpec, build_model, state_dict_bytes
    from lakeloop.preprocess import PreprocessSpec
    from lakeloop.registry import Registry

    spec = PreprocessSpec.from_config(profile.features.preprocess)
    torch.manual_seed(0)
    model = build_model("resnet18", ModelSpec(num_outputs=2, input_shape=(3, 224, 224)))
    metadata = {"architecture": "resnet18", "classes": ["china", "flower"],
                "preprocess": json.loads(spec.to_json()), "input_shape": [3, 224, 224], "metrics": {},
                "features": {}, "training": {"seed": 0, "run_id": "bench"}, "code_version": "bench",
                "torch_version": torch.__version__}
    Registry.for_profile(profile).publish("photo_resnet", state_dict_bytes(model), metadata)
    return "photo_resnet"


def bare_torch_score(folder: Path, batch: int = 32) -> float:
    import torch
    from PIL import Image
    from torchvision import transforms

    from lakeloop.models import ModelSpec, build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("resnet18", ModelSpec(num_outputs=2, input_shape=(3, 224, 224))).eval()
    prepare = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                  transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    paths = _photos(folder)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            tensors = []
            for path in paths[i:i + batch]:
                with Image.open(path) as img:
                    tensors.append(prepare(img.convert("RGB")))
            model(torch.stack(tensors)).softmax(dim=1)
    return time.perf_counter() - start


def lakeloop_score(spark, profile, model: str) -> tuple[float, dict]:
    import dataclasses

    from lakeloop.report import RunReport
    from lakeloop.scoring import score_table

    cfg = dataclasses.replace(profile.score, model=model, input="images", torch_threads_per_task=1)
    scoring = dataclasses.replace(profile, score=cfg)
    report = RunReport.start("score")
    start = time.perf_counter()
    score_table(spark, scoring, report)
    return time.perf_counter() - start, dict(report.counts)


# ---------------------------------------------------------------------------------------- the table


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--everyday", type=int, default=2000, help="640 x 480 photos (0: none)")
    parser.add_argument("--camera", type=int, default=300, help="4032 x 3024 photos (0: none)")
    parser.add_argument("--no-daft", action="store_true", help=f"skip Daft (its environment: {DAFT_ENV})")
    parser.add_argument("--no-score", action="store_true", help="skip the ResNet-18 scoring row")
    parser.add_argument("--draft", choices=("both", "on", "off"), default="both",
                        help="features.preprocess.jpeg_draft for lakeloop's runs")
    args = parser.parse_args()

    from lakeloop.runtime.session import build_session

    folders = {kind: make_photos(kind, n) for kind, n in (("everyday", args.everyday), ("camera", args.camera)) if n}
    drafts = {"both": (True, False), "on": (True,), "off": (False,)}[args.draft]
    work = Path(tempfile.mkdtemp(prefix="photo-speed-"))
    print(f"load average at the start: {_load()}", flush=True)
    results: dict[str, dict] = {}
    with PeakMemory() as memory:
        spark = build_session(photo_profile(work / "lake", next(iter(folders.values())), True), app_name="photo-speed")
        # Warm the session (the JVM's compiler, Delta's first commits, Python workers) on a few photos first:
        # otherwise whichever lakeloop run comes first pays for it.
        lakeloop_run(spark, make_photos("everyday", 40), work, True, memory, "warm-up")
        for kind, folder in folders.items():
            row = results[kind] = {"photos": len(_photos(folder)),
                                   "mb": sum(p.stat().st_size for p in _photos(folder)) / 1e6}
            row["bare"] = bare_loop(folder, work / f"bare-{kind}")
            print(f"{kind}: bare loop {row['bare']:.1f} s", flush=True)
            if not args.no_daft:
                row["daft"] = daft_run(folder, work / f"daft-{kind}")
                print(f"{kind}: Daft {row['daft']:.1f} s", flush=True)
            for draft in drafts:
                label = f"{kind}-draft-{'on' if draft else 'off'}"
                row[label] = lakeloop_run(spark, folder, work, draft, memory, label)
                run = row[label]
                print(f"{kind}: lakeloop (jpeg_draft {draft}) ingest {run['ingest']:.1f} s {run['ingest_parts']}, "
                      f"features {run['features']:.1f} s {run['features_parts']}, peak worker {run['peak_mib']:.0f} MiB",
                      flush=True)
        if "camera" in folders and not args.no_score:
            camera = results["camera"]
            profile = camera[f"camera-draft-{'on' if drafts[0] else 'off'}"]["profile"]
            model = publish_resnet(profile)
            camera["score"], camera["score_counts"] = lakeloop_score(spark, profile, model)
            camera["bare_torch"] = bare_torch_score(folders["camera"])
            print(f"camera: score {camera['score']:.1f} s, bare PyTorch {camera['bare_torch']:.1f} s", flush=True)
    print(f"load average at the end: {_load()}\n")
    _print_table(results, drafts, not args.no_daft)
    shutil.rmtree(work, ignore_errors=True)


def _print_table(results: dict, drafts: tuple, with_daft: bool) -> None:
    print("| workload | bare 2-process loop | Daft | lakeloop ingest + features (jpeg_draft) | lakeloop ÷ bare | "
          "lakeloop ÷ Daft | peak Python worker |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, row in results.items():
        for draft in drafts:
            run = row[f"{kind}-draft-{'on' if draft else 'off'}"]
            total = run["ingest"] + run["features"]
            daft = f"{row['daft']:.1f} s" if with_daft else "-"
            versus_daft = f"{row['daft'] / total:.2f}x" if with_daft else "-"
            print(f"| {row['photos']:,} {kind} photos ({row['mb']:.0f} MB) | {row['bare']:.1f} s | {daft} | "
                  f"{total:.1f} s ({run['ingest']:.1f} + {run['features']:.1f}; {'on' if draft else 'off'}) | "
                  f"{row['bare'] / total:.2f}x | {versus_daft} | {run['peak_mib']:.0f} MiB |")
    camera = results.get("camera", {})
    if "score" in camera:
        print(f"\n| camera photos scored with ResNet-18 at 224 | bare PyTorch | lakeloop score --input images | "
              f"lakeloop ÷ bare |\n| --- | ---: | ---: | ---: |\n| {camera['photos']} | {camera['bare_torch']:.1f} s | "
              f"{camera['score']:.1f} s | {camera['bare_torch'] / camera['score']:.2f}x |")
    print("\nwhere lakeloop's seconds went:")
    for kind, row in results.items():
        for draft in drafts:
            run = row[f"{kind}-draft-{'on' if draft else 'off'}"]
            print(f"  {kind}, jpeg_draft {'on' if draft else 'off'}: ingest {run['ingest_parts']}; "
                  f"features {run['features_parts']}")


if __name__ == "__main__":
    main()

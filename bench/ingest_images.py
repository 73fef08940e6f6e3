"""Benchmark: lakeloop image ingestion vs a bare Spark binaryFile -> Parquet copy, same files, same run.

    ./.venv/bin/python bench/ingest_images.py [--synthetic 20000] [--demo]

Prints one table (files/s). Both contenders run in one local[2] session on the same
folder; the bare copy is the floor any binaryFile-based ingestion pays (list + read +
write), lakeloop adds decoding/validation with Pillow, sha256, dedupe and three Delta MERGEs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def write_synthetic(root: Path, count: int) -> None:
    """``count`` 32x32 grayscale PNGs in 10 label folders (about 1 KB each)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / str(i % 10)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((32, 32)) * 255).astype(np.uint8)
        pixels[8:24, 8:24] //= 4  # a little structure so PNG compresses like a scan
        Image.fromarray(pixels).save(folder / f"img_{i:06d}.png")


def bare_copy(spark, source: str, out: str) -> tuple[int, float]:
    start = time.perf_counter()
    df = spark.read.format("binaryFile").option("recursiveFileLookup", "true") \
        .option("pathGlobFilter", "*.png").load(source)
    df.select("path", "length", "content").write.mode("overwrite").parquet(out)
    elapsed = time.perf_counter() - start
    return spark.read.parquet(out).count(), elapsed


def main() -> None:
    from lakeloop.config import load_profile
    from lakeloop.ingest.images import ingest_images
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=20000, help="number of synthetic PNGs (0: skip)")
    parser.add_argument("--demo", action="store_true", help="also the demo digits folder (run ./dev/demo.sh first)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-"))
    base = load_profile("local", [("spark.master", "local[2]")])
    spark = build_session(base, app_name="lakeloop-bench-ingest")
    datasets = []
    if args.demo:
        datasets.append(("demo digits (1,803 files)", base.ingest_images.source))
    if args.synthetic:
        t = time.perf_counter()
        write_synthetic(work / "synthetic", args.synthetic)
        print(f"wrote {args.synthetic} synthetic PNGs in {time.perf_counter() - t:.1f}s")
        datasets.append((f"synthetic 32x32 PNG ({args.synthetic:,} files)", f"file:{work / 'synthetic'}"))

    # Warm the JVM and Python workers once so neither contender pays first-use costs.
    spark.range(1000).selectExpr("sum(id)").collect()

    rows = []
    try:
        for label, source in datasets:
            n_bare, t_bare = bare_copy(spark, source, f"file:{work / 'bare-copy'}")
            profile = load_profile(
                "local",
                [("spark.master", "local[2]"), ("lake_root", f"file:{work / 'lake'}"), ("ingest_images.source", source)],
            )
            shutil.rmtree(work / "lake", ignore_errors=True)
            t = time.perf_counter()
            report = ingest_images(spark, profile)
            t_ours = time.perf_counter() - t
            n_ours = report.counts["inputs"]
            t = time.perf_counter()
            rerun = ingest_images(spark, profile)
            t_rerun = time.perf_counter() - t
            rows.append((label, n_bare, n_bare / t_bare, n_ours, n_ours / t_ours, t_rerun, rerun.counts["inputs"]))
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| data | bare binaryFile -> Parquet (files/s) | lakeloop ingest_images (files/s) | ratio | rerun, unchanged folder (s, new files) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, n_bare, r_bare, n_ours, r_ours, t_rerun, rerun_inputs in rows:
        print(f"| {label} | {r_bare:,.0f} ({n_bare:,} files) | {r_ours:,.0f} ({n_ours:,} files) | "
              f"{r_ours / r_bare:.2f}x | {t_rerun:.1f} s, {rerun_inputs} |")


if __name__ == "__main__":
    main()

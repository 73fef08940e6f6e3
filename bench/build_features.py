"""Benchmark: build_features after a few new images, incremental (change data feed) vs every image, same lake.

    ./.venv/bin/python bench/build_features.py [--synthetic 20000] [--new-percent 1] [--demo]

For each folder, in one local[2] session: ingest it and build silver.features once; ingest
``--new-percent`` % more files; copy the lake; then on one copy ``build_features`` as it runs
by default (only bronze's new rows, read from its change data feed) and on the other with
``features.incremental=false`` (every image decoded again, unchanged rows not rewritten),
one after the other; then a rerun with nothing new. Prints one table: seconds, the ratio,
and where the incremental build's time goes (the report's ``durations_s``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest_images import write_synthetic  # noqa: E402 - the same synthetic PNGs as the ingestion benchmark


def _write_new(root: Path, count: int) -> None:
    """``count`` further PNGs unlike any of :func:`write_synthetic`'s (another seed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(count):
        folder = root / str(i % 10)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"new_{i:06d}.png")


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    from lakeloop.config import load_profile
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=20000, help="number of synthetic PNGs (0: skip)")
    parser.add_argument("--new-percent", type=float, default=1.0, help="new files, as a percentage of the first")
    parser.add_argument("--demo", action="store_true", help="also the demo digits folder (run ./dev/demo.sh first)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-features-"))
    base = load_profile("local", [("spark.master", "local[2]")])
    spark = build_session(base, app_name="lakeloop-bench-features")
    datasets = []
    if args.demo:
        datasets.append(("demo digits", base.ingest_images.source, 1797))
    if args.synthetic:
        write_synthetic(work / "synthetic", args.synthetic)
        datasets.append(("synthetic 32x32 PNG", f"file:{work / 'synthetic'}", args.synthetic))
    spark.range(1000).selectExpr("sum(id)").collect()  # JVM and Python workers warm for every contender

    def profile(lake: Path, source: str, *overrides):
        return load_profile("local", [("spark.master", "local[2]"), ("lake_root", f"file:{lake}"),
                                      ("ingest_images.source", source), ("features.join_table", None), *overrides])

    rows = []
    try:
        for label, source, count in datasets:
            lake, full_lake = work / f"lake-{len(rows)}", work / f"lake-{len(rows)}-full"
            ingest_images(spark, profile(lake, source))
            first, t_first = _timed(build_features, spark, profile(lake, source))
            new = max(1, round(count * args.new_percent / 100))
            _write_new(work / f"new-{len(rows)}", new)
            new_source = f"file:{work / f'new-{len(rows)}'}"
            ingest_images(spark, profile(lake, new_source))
            shutil.copytree(lake, full_lake)
            incremental, t_incremental = _timed(build_features, spark, profile(lake, new_source))
            every = profile(full_lake, new_source, ("features.incremental", False))
            full, t_full = _timed(build_features, spark, every)
            nothing, t_nothing = _timed(build_features, spark, profile(lake, new_source))
            assert incremental.counts["inserted"] == full.counts["inserted"] == new, (incremental.counts, full.counts)
            rows.append((f"{label} ({first.counts['images']:,} + {new:,} images)", t_first, t_full,
                         full.counts["images"], t_incremental, incremental.counts["images"], t_nothing,
                         incremental.durations_s))
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| data | first build (s) | after new files, every image (s, images read) | after new files, "
          "incremental (s, images read) | ratio | nothing new (s) | incremental build's steps (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, t_first, t_full, n_full, t_inc, n_inc, t_nothing, steps in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
        print(f"| {label} | {t_first:.1f} | {t_full:.1f} ({n_full:,}) | {t_inc:.1f} ({n_inc:,}) | "
              f"{t_inc / t_full:.2f} | {t_nothing:.1f} | {parts} |")


if __name__ == "__main__":
    main()

"""The peer for photos (issue 39): Daft doing list -> read -> hash -> decode RGB -> shorter side to 256
-> encode JPEG -> Parquet, the work bench/photo_speed.py asks of every tool.

    <daft env>/bin/python bench/daft_photo_peer.py SOURCE_FOLDER OUT_FOLDER

Runs in its own environment (bench/suite.py makes it under build/). Prints one JSON line: rows
written, seconds, Daft's version. Daft has no SHA-256 expression: its native SHA-1 stands in (the
same kind of work, a cryptographic digest of every byte). The photos are 4:3 landscapes, so
"shorter side to 256" is a fixed 341 x 256 (Daft's resize takes both sides).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    args = parser.parse_args()

    import daft
    import daft.functions as f
    from daft import col

    start = time.perf_counter()
    df = daft.from_glob_path(f"{args.source.rstrip('/')}/**/*.jpg")
    df = df.with_column("content", f.download(col("path")))
    df = df.with_column("sha1", f.hash(col("content"), hash_function="sha1"))
    df = df.with_column("image", f.decode_image(col("content"), on_error="null", mode="RGB"))
    df = df.with_column("thumb", f.encode_image(f.resize(col("image"), 341, 256), "JPEG"))
    written = df.select("path", "size", "sha1", "content", "thumb").write_parquet(args.out)
    seconds = time.perf_counter() - start
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in written.to_pydict()["path"])
    print(json.dumps({"seconds": seconds, "rows": rows, "daft": daft.__version__}))


if __name__ == "__main__":
    main()

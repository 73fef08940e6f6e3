"""The peer for ingest + features: Daft doing list -> read -> decode -> resize -> Parquet.

    <daft env>/bin/python bench/daft_peer.py SOURCE_FOLDER OUT_FOLDER [--size 32]

Runs in its own environment (Daft wants a newer pyarrow than lakeloop's pinned 14; bench/suite.py
makes it under build/). Prints one JSON line: rows written, seconds, Daft's version. The same work
as lakeloop's ingest_images + build_features at its core: every PNG listed, read, decoded to grey,
resized to size x size and written beside its bytes; no validation, dedupe, ledger or split.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    import daft
    import daft.functions as f
    from daft import col

    start = time.perf_counter()
    df = daft.from_glob_path(f"{args.source.rstrip('/')}/**/*.png")
    df = df.with_column("content", f.download(col("path")))
    df = df.with_column("image", f.decode_image(col("content"), on_error="null", mode="L"))
    df = df.with_column("pixels", f.image_to_tensor(f.resize(col("image"), args.size, args.size)))
    written = df.select("path", "size", "content", "pixels").write_parquet(args.out)
    seconds = time.perf_counter() - start
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in written.to_pydict()["path"])
    print(json.dumps({"seconds": seconds, "rows": rows, "daft": daft.__version__}))


if __name__ == "__main__":
    main()

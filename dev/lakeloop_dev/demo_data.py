"""The demo raw zone: scikit-learn's bundled handwritten digits as PNG files, a CSV
describing them, scikit-learn's wine table as a CSV (trained on as a table), and a few
deliberately broken files and rows so quarantine shows.

    python -m lakeloop_dev.demo_data [--profile P] [--out file:/path]     # writes demo.raw_root

(``lakeloop show`` then prints what the lake's tables hold.) scikit-learn is a development
dependency (requirements/dev.txt), not one of the wheel's.

Nothing is downloaded: ``sklearn.datasets.load_digits`` ships its 1,797 scans (8x8,
16 grey levels, labels 0-9) inside the package, ``load_wine`` its 178 wines (13 chemical
measurements, 3 cultivars).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lakeloop.errors import ConfigError


@dataclass(frozen=True)
class DemoManifest:
    """What :func:`write_demo_raw_zone` wrote, so the demo can say what to expect."""

    images_dir: Path
    table_path: Path
    digits: int
    broken_images: int
    duplicate_images: int
    ignored_files: int
    table_rows: int
    broken_rows: int
    wine_path: Path | None = None
    wine_rows: int = 0
    wine_broken_rows: int = 0


def _local_dir(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ConfigError(
            f"demo.raw_root = {uri!r}: the demo writes to a local folder (file:/...); "
            f"copy it to HDFS/S3 afterwards (hdfs dfs -put, aws s3 cp)"
        )
    return Path(parsed.path)


def _png_with_huge_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: a decompression bomb to refuse."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless the file already holds exactly these bytes: a second
    run of the demo leaves every file (and its modification time) as it was, so ingestion,
    which takes a file again when its modification time changes, finds nothing new."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png(pixels) -> bytes:
    import numpy as np
    from PIL import Image

    # 16 grey levels (0-16) -> 0-255, the scan as it is: 8x8 pixels, mode L.
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels * 16, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _digit_files(images_dir: Path) -> list[dict]:
    """The 1,797 scans as PNG files in label folders; returns the rows of the table describing them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        # A few upper-case endings, as cameras and Windows tools write them.
        name = f"digit_{i:04d}.PNG" if i % 250 == 7 else f"digit_{i:04d}.png"
        _write(images_dir / str(int(label)) / name, _png(pixels))
        rows.append({"sample_id": i, "path": f"{int(label)}/{name}", "label": int(label),
                     "ink_fraction": round(float((pixels > 0).mean()), 4), "scan_batch": f"batch-{i // 200:02d}"})
    return rows


def _odd_files(images_dir: Path) -> None:
    """Byte-identical copies (stored once in bronze, counted as duplicates), broken inputs (each
    must land in quarantine with its reason) and a file that is not an input at all."""
    for original, copy in (("0/digit_0000.png", "0/digit_0000 (copy).png"), ("1/digit_0001.png", "1/digit_0001 - Kopie.png")):
        _write(images_dir / copy, (images_dir / original).read_bytes())
    good = (images_dir / "3" / "digit_0003.png").read_bytes()
    _write(images_dir / "3" / "scan_truncated.png", good[: len(good) // 2])
    _write(images_dir / "5" / "empty.png", b"")
    _write(images_dir / "7" / "download_error.jpg", b"<html><body><h1>503 Service Unavailable</h1></body></html>\n")
    _write(images_dir / "9" / "bomb.png", _png_with_huge_header(60_000, 60_000))
    # Not an image ending: listing skips it.
    _write(images_dir / "README.txt", b"digits from scikit-learn's bundled copy of the UCI data set\n")


# The wine table's measurement columns, as lakeloop names them (scikit-learn's names, made SQL-safe).
WINE_COLUMNS = ("alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
                "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280_od315", "proline")
# Rows whose magnesium is left empty: a missing value the table encoding fills (and flags).
WINE_MISSING_MAGNESIUM = (5, 77, 140)


def write_wine_table(path: Path) -> tuple[int, int]:
    """scikit-learn's wine data as ``sample_id, <13 measurements>, cultivar`` with a few blank values
    and broken rows; returns (rows written, broken rows)."""
    from sklearn.datasets import load_wine

    data = load_wine()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sample_id", *WINE_COLUMNS, "cultivar"])
    for i, (values, target) in enumerate(zip(data.data, data.target)):
        cells = [f"{v:g}" for v in values]
        if i in WINE_MISSING_MAGNESIUM:
            cells[WINE_COLUMNS.index("magnesium")] = ""
        writer.writerow([i, *cells, f"cultivar_{target + 1}"])
    broken = [
        "w-9," + ",".join(["1"] * len(WINE_COLUMNS)) + ",cultivar_1",  # key is not a number
        "900,strong," + ",".join(["1"] * (len(WINE_COLUMNS) - 1)) + ",cultivar_2",  # alcohol is not a number
        "901,13.2,1.8",  # most fields missing
    ]
    _write(path, (buffer.getvalue() + "\n".join(broken) + "\n").encode("utf-8"))
    return len(data.target) + len(broken), len(broken)


def write_demo_raw_zone(raw_root: Path) -> DemoManifest:
    """Write ``raw_root/images/<label>/*.png``, ``raw_root/tables/digits_meta.csv`` and ``tables/wine.csv``.

    Files already there with the same bytes are left alone (not even touched), so running the
    demo twice adds nothing to the lake.
    """
    images_dir = raw_root / "images"
    tables_dir = raw_root / "tables"
    rows = _digit_files(images_dir)
    _odd_files(images_dir)
    table_path = tables_dir / "digits_meta.csv"
    fields = ["sample_id", "path", "label", "ink_fraction", "scan_batch"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    broken_rows = [
        "x17,3/digit_9999.png,3,0.4,batch-99",  # key is not a number
        "1800,4/digit_1800.png,4",  # two fields missing
        ",5/digit_1801.png,5,0.3,batch-99",  # no key
        "0,0/digit_0000.png,0,0.9999,batch-00",  # second row for key 0
    ]
    _write(table_path, (buffer.getvalue() + "\n".join(broken_rows) + "\n").encode("utf-8"))
    wine_path = tables_dir / "wine.csv"
    wine_rows, wine_broken = write_wine_table(wine_path)

    return DemoManifest(
        images_dir=images_dir,
        table_path=table_path,
        digits=len(rows),
        broken_images=4,
        duplicate_images=2,
        ignored_files=1,
        table_rows=len(rows) + len(broken_rows),
        broken_rows=len(broken_rows),
        wine_path=wine_path,
        wine_rows=wine_rows,
        wine_broken_rows=wine_broken,
    )


def main(argv: list[str] | None = None) -> int:
    from lakeloop.config import load_profile

    parser = argparse.ArgumentParser(prog="python -m lakeloop_dev.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local")
    parser.add_argument("--out", help="file: URI to write to (default: the profile's demo.raw_root)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    uri = args.out or profile.demo.raw_root
    if not uri:
        raise SystemExit("demo.raw_root is not set in the profile; pass --out file:/path")
    manifest = write_demo_raw_zone(_local_dir(uri))
    print(
        f"demo raw zone in {uri}: {manifest.digits} digit scans + {manifest.duplicate_images} duplicates + "
        f"{manifest.broken_images} broken images (+{manifest.ignored_files} non-image file), "
        f"table of {manifest.table_rows} rows ({manifest.broken_rows} broken), wine table of "
        f"{manifest.wine_rows} rows ({manifest.wine_broken_rows} broken)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

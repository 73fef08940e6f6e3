"""A small labelled set of real colour photographs: tiles of the two photographs scikit-learn
ships (``china.jpg``, ``flower.jpg``, 640 x 427), labelled by the picture and the quarter
they come from (8 classes: ``china_top_left`` ... ``flower_bottom_right``).

    python -m lakeloop_dev.photos [--profile local-photos] [--out file:/path] [--tile 32]

Tiles do not overlap, so whichever split a tile falls in (``features.split_seed``), no test
pixel was seen in training; neighbouring tiles of one quarter share its colours and textures,
which is what a model learns to tell apart. Nothing is downloaded:
``sklearn.datasets.load_sample_image`` reads the JPEGs inside the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lakeloop_dev.demo_data import _local_dir

PHOTOS = ("china.jpg", "flower.jpg")
QUARTERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def write_photo_tiles(root: Path, tile: int = 32, quality: int = 92) -> dict[str, int]:
    """JPEG tiles of ``tile`` x ``tile`` pixels under ``root/<photo>_<quarter>/``; returns tiles per class."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    counts: dict[str, int] = {}
    for name in PHOTOS:
        pixels = load_sample_image(name)
        half_h, half_w = pixels.shape[0] // 2, pixels.shape[1] // 2
        for quarter, (top, left) in zip(QUARTERS, ((0, 0), (0, half_w), (half_h, 0), (half_h, half_w))):
            label = f"{name.split('.')[0]}_{quarter}"
            folder = root / label
            folder.mkdir(parents=True, exist_ok=True)
            for row in range(half_h // tile):
                for col in range(half_w // tile):
                    y, x = top + row * tile, left + col * tile
                    Image.fromarray(pixels[y:y + tile, x:x + tile]).save(
                        folder / f"r{row:02d}c{col:02d}.jpg", quality=quality)
            counts[label] = (half_h // tile) * (half_w // tile)
    return counts


def main(argv: list[str] | None = None) -> int:
    from lakeloop.config import load_profile

    parser = argparse.ArgumentParser(prog="python -m lakeloop_dev.photos", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local-photos")
    parser.add_argument("--out", help="file: URI to write to (default: the profile's ingest_images.source)")
    parser.add_argument("--tile", type=int, default=32, help="tile side in pixels (default 32)")
    args = parser.parse_args(argv)
    uri = args.out or load_profile(args.profile).ingest_images.source
    if not uri:
        raise SystemExit("ingest_images.source is not set in the profile; pass --out file:/path")
    counts = write_photo_tiles(_local_dir(uri), args.tile)
    print(f"{sum(counts.values())} photo tiles of {args.tile}x{args.tile} in {uri}, {len(counts)} classes: "
          + ", ".join(f"{label} {n}" for label, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

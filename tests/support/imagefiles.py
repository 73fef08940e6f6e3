"""Real image files, made at test time with Pillow and numpy: the good, the odd and the broken.

Nothing is downloaded and nothing binary is committed: every file is generated from a fixed
seed, so the same Pillow version writes the same bytes (and the same sha256 ``image_id``)
on every run.

Two layers:

* byte makers (``rgb_png()``, ``truncated(...)``, ``declared_only_png(...)`` ...), for unit
  tests of :func:`lakeloop.images.inspect_image`;
* :func:`write_image_zoo` / :func:`write_image_zoo_records`, which write a labelled folder
  tree of good, odd and broken files for the ingestion end-to-end tests, and say what
  ingestion must make of each one.

The zoo's expected outcomes assume ``ingest_images.max_pixels`` = :data:`ZOO_MAX_PIXELS`
(the profiles' default) and the default ``ingest_images.extensions``.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image, features

#: The ``ingest_images.max_pixels`` the zoo's outcomes are computed for (the profiles' value).
ZOO_MAX_PIXELS = 25_000_000

#: Files the zoo writes that are not inputs: their endings are not image extensions,
#: so ingestion must not list them at all (they are in neither bronze, quarantine nor ledger).
ZOO_IGNORED: tuple[str, ...] = ("notes.txt", "dog/labels.csv")

WEBP_SUPPORTED: bool = features.check("webp")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# PNG IHDR colour type and bit depth of each mode a crafted header can declare.
_PNG_MODES = {"1": (0, 1), "L": (0, 8), "RGB": (2, 8), "RGBA": (6, 8)}


# --- byte makers: valid images ---------------------------------------------------------------


def noise_image(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels in ``mode`` ("L", "RGB", "RGBA", "CMYK", "I;16"): they do not compress, so
    pixel data dominates the file (a file cut in half is cut in its pixels)."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        raw = rng.integers(0, 65536, (height, width), dtype=np.uint16).astype("<u2").tobytes()
    else:
        raw = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8).tobytes()
    return Image.frombytes(mode, (width, height), raw)


def encode(image: Image.Image, image_format: str, **params) -> bytes:
    """``image`` saved in ``image_format`` (Pillow's name: "PNG", "JPEG" ...) as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def rgb_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return noise_image("RGB", width, height, seed)


def rgb_png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(rgb_image(width, height, seed), "PNG")


def rgb_jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(rgb_image(width, height, seed), "JPEG", quality=90)


def rgba_png(width: int = 50, height: int = 40, seed: int = 0) -> bytes:
    return encode(noise_image("RGBA", width, height, seed), "PNG")


def grayscale_png(width: int = 30, height: int = 20, seed: int = 0) -> bytes:
    """Mode ``L``."""
    return encode(noise_image("L", width, height, seed), "PNG")


def palette_png(width: int = 36, height: int = 28, seed: int = 0) -> bytes:
    """Mode ``P`` with a transparent palette entry (a tRNS chunk)."""
    image = rgb_image(width, height, seed).quantize(colors=16)
    return encode(image, "PNG", transparency=0)


def gray16_png(width: int = 30, height: int = 20, seed: int = 0) -> bytes:
    """16-bit grayscale PNG: Pillow reads it as mode ``I;16``."""
    return encode(noise_image("I;16", width, height, seed), "PNG")


def bilevel_png(width: int = 33, height: int = 17, seed: int = 0) -> bytes:
    """1 bit per pixel, mode ``1``."""
    return encode(noise_image("L", width, height, seed).point(lambda v: 255 if v > 127 else 0, "1"), "PNG")


def cmyk_jpeg(width: int = 32, height: int = 24, seed: int = 0) -> bytes:
    return encode(noise_image("CMYK", width, height, seed), "JPEG", quality=90)


def exif_rotated_jpeg(width: int = 80, height: int = 40, orientation: int = 6, seed: int = 0) -> bytes:
    """A JPEG stored ``width`` x ``height`` with EXIF orientation ``orientation`` (6: shown turned 90 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(rgb_image(width, height, seed), "JPEG", quality=90, exif=exif.tobytes())


def animated_gif(width: int = 40, height: int = 30, frames: int = 3, seed: int = 0) -> bytes:
    """A looping GIF of ``frames`` different frames (mode ``P``)."""
    images = [rgb_image(width, height, seed + i).quantize(colors=32) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def rgb_tiff(width: int = 44, height: int = 22, seed: int = 0) -> bytes:
    return encode(rgb_image(width, height, seed), "TIFF", compression="tiff_deflate")


def rgb_webp(width: int = 48, height: int = 36, seed: int = 0) -> bytes:
    """Lossless WebP; only where this Pillow was built with WebP (see :data:`WEBP_SUPPORTED`)."""
    return encode(rgb_image(width, height, seed), "WEBP", lossless=True)


def rgb_bmp(width: int = 24, height: int = 18, seed: int = 0) -> bytes:
    return encode(rgb_image(width, height, seed), "BMP")


def blank_bilevel_png(width: int, height: int) -> bytes:
    """A genuine, all-black mode ``1`` PNG: millions of pixels in a few kilobytes.

    Decodable, so it is a *decompression bomb* only relative to a ``max_pixels`` below
    ``width * height``. Making it allocates ``width * height`` bytes briefly (Pillow keeps
    one byte per pixel): 6000 x 6000 is 36 MB and well under a second.
    """
    return encode(Image.new("1", (width, height)), "PNG", optimize=True)


# --- byte makers: broken and non-image content -----------------------------------------------


def truncated(content: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of ``content``: a copy cut short."""
    return content[: int(len(content) * keep)]


def text_bytes() -> bytes:
    return "Shopping list\n- cat food\n- dog food\nThis is not a picture.\n".encode()


def html_error_page() -> bytes:
    """What a web server returns instead of the image: a 404 page saved under the image's name."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        b"<body><h1>Not Found</h1><p>The requested URL /images/cat.jpg was not found on this server.</p>"
        b"</body></html>\n"
    )


def random_bytes(size: int = 4096, seed: int = 0) -> bytes:
    """Bytes no Pillow plugin identifies (checked for the default seed by the tests)."""
    return random.Random(seed).randbytes(size)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_only_png(width: int, height: int, mode: str = "1") -> bytes:
    """A tiny PNG whose IHDR declares ``width`` x ``height`` but whose IDAT holds a few bytes.

    The CRCs are right, so Pillow opens it and reports the declared size; decoding it
    fails (truncated). Used for sizes too big to allocate (beyond Pillow's own limit) and
    to show that a bomb is refused from the header, without decoding.
    """
    colour_type, bit_depth = _PNG_MODES[mode]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunks(content: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(content):
        size = struct.unpack(">I", content[at:at + 4])[0]
        chunks.append((content[at + 4:at + 8], content[at + 8:at + 8 + size]))
        at += 12 + size
    return chunks


def _png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(_png_chunk(kind, data) for kind, data in chunks)


def corrupt_data_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG whose compressed pixel data is damaged (its checksums recomputed): complete but broken."""
    chunks = _png_chunks(rgb_png(width, height))
    return _png_from_chunks([(kind, data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:])
                             if kind == b"IDAT" else (kind, data) for kind, data in chunks])


def bad_header_checksum_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG whose IHDR checksum does not match: a damaged header."""
    content = bytearray(rgb_png(width, height))
    content[29] ^= 0xFF  # a CRC byte of IHDR
    return bytes(content)


def text_chunk_bomb_png(width: int = 16, height: int = 16) -> bytes:
    """A valid PNG carrying a compressed text chunk that inflates past Pillow's MAX_TEXT_CHUNK."""
    from PIL import PngImagePlugin

    chunks = _png_chunks(rgb_png(width, height))
    bomb = (b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * (PngImagePlugin.MAX_TEXT_CHUNK + 1024)))
    return _png_from_chunks([chunks[0], bomb, *chunks[1:]])


def unsupported_compression_bmp(width: int = 24, height: int = 18) -> bytes:
    """A BMP whose header names a compression (9) Pillow does not implement."""
    content = bytearray(rgb_bmp(width, height))
    content[30:34] = struct.pack("<I", 9)
    return bytes(content)


def unsupported_compression_tiff(width: int = 44, height: int = 22) -> bytes:
    """A TIFF whose compression tag names a codec (34712, JPEG 2000) this Pillow build lacks."""
    content = bytearray(rgb_tiff(width, height))
    at = bytes(content).find(struct.pack("<HHI", 259, 3, 1))  # tag 259 (compression), SHORT, 1 value
    content[at + 8:at + 10] = struct.pack("<H", 34712)
    return bytes(content)


# --- the zoo ---------------------------------------------------------------------------------

Outcome = Literal["ok", "quarantine"]


@dataclass(frozen=True)
class ZooFile:
    """What ingestion must make of one zoo file.

    ``reason``: a word the quarantine error must contain (``None`` when accepted).
    ``format``/``width``/``height``/``mode``: what :func:`inspect_image` reports (size as
    shown); for a bomb refused by our own guard, the declared facts; else ``None``.
    ``image_id``: sha256 hex of the bytes (ingestion's ``image_id``).
    ``duplicate_of``: for a file whose bytes equal an earlier one's, the relative path of
    the first of them by path order (the one bronze keeps); ``None`` for that first file
    and for unique files. Set for refused files too, though quarantine is per path.
    """

    outcome: Outcome
    reason: str | None
    format: str | None
    width: int | None
    height: int | None
    mode: str | None
    label: str
    image_id: str = ""
    duplicate_of: str | None = None

    @property
    def ledger_outcome(self) -> str:
        """``ingested``, ``duplicate`` or ``quarantined``: the outcome the ingestion ledger records."""
        if self.outcome == "quarantine":
            return "quarantined"
        return "duplicate" if self.duplicate_of else "ingested"


def _ok(image_format: str, width: int, height: int, mode: str) -> dict:
    return dict(outcome="ok", reason=None, format=image_format, width=width, height=height, mode=mode)


def _refused(reason: str, image_format: str | None = None, width: int | None = None,
             height: int | None = None, mode: str | None = None) -> dict:
    return dict(outcome="quarantine", reason=reason, format=image_format, width=width, height=height, mode=mode)


def _zoo_entries() -> list[tuple[str, Callable[[], bytes], dict]]:
    """(relative path, byte maker, expectation) of every input file of the zoo."""
    entries: list[tuple[str, Callable[[], bytes], dict]] = [
        # --- accepted
        ("cat/tabby.png", lambda: rgb_png(64, 48, seed=1), _ok("PNG", 64, 48, "RGB")),
        ("cat/tabby_copy.png", lambda: rgb_png(64, 48, seed=1), _ok("PNG", 64, 48, "RGB")),  # same bytes
        ("cat/a[1].png", lambda: rgb_png(40, 30, seed=2), _ok("PNG", 40, 30, "RGB")),  # a glob character
        ("cat/Whiskers.JPG", lambda: rgb_jpeg(64, 48, seed=3), _ok("JPEG", 64, 48, "RGB")),
        ("cat/sideways.jpg", lambda: exif_rotated_jpeg(80, 40, 6, seed=4), _ok("JPEG", 40, 80, "RGB")),
        ("cat/cmyk.jpeg", lambda: cmyk_jpeg(32, 24, seed=5), _ok("JPEG", 32, 24, "CMYK")),
        ("cat/jpeg inside.png", lambda: rgb_jpeg(56, 42, seed=6), _ok("JPEG", 56, 42, "RGB")),
        ("dog/été photo.png", lambda: rgba_png(50, 40, seed=7), _ok("PNG", 50, 40, "RGBA")),
        ("dog/Rex.PNG", lambda: grayscale_png(30, 20, seed=8), _ok("PNG", 30, 20, "L")),
        ("dog/palette.png", lambda: palette_png(36, 28, seed=9), _ok("PNG", 36, 28, "P")),
        ("dog/depth16.png", lambda: gray16_png(30, 20, seed=10), _ok("PNG", 30, 20, "I;16")),
        ("dog/bitmap.png", lambda: bilevel_png(33, 17, seed=11), _ok("PNG", 33, 17, "1")),
        ("dog/animated.gif", lambda: animated_gif(40, 30, 3, seed=12), _ok("GIF", 40, 30, "P")),
        ("dog/scan.tif", lambda: rgb_tiff(44, 22, seed=13), _ok("TIFF", 44, 22, "RGB")),
        ("bird/小鸟.bmp", lambda: rgb_bmp(24, 18, seed=14), _ok("BMP", 24, 18, "RGB")),
        # --- refused
        ("bird/empty.jpg", lambda: b"", _refused("empty")),
        ("dog/also empty.png", lambda: b"", _refused("empty")),  # same (no) bytes as bird/empty.jpg
        ("bird/half.jpg", lambda: truncated(rgb_jpeg(64, 48, seed=15)), _refused("truncated")),
        ("bird/half.PNG", lambda: truncated(rgb_png(64, 48, seed=16)), _refused("truncated")),
        ("bird/readme.jpg", text_bytes, _refused("not an image")),
        ("bird/error page.png", html_error_page, _refused("not an image")),
        ("bird/noise.jpeg", random_bytes, _refused("not an image")),
        # 36 M pixels in ~4 KB: over ZOO_MAX_PIXELS, refused by our guard from the header.
        ("bird/bomb.png", lambda: blank_bilevel_png(6000, 6000), _refused("decompression bomb", "PNG", 6000, 6000, "1")),
        # 10^10 pixels declared: over Pillow's own limit, refused inside Image.open.
        ("bird/huge header.png", lambda: declared_only_png(100_000, 100_000), _refused("decompression bomb")),
    ]
    if WEBP_SUPPORTED:
        entries.append(("dog/photo.webp", lambda: rgb_webp(48, 36, seed=17), _ok("WEBP", 48, 36, "RGB")))
    return entries


def zoo_paths() -> list[str]:
    """Relative paths of the zoo's input files, without writing anything (for parametrize)."""
    return [path for path, _, _ in _zoo_entries()]


def write_image_zoo_records(root: Path) -> dict[str, ZooFile]:
    """Write the zoo under ``root`` (created if missing); return relative path -> :class:`ZooFile`.

    Inputs are in label folders ``cat/``, ``dog/``, ``bird/``; their names include spaces,
    non-ASCII letters, a glob character and upper-case endings. The files of
    :data:`ZOO_IGNORED` are written too but are not in the result: they are not inputs.
    """
    root = Path(root)
    records: dict[str, ZooFile] = {}
    first_by_digest: dict[str, str] = {}
    # Path order decides which copy of duplicate bytes is "the first" (bronze keeps the first by path).
    for relative, make, expected in sorted(_zoo_entries(), key=lambda entry: entry[0]):
        content = make()
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        first = first_by_digest.setdefault(digest, relative)
        records[relative] = ZooFile(
            **expected,
            label=relative.split("/")[0],
            image_id=digest,
            duplicate_of=None if first == relative else first,
        )
    (root / "notes.txt").write_text("Images of cats, dogs and birds. Not an input: ingestion lists images only.\n")
    (root / "dog" / "labels.csv").write_text("path,label\ndog/Rex.PNG,dog\n")
    return records


def write_image_zoo(root: Path) -> dict[str, str]:
    """Write the zoo under ``root``; return {relative path: "ok" | "quarantine"} for its input files.

    For duplicates, labels, sizes and reasons use :func:`write_image_zoo_records`.
    """
    return {path: record.outcome for path, record in write_image_zoo_records(root).items()}

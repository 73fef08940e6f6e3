"""Checking image bytes with Pillow: what ingestion accepts, and why it refuses the rest.

Pure functions on bytes, no Spark: the ingestion UDF calls :func:`inspect_image` per file,
and tests call it on real broken files. Every refusal has a :data:`REASONS` class (the
``reason`` column of ``quarantine.images``) and a message that says what to do about it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from lakeloop.errors import record_failure

# EXIF orientations 5-8 turn the picture by 90 degrees: its shown width is the stored height.
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}

# Why a file is refused: the classes a quarantine row's ``reason`` takes, and what each means.
REASONS = {
    "empty": "the file has no bytes",
    "too_large": "the file is larger than ingest_images.max_file_bytes (Spark reads at most 2 GiB a file)",
    "broken_link": "the file is a symbolic link to a file that does not exist",
    "unreadable": "the user running the job may not read the file (permission denied)",
    "too_many_pixels": "the image has more pixels than ingest_images.max_pixels (a decompression bomb guard)",
    "security_limit": "Pillow refuses the file under one of its own security limits",
    "not_an_image": "the bytes are not an image file Pillow knows",
    "truncated": "the image data ends early: the file was cut short",
    "corrupt": "the image data or header is damaged",
    "unsupported": "the file uses a format feature this Pillow build does not support",
    "check_failed": "the file made Pillow raise an error no other reason covers (the error is in the row)",
}

# Words of Pillow's messages for a format feature it lacks ("Unsupported BMP compression (9)",
# "decoder group4 not available", "unknown raw mode", "unrecognized image mode").
_UNSUPPORTED_WORDS = ("unsupported", "not supported", "not available", "unknown", "unrecognized",
                      "not implemented")
_SECURITY_WORDS = ("decompressed data too large", "too much memory")


@dataclass(frozen=True)
class ImageCheck:
    """What Pillow found in one file: the image's facts, or the reason it was refused."""

    ok: bool
    format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    error: str | None = None
    reason: str | None = None


def _refused(reason: str, message: str, **facts) -> ImageCheck:
    return ImageCheck(False, error=message, reason=reason, **facts)


def inspect_image(content: bytes | None, max_pixels: int, jpeg_draft: bool = True) -> ImageCheck:
    """Decode ``content`` fully and report its format, shown size and mode, or why it is refused.

    ``jpeg_draft``: a JPEG is decoded at 1/8 scale (libjpeg's scaled decoding, Pillow's ``draft``),
    which still reads and entropy-decodes every byte of it, so truncated and broken data are refused
    as a full decode refuses them, in about half the time of a baseline JPEG's full decode.

    ``width``/``height`` are as shown, after the EXIF orientation (a phone photo stored
    sideways reports its upright size). Refused (``reason``, see :data:`REASONS`): empty
    files, bytes that are no image, truncated or corrupt data, format features Pillow lacks,
    Pillow's security limits, and images with more than ``max_pixels`` pixels (decompression
    bombs), checked from the header before any pixel is decoded.
    """
    if content is None or len(content) == 0:
        return _refused("empty", "empty file (0 bytes): copy it again from its origin, or delete it")
    return inspect_image_stream(io.BytesIO(content), len(content), max_pixels, jpeg_draft)


def inspect_image_stream(stream: BinaryIO, size: int, max_pixels: int, jpeg_draft: bool = True) -> ImageCheck:
    """:func:`inspect_image` of a seekable file of ``size`` bytes (a large file ingested by
    reference is checked from its source without holding its bytes)."""
    if size == 0:
        return _refused("empty", "empty file (0 bytes): copy it again from its origin, or delete it")
    try:
        return _inspect_stream(stream, size, max_pixels, jpeg_draft)
    except Exception as exc:  # noqa: BLE001 - whatever else a file provokes is its quarantine reason
        return _unexpected(exc)


def _inspect_stream(stream: BinaryIO, size: int, max_pixels: int, jpeg_draft: bool) -> ImageCheck:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                return _decode(img, max_pixels, jpeg_draft)
    except Image.DecompressionBombError as exc:
        return _refused("security_limit", _pillow_pixel_ceiling(exc, max_pixels))
    except UnidentifiedImageError:
        stream.seek(0)
        return _unidentified(stream, size)
    except (OSError, SyntaxError, ValueError, EOFError, NotImplementedError) as exc:
        return _decode_failure(exc, size)


def _unexpected(exc: Exception) -> ImageCheck:
    """A file that made Pillow raise what no check expects (a RecursionError, a MemoryError, a
    plugin's IndexError ...): refused with that error, never a failed task."""
    if isinstance(exc, MemoryError):
        return _refused("security_limit", record_failure(exc, "Pillow's decoder", "file"))
    return _refused("check_failed", record_failure(exc, "Pillow's decoder", "file"))


def _decode(img, max_pixels: int, jpeg_draft: bool) -> ImageCheck:
    width, height = img.size
    facts = dict(format=img.format, width=width, height=height, mode=img.mode)
    if width * height > max_pixels:
        return _refused("too_many_pixels", (
            f"decompression bomb guard: {width}x{height} = {width * height:,} pixels is more than "
            f"ingest_images.max_pixels = {max_pixels:,}; if the image is genuine, raise that setting and rerun"
        ), **facts)
    if jpeg_draft and img.format == "JPEG":
        img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))  # every byte still read and decoded
    img.load()  # decodes every pixel: the only way to find truncated data
    if img.getexif().get(_EXIF_ORIENTATION, 1) in _ROTATED_ORIENTATIONS:
        width, height = height, width
    return ImageCheck(True, format=facts["format"], width=width, height=height, mode=facts["mode"])


def _pillow_pixel_ceiling(exc: Exception, max_pixels: int) -> str:
    from PIL import Image

    # Pillow's own ceiling (2 x PIL.Image.MAX_IMAGE_PIXELS) is checked inside Image.open,
    # before our limit: no value of ingest_images.max_pixels lets such a file through.
    ceiling = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 0
    return (
        f"decompression bomb guard (Pillow security limit): {str(exc).rstrip('.')}; Pillow refuses any image "
        f"over {ceiling:,} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS) whatever ingest_images.max_pixels "
        f"(= {max_pixels:,}) says, so raising that setting will not admit it: if the image is genuine, "
        f"tile or downscale it at its origin"
    )


def _decode_failure(exc: Exception, size: int) -> ImageCheck:
    """A file Pillow identified but could not decode: truncated, corrupt, unsupported or over a limit."""
    import PIL

    text = str(exc)
    lowered = text.lower()
    detail = f"{type(exc).__name__}: {text}"
    if any(word in lowered for word in _SECURITY_WORDS):
        return _refused("security_limit", (
            f"Pillow security limit ({detail}): the file carries more decompressed metadata than Pillow "
            f"allows; if it is genuine, strip its metadata (text, ICC profile) at its origin and copy it again"
        ))
    if isinstance(exc, EOFError) or "truncated" in lowered:
        return _refused("truncated", (
            f"truncated image data ({detail}; {size:,} bytes): the file ends before its image does, so it was "
            f"probably cut short while copying or uploading: copy it again from its origin"
        ))
    if isinstance(exc, NotImplementedError) or any(word in lowered for word in _UNSUPPORTED_WORDS):
        return _refused("unsupported", (
            f"unsupported image format feature ({detail}): Pillow {PIL.__version__} cannot decode this variant; "
            f"convert the file to a common encoding (PNG, baseline JPEG, uncompressed or deflate TIFF) at its origin"
        ))
    return _refused("corrupt", (
        f"corrupt image data ({detail}): the bytes inside the image are damaged, so copying it again will not "
        f"help unless the copy was at fault: replace the file with a good export from its source"
    ))


def _accepts(accept, head: bytes) -> bool:
    """Whether a plugin takes ``head`` for its format (a plugin that fails on a short head does not)."""
    try:
        return bool(accept(head))
    except Exception:  # noqa: BLE001 - e.g. the BMP plugin's struct.error on fewer than 4 bytes
        return False


def _unidentified(stream: BinaryIO, size: int) -> ImageCheck:
    """Bytes Pillow could not identify: no image at all, or one whose header its plugin rejects."""
    from PIL import Image

    Image.init()
    head = stream.read(16)
    for fmt, (factory, accept) in Image.OPEN.items():
        if accept is None or not _accepts(accept, head):
            continue
        # The file starts like a `fmt` image: the plugin itself says what is wrong with its header.
        try:
            stream.seek(0)
            factory(stream, "").close()
        except Exception as exc:  # noqa: BLE001 - the plugin's complaint, whatever it raises, is the reason
            if fmt == "TIFF" and str(exc).strip().isdigit():
                exc = NotImplementedError(f"TIFF compression {str(exc).strip()} is unknown to Pillow")
            failure = _decode_failure(exc, size)
            return _refused(failure.reason, f"{fmt} file that Pillow cannot open: {failure.error}")
        break
    return _refused("not_an_image", (
        f"not an image Pillow can read ({size:,} bytes starting {head!r}); check that the file really "
        f"is an image (not a text, an HTML error page or a format Pillow does not know)"
    ))

"""Checking image bytes with Pillow: what ingestion accepts, and why it refuses the rest.

Pure functions on bytes, no Spark: the ingestion UDF calls :func:`inspect_image` per file,
and tests call it on real broken files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

# EXIF orientations 5-8 turn the picture by 90 degrees: its shown width is the stored height.
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class ImageCheck:
    """What Pillow found in one file: the image's facts, or the reason it was refused."""

    ok: bool
    format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    error: str | None = None


def inspect_image(content: bytes | None, max_pixels: int) -> ImageCheck:
    """Decode ``content`` fully and report its format, shown size and mode, or an error.

    ``width``/``height`` are as shown, after the EXIF orientation (a phone photo stored
    sideways reports its upright size). Refused: empty files, bytes Pillow cannot
    identify, truncated or corrupt data, and images with more than ``max_pixels``
    pixels (decompression bombs), checked from the header before any pixel is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if content is None or len(content) == 0:
        return ImageCheck(False, error="empty file (0 bytes): copy it again from its origin, or delete it")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return ImageCheck(
                        False,
                        format=img.format,
                        width=width,
                        height=height,
                        mode=img.mode,
                        error=(
                            f"decompression bomb guard: {width}x{height} = {width * height:,} pixels is more "
                            f"than ingest_images.max_pixels = {max_pixels:,}; if the image is genuine, "
                            f"raise that setting and rerun"
                        ),
                    )
                img.load()  # decodes every pixel: the only way to find truncated data
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
                if orientation in _ROTATED_ORIENTATIONS:
                    width, height = height, width
                return ImageCheck(True, format=img.format, width=width, height=height, mode=img.mode)
    except Image.DecompressionBombError as exc:
        # Pillow's own ceiling (2 x PIL.Image.MAX_IMAGE_PIXELS) is checked inside Image.open,
        # before our limit: no value of ingest_images.max_pixels lets such a file through.
        ceiling = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 0
        return ImageCheck(
            False,
            error=(
                f"decompression bomb guard (Pillow): {str(exc).rstrip('.')}; Pillow refuses any image over "
                f"{ceiling:,} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS) whatever ingest_images.max_pixels "
                f"(= {max_pixels:,}) says, so raising that setting will not admit it: if the image is "
                f"genuine, tile or downscale it at its origin"
            ),
        )
    except UnidentifiedImageError:
        head = content[:16]
        return ImageCheck(
            False,
            error=(
                f"not an image Pillow can read ({len(content):,} bytes starting {head!r}); check that the "
                f"file really is an image (not a text, HTML error page or unsupported format)"
            ),
        )
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return ImageCheck(
            False,
            error=f"truncated or corrupt image data ({type(exc).__name__}: {exc}); the file was probably "
            f"cut short while copying: copy it again from its origin",
        )

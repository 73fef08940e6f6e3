"""One image preprocessing, shared by features, training and scoring.

Two stages, kept apart on purpose:

* :func:`image_to_pixels` (at feature-build time, and when scoring raw images): decode
  with Pillow, apply the EXIF orientation, convert to the spec's channels, resize to the
  spec's fixed size (``pad`` keeps the aspect ratio and pads with black, ``stretch`` does
  not), and return ``uint8`` bytes laid out H x W x C. That is what ``silver.features``
  stores: compact, and exactly reproducible.
* :func:`pixels_to_tensor` (in the Petastorm reader's transform, and in the scoring
  UDF): uint8 bytes -> float32 ``N x C x H x W``, scaled to [0, 1] and normalised with
  the spec's mean/std.

The spec travels as JSON (:meth:`PreprocessSpec.to_json`) in the features table's
properties (:data:`SPEC_PROPERTY`, with the class list in :data:`CLASSES_PROPERTY`) and in
every model's ``metadata.json``. This module is the contract between the three steps,
which is why it sits beside them rather than inside one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import pandas as pd  # module level: pandas UDF type hints resolve in this module's globals

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import Column

    from lakeloop.config import PreprocessConfig

# silver.features' contract with training and scoring: the table properties holding the spec its
# pixels were made with and the class list, and the values of its split column.
SPEC_PROPERTY = "lakeloop.preprocess"
CLASSES_PROPERTY = "lakeloop.classes"
# ... and the task its target serves (train.task), the column it came from (features.target) and a
# multilabel model's label list: {"task", "target", "labels"}.
IMAGE_TARGET_PROPERTY = "lakeloop.image_target"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class PreprocessSpec:
    """Fixed input shape and normalisation of a model, and how ``silver.features`` stores images.

    ``storage``: ``pixels`` (uint8 H x W x C, ready to normalise) or ``encoded`` (each image
    re-encoded with its shorter side at most ``encoded_short_side``, as ``encoded_format`` at
    ``encoded_quality``: training decodes and crops it, scoring applies the evaluation transform).
    ``resize``: ``pad`` (keep the aspect, pad black), ``stretch``, or ``crop`` (scale so the
    shorter side is the target's over ``crop_fraction``, then take the centre: torchvision's
    ``Resize(256)`` + ``CenterCrop(224)`` at 0.875).
    """

    height: int
    width: int
    channels: int
    resize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_fraction: float = 0.875
    storage: str = "pixels"
    encoded_short_side: int = 256
    encoded_format: str = "JPEG"
    encoded_quality: int = 90
    jpeg_draft: bool = True  # a JPEG is decoded at a reduced scale (libjpeg's) when the output is small enough

    @classmethod
    def from_config(cls, cfg: "PreprocessConfig") -> "PreprocessSpec":
        return cls(cfg.height, cfg.width, cfg.channels, cfg.resize, tuple(cfg.mean), tuple(cfg.std),
                   cfg.crop_fraction, cfg.storage, cfg.encoded_short_side, cfg.encoded_format, cfg.encoded_quality,
                   cfg.jpeg_draft)

    @classmethod
    def from_json(cls, text: str | dict) -> "PreprocessSpec":
        data = json.loads(text) if isinstance(text, str) else dict(text)
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(**data)

    def to_json(self) -> str:
        # Settings at their defaults are left out, so a spec written before they existed keeps its key.
        data = {k: v for k, v in asdict(self).items() if k not in _OPTIONAL or v != _OPTIONAL[k]}
        if self.storage == "pixels":
            data = {k: v for k, v in data.items() if not k.startswith("encoded_")}
        return json.dumps(data, sort_keys=True)

    @property
    def key(self) -> str:
        """Short hash naming this spec (part of a training set's cache key)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @property
    def pixel_bytes(self) -> int:
        return self.height * self.width * self.channels

    @property
    def encoded(self) -> bool:
        """Whether stored images are encoded files (decoded by training and scoring) rather than pixels."""
        return self.storage == "encoded"


# The spec's settings added after its first six, with their defaults (see PreprocessSpec.to_json).
_OPTIONAL = {"crop_fraction": 0.875, "storage": "pixels", "encoded_short_side": 256, "encoded_format": "JPEG",
             "encoded_quality": 90, "jpeg_draft": True}


def decoded_image(content: bytes, channels: int, target: tuple[int, int] | None = None):
    """``content`` decoded as a Pillow image in ``L`` (1 channel) or ``RGB`` (3), upright (EXIF
    orientation applied), transparent pixels black. ``target`` (width, height): the size it
    will be reduced to, so a JPEG is decoded at a reduced scale (``draft``) when that is enough."""
    import numpy as np
    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(content))
    if target is not None and img.format == "JPEG":
        # Rotated by its EXIF tag later: ask for the target's larger side both ways.
        side = max(target)
        img.draft("L" if channels == 1 else "RGB", (side, side))
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: keep the top 8 bits instead of Pillow's clipping conversion.
        arr = np.asarray(img, dtype=np.uint32)
        img = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # Transparent pixels become black, like the padding.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def center_crop_box(width: int, height: int, spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """The box of a ``width`` x ``height`` image that ``resize: crop`` scales to the spec's size."""
    scale = max(spec.width / width, spec.height / height) / spec.crop_fraction
    box_w, box_h = min(width, spec.width / scale), min(height, spec.height / scale)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    return left, top, left + box_w, top + box_h


def fit_to_spec(img, spec: PreprocessSpec):
    """A decoded image resized to the spec's size by its ``resize`` rule."""
    from PIL import Image, ImageOps

    size = (spec.width, spec.height)
    if spec.resize == "pad":
        return ImageOps.pad(img, size, method=Image.Resampling.BILINEAR, color=0)
    if spec.resize == "crop":
        return img.resize(size, Image.Resampling.BILINEAR, box=center_crop_box(img.width, img.height, spec))
    return img.resize(size, Image.Resampling.BILINEAR)


def image_to_pixels(content: bytes, spec: PreprocessSpec) -> bytes:
    """Decode ``content`` and return ``spec.height x spec.width x spec.channels`` uint8 bytes: the
    evaluation transform (scoring, and evaluation of an encoded training set).

    Raises whatever Pillow raises for undecodable bytes (callers quarantine those).
    """
    import numpy as np

    # Reduced JPEG decoding only where it was introduced (crop, encoded): pad and stretch give the
    # pixels they always gave.
    reduce = spec.jpeg_draft and (spec.resize == "crop" or spec.encoded)
    # A centre crop keeps crop_fraction of the scaled image: decode at least that much larger.
    side = math.ceil(max(spec.width, spec.height) / (spec.crop_fraction if spec.resize == "crop" else 1.0))
    img = decoded_image(content, spec.channels, (side, side) if reduce else None)
    return np.asarray(fit_to_spec(img, spec), dtype=np.uint8).tobytes()


def stored_image(content: bytes, spec: PreprocessSpec) -> bytes:
    """What ``silver.features`` keeps of an image file: :func:`image_to_pixels`, or with ``storage:
    encoded`` the image re-encoded with its shorter side at most ``encoded_short_side``."""
    from PIL import Image

    if not spec.encoded:
        return image_to_pixels(content, spec)
    short = spec.encoded_short_side
    img = decoded_image(content, spec.channels, (short, short) if spec.jpeg_draft else None)
    scale = short / min(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if spec.encoded_format == "JPEG":
        img.save(out, "JPEG", quality=spec.encoded_quality)
    else:
        img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def pixels_to_array(pixels: Sequence[bytes], spec: PreprocessSpec) -> "np.ndarray":
    """uint8 H x W x C byte strings (or one uint8 ``N x bytes`` array of them) -> uint8 array
    ``N x C x H x W`` (no copy of the bytes' order)."""
    import numpy as np

    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8:
        flat = pixels.reshape(-1)
    else:
        flat = np.frombuffer(b"".join(pixels), dtype=np.uint8)
    expected = spec.pixel_bytes
    if flat.size != expected * len(pixels):
        bad = next((len(p) for p in pixels if len(p) != expected), None)
        raise ValueError(
            f"pixel buffer of {bad} bytes does not match the preprocessing spec "
            f"{spec.height}x{spec.width}x{spec.channels} = {expected} bytes"
        )
    return flat.reshape(len(pixels), spec.height, spec.width, spec.channels).transpose(0, 3, 1, 2)


def normalize(batch: "np.ndarray", spec: PreprocessSpec) -> "np.ndarray":
    """uint8 ``N x C x H x W`` -> float32 scaled to [0, 1] and normalised with the spec's mean/std.

    Three in-place passes over one C-contiguous output (no temporaries): the same float32
    arithmetic as ``(x / 255 - mean) / std``, three times faster on a training chunk. The passes
    go block by block of about 1 MiB of output, so each block's three passes stay in the CPU's
    cache (a whole row group's 25 MB made them memory-bound: 2.7x slower, BENCHMARKS.md).
    """
    import numpy as np

    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    out = np.empty(batch.shape, dtype=np.float32)
    row_bytes = max(1, out[:1].nbytes)
    step = max(1, _CACHE_BLOCK_BYTES // row_bytes)
    for start in range(0, len(out), step):
        block = out[start:start + step]
        block[...] = batch[start:start + step]  # a plain cast: faster than a mixed-type multiply
        block *= np.float32(1 / 255.0)
        block -= mean
        block /= std
    return out


_CACHE_BLOCK_BYTES = 1 << 20


def pixels_to_tensor(pixels: Sequence[bytes], spec: PreprocessSpec) -> "np.ndarray":
    """uint8 H x W x C byte strings -> normalised float32 array ``N x C x H x W``."""
    return normalize(pixels_to_array(pixels, spec), spec)


def pixel_means(pixels: Sequence[bytes | None], spec: PreprocessSpec | None = None) -> "np.ndarray":
    """Mean intensity (0..1) of each uint8 pixel buffer (of each stored image, decoded, when ``spec``
    stores them encoded), NaN for ``None``: the per-image input statistic a model's training set is
    summarised by and a scoring run is compared with."""
    import numpy as np

    if spec is not None and spec.encoded:
        pixels = [image_to_pixels(p, spec) if p else None for p in pixels]
    return np.array([np.frombuffer(p, dtype=np.uint8).mean() / 255.0 if p else np.nan for p in pixels],
                    dtype=np.float64)


def mean_intensity(pixels: "Column", spec: PreprocessSpec | None = None) -> "Column":
    """Per-row mean intensity (0..1) of a ``pixels`` column (:func:`lakeloop.preprocess.pixel_means`)."""
    from pyspark.sql.functions import pandas_udf

    spec_json = spec.to_json() if spec is not None else None

    @pandas_udf("double")
    def means(values: pd.Series) -> pd.Series:
        from lakeloop.preprocess import PreprocessSpec, pixel_means

        return pd.Series(pixel_means(values.tolist(), PreprocessSpec.from_json(spec_json) if spec_json else None))

    return means(pixels)


def intensity_bin(means: "Column", n_bins: int) -> "Column":
    """The histogram bin (0 .. n_bins-1) of a 0..1 value; 1.0 falls in the last."""
    from pyspark.sql import functions as F

    return F.least(F.floor(means * n_bins), F.lit(n_bins - 1)).cast("int")


def random_shift(batch: "np.ndarray", max_shift: int, rng: "np.random.Generator") -> "np.ndarray":
    """Augmentation on uint8 ``N x C x H x W``: shift each image by up to ``max_shift`` pixels,
    filling with black (0, like the padding), before :func:`normalize`.

    Deterministic for a given ``rng`` state, so an epoch's inputs are a function of the seed.
    Images that share a shift move together, one slice copy per distinct shift (at most
    ``(2 * max_shift + 1) ** 2``), not one per image.
    """
    import numpy as np

    if max_shift <= 0:
        return batch
    out = np.zeros_like(batch)
    n, _, h, w = batch.shape
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    distinct, which = np.unique(shifts, axis=0, return_inverse=True)
    for k, (dy, dx) in enumerate(distinct):
        images = np.flatnonzero(which.ravel() == k)
        src_y = slice(max(0, -dy), h - max(0, dy))
        dst_y = slice(max(0, dy), h - max(0, -dy))
        src_x = slice(max(0, -dx), w - max(0, dx))
        dst_x = slice(max(0, dx), w - max(0, -dx))
        out[images, :, dst_y, dst_x] = batch[images, :, src_y, src_x]
    return out

"""Training-time augmentation of a whole reader chunk at once: no Spark, no per-row Python.

Scoring never augments: a model's evaluation transform is its preprocessing spec (the
``preprocess`` of its ``metadata.json``: decode, orientation, channels, resize to the fixed
size, normalise), which :mod:`lakeloop.scoring.batch` applies. What is chosen here
(``train.augmentation``) is recorded with the model's training settings and changes nothing
at scoring time.

:func:`augment_batch` takes the chunk's uint8 ``N x C x H x W`` pixels and returns them
normalised as float32, after, per image and in this order:

1. a shift of up to ``shift`` pixels, black filled (the digits default);
2. a random resized crop: a box of ``crop_scale`` of the image's area and ``crop_ratio``
   aspect, anywhere inside the image, resized back to H x W (bilinear); with a horizontal
   flip, half the images mirrored. Both are one affine map per image, so the whole chunk is
   one ``torch.nn.functional.grid_sample`` call instead of one torchvision call per image
   (torchvision's ``RandomResizedCrop`` draws one box per call: per-image boxes would mean a
   Python loop over the rows);
3. colour jitter: brightness, contrast and (for colour images) saturation each scaled by a
   factor drawn from ``[1 - colour_jitter, 1 + colour_jitter]``, the adjustments of
   torchvision's ``ColorJitter``, folded with the normalisation into one matrix per image
   (:func:`_jitter_and_normalise`).

Every draw comes from the ``numpy`` generator the caller seeds with ``(seed, epoch, rank)``,
and the torch operations are deterministic on CPU, so an epoch's batches are a function of
those three numbers.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from lakeloop.config import AugmentConfig
from lakeloop.preprocess import PreprocessSpec, normalize, random_shift

if TYPE_CHECKING:
    import numpy as np

# ITU-R 601 luma weights: the grey a colour image's saturation is blended with (as torchvision's).
_LUMA = (0.299, 0.587, 0.114)


def crops(augmentation: AugmentConfig) -> bool:
    """Whether a random resized crop is asked for (``crop_scale`` other than [1, 1])."""
    return tuple(augmentation.crop_scale) != (1.0, 1.0)


def warps(augmentation: AugmentConfig) -> bool:
    """Whether a crop or a flip moves pixels (one resampling pass does both)."""
    return crops(augmentation) or augmentation.flip


def after_decoding(augmentation: AugmentConfig) -> AugmentConfig:
    """What is left for :func:`augment_batch` once :func:`decode_batch` has cropped and flipped."""
    return replace(augmentation, crop_scale=(1.0, 1.0), flip=False)


NO_AUGMENTATION = AugmentConfig(shift=0)


def augment_batch(batch: "np.ndarray", spec: PreprocessSpec, augmentation: AugmentConfig,
                  rng: "np.random.Generator") -> "np.ndarray":
    """uint8 ``N x C x H x W`` -> augmented, normalised float32 ``N x C x H x W`` (see the module)."""
    import numpy as np

    batch = random_shift(batch, augmentation.shift, rng)
    if not warps(augmentation) and not augmentation.colour_jitter:
        return normalize(batch, spec)
    import torch

    images = torch.from_numpy(np.ascontiguousarray(batch)).to(torch.float32)  # 0..255
    if warps(augmentation):
        images = _crop_and_flip(images, augmentation, rng)
    if augmentation.colour_jitter:
        return _jitter_and_normalise(images, augmentation.colour_jitter, spec, rng).numpy()
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return images.mul_(1 / 255.0).sub_(mean).div_(std).numpy()


def decode_batch(values: "list[bytes]", spec: PreprocessSpec, augmentation: AugmentConfig,
                 rng: "np.random.Generator") -> "np.ndarray":
    """Stored encoded images (``features.preprocess.storage: encoded``) -> uint8 ``N x C x H x W``.

    Each image is decoded with Pillow; with ``crop_scale`` set, a random box of it (torchvision's
    ``RandomResizedCrop`` rule: area fraction and aspect ratio drawn, the box clipped to the image
    rather than drawn again) is resized to the spec's size in one ``resize(box=...)``, else the
    evaluation transform (:func:`lakeloop.preprocess.image_to_pixels`) is applied; then the flip. The
    per-image work is the decode, which no batch operation can do; :func:`augment_batch` does the rest
    (shift, jitter, normalise) for the whole chunk, with crops and flips turned off.
    """
    import numpy as np
    from PIL import Image

    from lakeloop.preprocess import decoded_image, image_to_pixels

    out = np.empty((len(values), spec.height, spec.width, spec.channels), dtype=np.uint8)
    size, shape = (spec.width, spec.height), (spec.height, spec.width, spec.channels)
    for row, value in enumerate(values):
        if crops(augmentation):
            img = decoded_image(value, spec.channels)
            box = random_box(img.width, img.height, augmentation, rng)
            pixels = np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.uint8).reshape(shape)
        else:  # the evaluation transform, byte for byte what scoring does
            pixels = np.frombuffer(image_to_pixels(value, spec), dtype=np.uint8).reshape(shape)
        out[row] = pixels[:, ::-1] if augmentation.flip and rng.random() < 0.5 else pixels
    return out.transpose(0, 3, 1, 2)


def random_box(width: int, height: int, augmentation: AugmentConfig,
               rng: "np.random.Generator") -> tuple[float, float, float, float]:
    """A crop box (left, top, right, bottom) of a ``width`` x ``height`` image: ``crop_scale`` of its
    area, aspect ratio (in pixels) in ``crop_ratio``, anywhere inside it."""
    area = rng.uniform(*augmentation.crop_scale) * width * height
    ratio = math.exp(rng.uniform(math.log(augmentation.crop_ratio[0]), math.log(augmentation.crop_ratio[1])))
    box_w, box_h = min(width, math.sqrt(area * ratio)), min(height, math.sqrt(area / ratio))
    left, top = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    return left, top, left + box_w, top + box_h


def crop_boxes(n: int, augmentation: AugmentConfig, rng: "np.random.Generator") -> "np.ndarray":
    """``n`` affine maps ``2 x 3`` from output to input coordinates (``affine_grid``'s [-1, 1]
    frame): a box of the drawn area fraction and aspect ratio, placed anywhere inside the
    image (the whole image when crops are off), mirrored for the images the flip picks. The
    aspect ratio is of the box's fractions of the image's sides (of pixels for the square inputs
    models mostly take)."""
    import numpy as np

    if crops(augmentation):
        low, high = augmentation.crop_scale
        area = rng.uniform(low, high, n)
        log_ratio = rng.uniform(math.log(augmentation.crop_ratio[0]), math.log(augmentation.crop_ratio[1]), n)
        ratio = np.exp(log_ratio)
        # Width and height as fractions of the image's; a box that would stick out is clipped to it.
        width = np.minimum(np.sqrt(area * ratio), 1.0)
        height = np.minimum(np.sqrt(area / ratio), 1.0)
        centre_x = rng.uniform(-1.0, 1.0, n) * (1.0 - width)
        centre_y = rng.uniform(-1.0, 1.0, n) * (1.0 - height)
    else:  # a flip alone: the whole image
        width = height = np.ones(n)
        centre_x = centre_y = np.zeros(n)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0) if augmentation.flip else np.ones(n)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    return theta


def _crop_and_flip(images: "torch.Tensor", augmentation: AugmentConfig, rng: "np.random.Generator") -> "torch.Tensor":
    import torch
    from torch.nn import functional as F

    theta = torch.from_numpy(crop_boxes(images.shape[0], augmentation, rng))
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _jitter_and_normalise(images: "torch.Tensor", strength: float, spec: PreprocessSpec,
                          rng: "np.random.Generator") -> "torch.Tensor":
    """Colour jitter and normalisation of 0..255 float ``N x C x H x W`` in one pass per image.

    Brightness ``b``, contrast ``k`` and saturation ``s`` factors are drawn per image in
    [1 - strength, 1 + strength] (in that order; saturation for colour images only). Brightness
    scales, contrast pulls towards the image's mean grey, saturation towards each pixel's grey
    (ITU-R 601 luma, as torchvision's): all linear in the pixel's channels, so with the scaling to
    [0, 1] and the normalisation they fold into one ``C x C`` matrix and one offset per image,
    applied with a batched matrix product, then clamped to what [0, 1] normalises to. (torchvision
    clamps after each adjustment; here once, at the end.)
    """
    import torch

    n, channels, height, width = images.shape

    def factors() -> "torch.Tensor":
        return torch.from_numpy(rng.uniform(1 - strength, 1 + strength, n).astype("float32"))

    brightness, contrast = factors(), factors()
    saturation = factors() if channels == 3 else torch.ones(n)
    luma = torch.tensor(_LUMA if channels == 3 else (1.0,), dtype=torch.float32)
    grey_mean = torch.einsum("nchw,c->n", images, luma) / (height * width * 255.0)
    # y = k b (s x + (1 - s) luma.x) + (1 - k) b grey_mean, for x in [0, 1]
    eye = torch.eye(channels).expand(n, channels, channels)
    towards_grey = torch.ones(channels, 1) @ luma.view(1, channels)
    mix = saturation.view(n, 1, 1) * eye + (1 - saturation).view(n, 1, 1) * towards_grey
    matrix = (contrast * brightness).view(n, 1, 1) * mix / 255.0
    offset = ((1 - contrast) * brightness * grey_mean).view(n, 1).expand(n, channels)
    mean = torch.tensor(spec.mean, dtype=torch.float32)
    std = torch.tensor(spec.std, dtype=torch.float32)
    matrix = matrix / std.view(1, channels, 1)
    offset = (offset - mean.view(1, channels)) / std.view(1, channels)
    out = torch.baddbmm(offset.unsqueeze(2), matrix, images.reshape(n, channels, height * width))
    low, high = (-mean / std).view(1, channels, 1), ((1 - mean) / std).view(1, channels, 1)
    return out.clamp_(low, high).view(n, channels, height, width)

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
   factor drawn from ``[1 - colour_jitter, 1 + colour_jitter]``, the same adjustments as
   torchvision's ``ColorJitter``, in [0, 1] before normalising.

Every draw comes from the ``numpy`` generator the caller seeds with ``(seed, epoch, rank)``,
and the torch operations are deterministic on CPU, so an epoch's batches are a function of
those three numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.preprocess import PreprocessSpec, normalize, random_shift

if TYPE_CHECKING:
    import numpy as np

# ITU-R 601 luma weights: the grey a colour image's saturation is blended with (as torchvision's).
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augmentation:
    """What :func:`augment_batch` does (``train.augmentation``; README "Augmentation")."""

    shift: int = 2
    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    colour_jitter: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Augmentation":
        return cls(int(data.get("shift", 2)), tuple(data.get("crop_scale", (1.0, 1.0))),
                   tuple(data.get("crop_ratio", (3 / 4, 4 / 3))), bool(data.get("flip", False)),
                   float(data.get("colour_jitter", 0.0)))

    @property
    def crops(self) -> bool:
        return tuple(self.crop_scale) != (1.0, 1.0)

    @property
    def warps(self) -> bool:
        """Whether a crop or a flip moves pixels (one resampling pass does both)."""
        return self.crops or self.flip


NO_AUGMENTATION = Augmentation(shift=0)


def augment_batch(batch: "np.ndarray", spec: PreprocessSpec, augmentation: Augmentation,
                  rng: "np.random.Generator") -> "np.ndarray":
    """uint8 ``N x C x H x W`` -> augmented, normalised float32 ``N x C x H x W`` (see the module)."""
    import numpy as np

    batch = random_shift(batch, augmentation.shift, rng)
    if not augmentation.warps and not augmentation.colour_jitter:
        return normalize(batch, spec)
    import torch

    images = torch.from_numpy(np.ascontiguousarray(batch)).to(torch.float32).mul_(1 / 255.0)
    if augmentation.warps:
        images = _crop_and_flip(images, augmentation, rng)
    if augmentation.colour_jitter:
        images = _jitter(images, augmentation.colour_jitter, rng)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return images.sub_(mean).div_(std).numpy()


def crop_boxes(n: int, augmentation: Augmentation, rng: "np.random.Generator") -> "np.ndarray":
    """``n`` affine maps ``2 x 3`` from output to input coordinates (``affine_grid``'s [-1, 1]
    frame): a box of the drawn area fraction and aspect ratio, placed anywhere inside the
    image, mirrored for the images the flip picks."""
    import numpy as np

    low, high = augmentation.crop_scale
    area = rng.uniform(low, high, n)
    log_ratio = rng.uniform(math.log(augmentation.crop_ratio[0]), math.log(augmentation.crop_ratio[1]), n)
    ratio = np.exp(log_ratio)
    # Width and height as fractions of the image's; a box that would stick out is clipped to it.
    width = np.minimum(np.sqrt(area * ratio), 1.0)
    height = np.minimum(np.sqrt(area / ratio), 1.0)
    centre_x = rng.uniform(-1.0, 1.0, n) * (1.0 - width)
    centre_y = rng.uniform(-1.0, 1.0, n) * (1.0 - height)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0) if augmentation.flip else np.ones(n)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    return theta


def _crop_and_flip(images: "torch.Tensor", augmentation: Augmentation, rng: "np.random.Generator") -> "torch.Tensor":
    import torch
    from torch.nn import functional as F

    theta = torch.from_numpy(crop_boxes(images.shape[0], augmentation, rng))
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _jitter(images: "torch.Tensor", strength: float, rng: "np.random.Generator") -> "torch.Tensor":
    """Brightness, contrast, then saturation, each by a per-image factor in [1 - s, 1 + s]; clamped to [0, 1]."""
    import torch

    n, channels = images.shape[:2]

    def factors() -> "torch.Tensor":
        return torch.from_numpy(rng.uniform(1 - strength, 1 + strength, n).astype("float32")).view(n, 1, 1, 1)

    images = images.mul_(factors()).clamp_(0, 1)
    grey = _grey(images)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    images = images.sub_(mean).mul_(factors()).add_(mean).clamp_(0, 1)
    if channels == 3:
        grey = _grey(images)
        images = images.sub_(grey).mul_(factors()).add_(grey).clamp_(0, 1)
    return images


def _grey(images: "torch.Tensor") -> "torch.Tensor":
    """``N x 1 x H x W`` luma of colour images; grey ones are their own."""
    import torch

    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor(_LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)

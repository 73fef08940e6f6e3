"""The model architectures lakeloop trains, built by name so a registry entry can rebuild its model.

* ``lenet5``: LeCun's classic digits CNN (two conv + pool stages, three dense layers),
  for 1- or 3-channel inputs of at least 28x28 (32x32 as in the paper).
* ``small_resnet``: a compact residual CNN for small colour images (three stages of
  basic blocks, 16/32/64 channels, global average pooling).
* ``resnet18``: torchvision's ResNet-18 for transfer learning. Pretrained weights come
  only from a file the user supplies (``train.pretrained_weights``); nothing is
  downloaded. Its classifier is replaced to fit the classes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from lakeloop.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from lakeloop.registry import ModelVersion, Registry

ARCHITECTURES = ("lenet5", "small_resnet", "resnet18")


def _lenet5(in_channels: int, num_classes: int, height: int, width: int):
    from torch import nn

    # Feature map size after conv5 -> pool -> conv5 -> pool, computed so any input >= 28 works.
    h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
    if h < 1 or w < 1:
        raise ConfigError(f"lenet5 needs inputs of at least 16x16; features.preprocess is {height}x{width}")
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * h * w, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def _small_resnet(in_channels: int, num_classes: int):
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout else nn.Identity()
            )

        def forward(self, x):
            out = nn.functional.relu(self.bn1(self.conv1(x)))
            return nn.functional.relu(self.bn2(self.conv2(out)) + self.skip(x))

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def _resnet18(in_channels: int, num_classes: int, pretrained_state: dict | None):
    from torch import nn
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    if pretrained_state is not None:
        missing, unexpected = model.load_state_dict(pretrained_state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("fc.")]:
            raise ConfigError(
                f"train.pretrained_weights does not fit torchvision's resnet18 "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); give a resnet18 state dict"
            )
    if in_channels != 3:
        # Grey input: average the RGB filters so pretrained features still apply.
        weight = model.conv1.weight.detach().mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        model.conv1.weight.data.copy_(weight)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def build_model(
    architecture: str,
    num_classes: int,
    in_channels: int,
    height: int,
    width: int,
    pretrained_state: dict | None = None,
) -> "torch.nn.Module":
    """A freshly initialised model of ``architecture`` (with ``pretrained_state`` for resnet18)."""
    if num_classes < 2:
        raise ConfigError(f"training needs at least 2 classes, found {num_classes}; check the labels in bronze.images")
    if architecture == "lenet5":
        return _lenet5(in_channels, num_classes, height, width)
    if architecture == "small_resnet":
        return _small_resnet(in_channels, num_classes)
    if architecture == "resnet18":
        return _resnet18(in_channels, num_classes, pretrained_state)
    raise ConfigError(f"train.architecture = {architecture!r} is not one of {', '.join(ARCHITECTURES)}")


def state_dict_bytes(model: "torch.nn.Module") -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_state_dict_bytes(data: bytes) -> dict:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def torchscript_bytes(model: "torch.nn.Module", example: "torch.Tensor") -> bytes:
    """The model traced to TorchScript (CPU), for serving without lakeloop's code."""
    import warnings

    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.14 marks TorchScript deprecated in favour of torch.export; it still loads
            # everywhere without lakeloop's code, which is what this copy is for.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model.cpu(), example.cpu())
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
        return buffer.getvalue()
    finally:
        model.train(was_training)


def load_model(registry: "Registry", version: "ModelVersion") -> tuple["torch.nn.Module", dict]:
    """Rebuild a registered model (architecture from its metadata, weights from the registry),
    in eval mode on the CPU; returns ``(model, metadata)``. Works without Spark.

    Raises
    ------
    ModelNotFound, SourceError
        ``version`` is not committed, or its files are missing or altered.
    """
    metadata = registry.read_metadata(version)
    channels, height, width = metadata["input_shape"]
    model = build_model(metadata["architecture"], len(metadata["classes"]), channels, height, width)
    model.load_state_dict(load_state_dict_bytes(registry.read_weights(version)))
    model.eval()
    return model, metadata

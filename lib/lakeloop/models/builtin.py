"""The built-in architectures, as model factories (``train.model: lenet5 | small_resnet | resnet18``).

* ``lenet5``: LeCun's classic digits CNN, for 1- or 3-channel inputs of at least 16x16
  (32x32 as in the paper).
* ``small_resnet``: a compact residual CNN for small colour images.
* ``resnet18``: torchvision's ResNet-18 for transfer learning. Pretrained weights come only
  from a file the user supplies (``train.init_from``); nothing is downloaded.
* ``mlp``: a multilayer perceptron for table rows (or flattened images); ``train.model_options``
  ``hidden`` (layer widths, default ``[64, 32]``) and ``dropout`` (default 0.1).

``lenet5`` and ``mlp`` also take images with table columns (``input_kind = "image_table"``,
``features.table_inputs``): LeNet-5's 84 image features and a 16-wide layer over the table
columns meet in its last layer; the MLP reads the flattened image and the table columns as one row.
"""

from __future__ import annotations

from lakeloop.errors import ConfigError
from lakeloop.models.spec import ModelSpec


def lenet5(spec: ModelSpec):
    """LeCun's digits CNN: two conv + pool stages, three dense layers; inputs of at least 16x16."""
    from torch import nn

    in_channels, num_classes, height, width = spec.channels, spec.num_outputs, spec.height, spec.width
    # Feature map size after conv5 -> pool -> conv5 -> pool, computed so any input >= 16 works.
    h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
    if h < 1 or w < 1:
        raise ConfigError(f"lenet5 needs inputs of at least 16x16; features.preprocess is {height}x{width}")
    trunk = [
        nn.Conv2d(in_channels, 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * h * w, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
    ]
    if spec.input_kind == "image_table":
        return image_and_table(nn.Sequential(*trunk), 84, spec)
    return nn.Sequential(*trunk, nn.Linear(84, num_classes))


def image_and_table(trunk, trunk_width: int, spec: ModelSpec, table_hidden: int = 16):
    """An image trunk (``images -> trunk_width`` features) and a small layer over the table
    columns, joined in the output layer: a module called as ``model(images, table)``."""
    import torch
    from torch import nn

    class ImageAndTable(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            self.table = nn.Sequential(nn.Linear(spec.table_width, table_hidden), nn.ReLU())
            self.head = nn.Linear(trunk_width + table_hidden, spec.num_outputs)

        def forward(self, images, table):
            return self.head(torch.cat([self.trunk(images), self.table(table)], dim=1))

    return ImageAndTable()


def small_resnet(spec: ModelSpec):
    """A compact residual CNN: three stages of basic blocks (16/32/64 channels), global average pooling."""
    from torch import nn

    in_channels, num_classes = spec.channels, spec.num_outputs

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


def resnet18(spec: ModelSpec):
    """torchvision's ResNet-18 (random weights; start from a weights file with ``train.init_from``),
    its first convolution fitted to the channels and its classifier to the outputs."""
    from torch import nn
    from torchvision.models import resnet18 as torchvision_resnet18

    model = torchvision_resnet18(weights=None)
    if spec.channels != 3:
        model.conv1 = nn.Conv2d(spec.channels, 64, 7, 2, 3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, spec.num_outputs)
    return model


def mlp(spec: ModelSpec):
    """Dense layers with ReLU and dropout over the flattened input, for table rows above all."""
    from torch import nn

    hidden = spec.options.get("hidden", [64, 32])
    dropout = float(spec.options.get("dropout", 0.1))
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError(f"train.model_options.hidden = {hidden!r} must be a list of layer widths, e.g. [64, 32]")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"train.model_options.dropout = {dropout!r} must lie in [0, 1), e.g. 0.1")
    layers: list = [nn.Flatten()]
    width = spec.input_width + (spec.table_width if spec.input_kind == "image_table" else 0)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, spec.num_outputs))
    net = nn.Sequential(*layers)
    if spec.input_kind != "image_table":
        return net

    class FlatRow(nn.Module):
        """The flattened image and the table columns as one row."""

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images, table):
            import torch

            return self.net(torch.cat([images.flatten(1), table], dim=1))

    return FlatRow()


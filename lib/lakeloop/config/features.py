"""``features.*``: how ``build_features`` turns bronze into ``silver.features`` (images or a table),
and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from lakeloop.config.checks import at_least, check_batch_bytes, require_uri
from lakeloop.errors import ConfigError
from lakeloop.layout import table_ref


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a model input; recorded with features and models so training
    and scoring use exactly the same transformation (see lakeloop.preprocess)."""

    height: int = 32
    width: int = 32
    channels: Literal[1, 3] = 1
    resize: Literal["pad", "stretch", "crop"] = "pad"  # crop: shorter side to size / crop_fraction, then the centre
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    crop_fraction: float = 0.875  # resize: crop (torchvision's Resize(256) + CenterCrop(224))
    # pixels: silver.features holds uint8 H x W x C; encoded: each image re-encoded, shorter side at
    # most encoded_short_side, decoded (and randomly cropped) by training, centre-cropped by scoring.
    storage: Literal["pixels", "encoded"] = "pixels"
    encoded_short_side: int = 256
    encoded_format: Literal["JPEG", "PNG"] = "JPEG"
    encoded_quality: int = 90
    # A JPEG whose output (the stored image, or a model input when scoring) is at most half its size is
    # decoded at a reduced scale by libjpeg (Pillow's draft: 1/2, 1/4 or 1/8), which still reads every
    # byte of it, at a fraction of the cost. false: every JPEG is decoded at full size first.
    jpeg_draft: bool = True


@dataclass(frozen=True)
class TableFeaturesConfig:
    """A table as training data (``features.table``): which bronze table, its key, the columns a
    model reads and the one it predicts; see docs/jobs/train.md#tables-as-training-data-featurestable-traintask."""

    source: str  # the bronze table, e.g. bronze.wine
    key: str  # the column that names a row (the table's key): predictions are keyed by it
    target: str  # the label: a class, a number (train.task = regression), or labels (multilabel)
    numeric: tuple[str, ...] = ()  # standardised with the train split's mean and standard deviation
    categorical: tuple[str, ...] = ()  # one-hot over the train split's values, plus an "unknown" bucket
    fill: Literal["mean", "zero"] = "mean"  # what a missing numeric value becomes (before standardising)
    missing_indicators: bool = True  # add a 0/1 input per numeric column: "this value was missing"
    max_categories: int = 50  # a categorical column's most frequent training values kept; the rest are "unknown"
    label_delimiter: str = ","  # multilabel: how a text target separates its labels ("a,b"); list columns as is


@dataclass(frozen=True)
class TableInputsConfig:
    """Columns of ``silver.features`` (joined from ``features.join_table``) that an image model reads
    beside each image (``features.table_inputs``), encoded as ``features.table`` columns are."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    fill: Literal["mean", "zero"] = "mean"
    missing_indicators: bool = True
    max_categories: int = 50


@dataclass(frozen=True)
class FeaturesConfig:
    """Settings of ``jobs/build_features.py``; see docs/jobs/build_features.md."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    table: TableFeaturesConfig | None = None  # set: build features from this table instead of bronze.images
    table_inputs: TableInputsConfig | None = None  # set: image models also read these joined columns
    split_seed: str = "lakeloop"
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    join_table: str | None = None
    join_key: str = "path"
    join_columns: tuple[str, ...] = ()
    # Images, train.task multilabel or regression: the column of silver.features holding the target,
    # "label" (the image's label, ingest_images.label_from) or one of join_columns.
    target: str = "label"
    label_delimiter: str = ","  # multilabel: how a text target separates its labels ("a,b"); list columns as is
    training_set_files: int = 16
    # Preprocess only bronze's rows added since the last build while its recipe holds; false: every row.
    incremental: bool = True
    # Bytes of images a Python worker is handed at a time to preprocess (see ingest_images.max_batch_bytes).
    max_batch_bytes: int = 32 * 1024 * 1024


def check_features(cfg: FeaturesConfig) -> None:
    check_batch_bytes(cfg.max_batch_bytes, "features.max_batch_bytes", "33554432")
    pre = cfg.preprocess
    if pre.height < 8 or pre.width < 8:
        raise ConfigError(f"features.preprocess height/width must be at least 8, found {pre.height}x{pre.width}")
    if len(pre.mean) != pre.channels or len(pre.std) != pre.channels or min(pre.std) <= 0:
        raise ConfigError(
            f"features.preprocess.mean and .std need one value per channel ({pre.channels}) and std > 0; "
            f"found mean={list(pre.mean)} std={list(pre.std)}"
        )
    if not 0 < pre.crop_fraction <= 1:
        raise ConfigError(f"features.preprocess.crop_fraction = {pre.crop_fraction!r} must lie in (0, 1], e.g. 0.875")
    # Stored images must hold what the evaluation transform takes: with resize: crop, the centre
    # crop_fraction of a shorter side of at least the input's side / crop_fraction.
    needed = math.ceil(max(pre.height, pre.width) / (pre.crop_fraction if pre.resize == "crop" else 1.0))
    if pre.storage == "encoded" and pre.encoded_short_side < needed:
        raise ConfigError(f"features.preprocess.encoded_short_side = {pre.encoded_short_side} is too small for a "
                          f"{pre.height}x{pre.width} input ({pre.resize}); use at least {needed}, e.g. "
                          f"{max(needed, 256)}")
    if not 1 <= pre.encoded_quality <= 100:
        raise ConfigError(f"features.preprocess.encoded_quality = {pre.encoded_quality} must be 1 to 100, e.g. 90")
    fractions = cfg.split_fractions
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            f"features.split_fractions = {list(fractions)} must be three non-negative numbers "
            f"(train, validation, test) adding up to 1, e.g. [0.8, 0.1, 0.1]"
        )
    at_least(cfg.training_set_files, 1, "features.training_set_files", "16")


def check_table_features(cfg: TableFeaturesConfig) -> None:
    if table_ref(cfg.source) is None:
        require_uri(cfg.source, "features.table.source (a lake table such as bronze.wine, or a URI)")
    if not cfg.numeric and not cfg.categorical:
        raise ConfigError("features.table lists no input columns: name them in features.table.numeric and/or "
                          "features.table.categorical")
    named = [cfg.key, cfg.target, *cfg.numeric, *cfg.categorical]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise ConfigError(f"features.table names {repeated} more than once (key, target, numeric and categorical "
                          f"columns must differ)")
    at_least(cfg.max_categories, 1, "features.table.max_categories", "50")
    if not cfg.label_delimiter:
        raise ConfigError("features.table.label_delimiter is empty; use e.g. ','")


def check_table_inputs(cfg: FeaturesConfig) -> None:
    inputs = cfg.table_inputs
    if cfg.table is not None:
        raise ConfigError("features.table_inputs and features.table are both set; table_inputs adds joined columns "
                          "to image features, features.table makes a table the training data: keep one")
    named = [*inputs.numeric, *inputs.categorical]
    if not named:
        raise ConfigError("features.table_inputs lists no columns: name them in features.table_inputs.numeric "
                          "and/or features.table_inputs.categorical")
    if cfg.join_table is None:
        raise ConfigError("features.table_inputs needs features.join_table: its columns are joined to the images "
                          "there (features.join_columns)")
    unjoined = [c for c in named if c not in cfg.join_columns]
    if unjoined:
        raise ConfigError(f"features.table_inputs names {unjoined}, which features.join_columns "
                          f"({list(cfg.join_columns)}) does not join; add them there")
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise ConfigError(f"features.table_inputs names {repeated} more than once")
    at_least(inputs.max_categories, 1, "features.table_inputs.max_categories", "50")


def check_image_target(cfg: FeaturesConfig, task: str) -> None:
    """features.target: the image label, or a joined column for a multilabel or regression image model."""
    if task == "multilabel" and cfg.table is None and not cfg.label_delimiter:
        raise ConfigError("features.label_delimiter is empty; use e.g. ',' (or '+' for folders named a+b)")
    if cfg.target == "label":
        return
    if cfg.table is not None:
        raise ConfigError(f"features.target = {cfg.target!r} applies to images; a table's target is "
                          f"features.table.target: set it there and remove features.target")
    if task == "classification":
        raise ConfigError(f"features.target = {cfg.target!r} but train.task = classification, whose classes are the "
                          f"images' labels (ingest_images.label_from); set train.task to multilabel or regression, "
                          f"or remove features.target")
    if cfg.target not in cfg.join_columns or cfg.join_table is None:
        raise ConfigError(f"features.target = {cfg.target!r} is neither label nor a column that features.join_columns "
                          f"({list(cfg.join_columns)}) joins from features.join_table; add it there or use label")
    inputs = cfg.table_inputs
    if inputs is not None and cfg.target in (*inputs.numeric, *inputs.categorical):
        raise ConfigError(f"features.target {cfg.target!r} is also in features.table_inputs: a model must not read "
                          f"the value it predicts; remove it from table_inputs")

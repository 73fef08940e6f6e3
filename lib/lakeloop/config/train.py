"""``train.*``: the training job's settings (model, optimiser, feed, augmentation), and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lakeloop.config.checks import at_least, require_uri
from lakeloop.errors import ConfigError
from lakeloop.layout import LATEST, check_alias, check_model_name, factory_reference, parse_model_ref


@dataclass(frozen=True)
class AugmentConfig:
    """``train.augmentation``: what training does to each image before the model sees it (with
    ``train.augment: true``); never applied at scoring. See docs/jobs/train.md ("Augmentation") and
    :mod:`lakeloop.training.augment`."""

    shift: int = 2  # move each image by up to this many pixels, black filled (0: off)
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random resized crop, area fraction range; (1, 1): off
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)  # the crop box's aspect ratio range
    flip: bool = False  # mirror half the images left to right
    colour_jitter: float = 0.0  # brightness, contrast, saturation factors in [1 - x, 1 + x] (0: off)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``jobs/train.py``; see docs/jobs/train.md."""

    model_name: str = "digits_lenet"
    model: str = "lenet5"  # a built-in name or a factory reference "package.module:factory"
    model_options: dict[str, Any] = field(default_factory=dict)
    task: Literal["classification", "multilabel", "regression"] = "classification"
    multilabel_threshold: float = 0.5  # a label is predicted when its probability reaches this
    init_from: str | None = None  # NAME:VERSION, NAME@alias, or the URI of a state-dict file
    num_processes: int = 2
    use_gpu: bool = False
    local_mode: bool = False
    epochs: int = 30
    batch_size: int = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = 0.003
    weight_decay: float = 0.0001
    momentum: float = 0.9
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 7  # any number from 0 to 2**63 - 1: initial weights, batch order, augmentation
    # The feed's reader (lakeloop.training.readers): "arrow" (pyarrow alone, every stack) or
    # "petastorm" (make_batch_reader, the spark40 stack only); both give the same batches.
    reader: Literal["arrow", "petastorm"] = "arrow"
    prefetch: int = 2  # row groups a thread fetches (decodes) ahead of the training step (0: none)
    amp: bool = True
    torch_threads: int = 1
    early_stopping_patience: int | None = None
    # The validation figure that picks the best epoch and stops early; "auto": the task's headline
    # (accuracy, micro-F1, RMSE). Higher is better except for loss, MAE and RMSE.
    early_stopping_metric: Literal["auto", "val_accuracy", "val_macro_f1", "val_micro_f1", "val_loss", "val_mae",
                                   "val_rmse", "val_r2"] = "auto"
    publish_epoch: Literal["best", "last"] = "best"
    class_weights: Literal["none", "balanced"] = "none"
    alias: str | None = None


def task_metric(task: str, setting: str) -> tuple[str, bool]:
    """The validation figure that picks the best epoch (``train.early_stopping_metric``, ``auto``
    meaning the task's headline) and whether higher is better."""
    metric = setting if setting != "auto" else {"classification": "val_accuracy", "multilabel": "val_micro_f1",
                                                "regression": "val_rmse"}[task]
    return metric, metric not in ("val_loss", "val_mae", "val_rmse")


_TASK_METRICS = {"classification": ("val_accuracy", "val_macro_f1", "val_loss"),
                 "multilabel": ("val_micro_f1", "val_macro_f1", "val_loss"),
                 "regression": ("val_mae", "val_rmse", "val_r2", "val_loss")}


# Any non-negative signed 64-bit number: the feed's generators (numpy's SeedSequence) take any
# non-negative integer, torch.manual_seed a 64-bit one, and the seed is kept as JSON and in the training key.
MAX_SEED = 2**63 - 1


def check_train(cfg: TrainConfig) -> None:
    check_model_name(cfg.model_name)
    for setting, value, example in (("num_processes", cfg.num_processes, "2"), ("epochs", cfg.epochs, "30"),
                                    ("batch_size", cfg.batch_size, "64"),
                                    ("torch_threads", cfg.torch_threads, "1")):
        at_least(value, 1, f"train.{setting}", example)
    at_least(cfg.prefetch, 0, "train.prefetch", "2")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"train.seed = {cfg.seed!r} is outside the seeds training accepts, 0 to 2**63 - 1 "
                          f"({MAX_SEED}); use a non-negative number in that range, e.g. 42")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate = {cfg.learning_rate!r} must be greater than 0, e.g. 0.003")
    factory_reference(cfg.model)  # the form only: the module may exist only where spark-submit ships it
    if cfg.init_from is not None:
        init_source(cfg.init_from)
    if cfg.early_stopping_metric != "auto" and cfg.early_stopping_metric not in _TASK_METRICS[cfg.task]:
        raise ConfigError(f"train.early_stopping_metric = {cfg.early_stopping_metric!r} is not measured for "
                          f"train.task = {cfg.task!r}; use auto or one of {', '.join(_TASK_METRICS[cfg.task])}")
    if not 0.0 < cfg.multilabel_threshold < 1.0:
        raise ConfigError(f"train.multilabel_threshold = {cfg.multilabel_threshold!r} must lie between 0 and 1, "
                          f"e.g. 0.5")
    if cfg.class_weights == "balanced" and cfg.task != "classification":
        raise ConfigError(f"train.class_weights = balanced applies to classification only (train.task = "
                          f"{cfg.task!r}); set it to none")
    if cfg.early_stopping_patience is not None:
        at_least(cfg.early_stopping_patience, 1, "train.early_stopping_patience", "5 (epochs without improvement)")
    _check_augmentation(cfg.augmentation)
    if cfg.alias is not None:
        check_alias(cfg.alias)
        if cfg.alias == LATEST:
            raise ConfigError(f"train.alias = {LATEST!r}: publishing moves that alias itself; pick another name "
                              f"(e.g. production) or leave train.alias unset")


def _check_augmentation(cfg: AugmentConfig) -> None:
    at_least(cfg.shift, 0, "train.augmentation.shift", "2")
    for name, pair, limit, example in (("crop_scale", cfg.crop_scale, 1.0, "[0.5, 1.0]"),
                                        ("crop_ratio", cfg.crop_ratio, None, "[0.75, 1.333]")):
        if len(pair) != 2:
            raise ConfigError(f"train.augmentation.{name} = {list(pair)} must be two numbers, low and high, "
                              f"e.g. {example}")
        low, high = pair
        if not 0 < low <= high or (limit is not None and high > limit):
            bound = f"0 < low <= high <= {limit}" if limit is not None else "0 < low <= high"
            raise ConfigError(f"train.augmentation.{name} = [{low}, {high}] must satisfy {bound}, e.g. {example}")
    if not 0 <= cfg.colour_jitter < 1:
        raise ConfigError(f"train.augmentation.colour_jitter = {cfg.colour_jitter!r} must be at least 0 and below 1, "
                          f"e.g. 0.2 (0: off)")


_SCHEMES = ("file", "hdfs", "s3a", "s3", "dbfs", "abfss", "gs", "webhdfs")


def init_source(text: str) -> tuple[str, ...]:
    """What ``train.init_from`` names: ``("model", name, ref)`` for ``NAME:VERSION`` or ``NAME@alias``
    (a registered version), ``("file", uri)`` for a state-dict file (a URI: it has a scheme or a ``/``).

    Raises
    ------
    ConfigError
        neither form.
    """
    text = text.strip()
    if "/" in text or text.partition(":")[0].lower() in _SCHEMES:
        return ("file", require_uri(text, "train.init_from (NAME:VERSION, NAME@alias, or the URI of a weights file)"))
    if ":" not in text and "@" not in text:
        raise ConfigError(f"train.init_from = {text!r} is neither a registered model (NAME:VERSION or NAME@alias, "
                          f"e.g. digits_lenet:3) nor the URI of a weights file (e.g. file:/data/resnet18-weights.pt)")
    name, ref = parse_model_ref(text)
    return ("model", name, ref)

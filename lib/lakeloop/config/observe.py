"""``evaluate.*``, ``promote.*``, ``quality.*`` and ``observe.*``: how models are judged and
promoted, the data-quality thresholds, and what the jobs show; and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lakeloop.config.checks import at_least
from lakeloop.errors import ConfigError
from lakeloop.layout import LATEST, check_alias, parse_model_ref


@dataclass(frozen=True)
class PromoteConfig:
    """The promotion gate of ``lakeloop registry promote``: which test-split metric decides, by how much."""

    alias: str = "production"
    # a figure of each version's test row in gold.model_evaluations (written by evaluate): accuracy,
    # macro_f1, top_k_accuracy, expected_calibration_error, largest_group_gap (set lower_is_better
    # for those two), or any other number in its evaluation JSON, e.g. macro_precision
    metric: str = "accuracy"
    lower_is_better: bool = False
    margin: float = 0.0  # the challenger must beat the holder by more than this


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of ``jobs/evaluate.py``; see :mod:`lakeloop.evaluation`."""

    model: str | None = None  # default: score.model
    split: Literal["train", "validation", "test"] = "test"
    top_k: int = 3
    calibration_bins: int = 10


@dataclass(frozen=True)
class QualityConfig:
    """Data-quality and bias checks (build_features, evaluate, score); thresholds unset are not checked."""

    group_column: str | None = None
    max_class_imbalance: float | None = None
    min_label_coverage: float | None = None
    max_group_accuracy_gap: float | None = None
    max_input_psi: float | None = None
    on_violation: Literal["warn", "fail"] = "warn"


@dataclass(frozen=True)
class ObserveConfig:
    """What the jobs show besides their JSON report: the HTML page, progress lines, TensorBoard, MLflow."""

    html_reports: bool = True
    progress_interval_s: float = 10.0
    tensorboard: bool = True
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "lakeloop"


def check_evaluate(cfg: EvaluateConfig) -> None:
    """evaluate.*: the model reference parses, the numbers are in range."""
    if cfg.model is not None:
        parse_model_ref(cfg.model)
    at_least(cfg.top_k, 1, "evaluate.top_k", "3")
    at_least(cfg.calibration_bins, 2, "evaluate.calibration_bins", "10")


def check_promote(cfg: PromoteConfig) -> None:
    """promote.*: an alias promotion may move, a margin of 0 or more."""
    check_alias(cfg.alias)
    if cfg.alias == LATEST:
        raise ConfigError(f"promote.alias = {LATEST!r}: publishing moves that alias; promote to another one, "
                          f"e.g. production")
    if cfg.margin < 0:
        raise ConfigError(f"promote.margin = {cfg.margin!r} must be 0 or more, e.g. 0.005")


def check_quality(quality: QualityConfig) -> None:
    """quality.*: each threshold set lies in its range."""
    for setting, value, low, high, example in (
        ("max_class_imbalance", quality.max_class_imbalance, 1.0, math.inf, "3.0 (the largest class at most 3x "
                                                                             "the smallest)"),
        ("min_label_coverage", quality.min_label_coverage, 0.0, 1.0, "0.95"),
        ("max_group_accuracy_gap", quality.max_group_accuracy_gap, 0.0, 1.0, "0.05"),
        ("max_input_psi", quality.max_input_psi, 0.0, math.inf, "0.25"),
    ):
        if value is not None and not low <= value <= high:
            raise ConfigError(f"quality.{setting} = {value!r} must be between {low} and {high}, e.g. {example}")


def check_observe(cfg: ObserveConfig) -> None:
    """observe.*: a progress interval of 0 or more, a tracking URI that is not blank."""
    if cfg.progress_interval_s < 0:
        raise ConfigError(f"observe.progress_interval_s = {cfg.progress_interval_s!r} must be 0 "
                          f"(no progress lines) or more, e.g. 10")
    if cfg.mlflow_tracking_uri is not None and not cfg.mlflow_tracking_uri.strip():
        raise ConfigError("observe.mlflow_tracking_uri is empty; name a tracking URI (e.g. "
                          "sqlite:///mlflow.db, file:/path/mlruns, http://host:5000, databricks) or leave it unset")

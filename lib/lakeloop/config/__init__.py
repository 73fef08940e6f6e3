"""Typed, frozen configuration: profile file -> command-line overrides -> config object.

The package, by role (every public name is also here, so ``from lakeloop.config import X`` holds):

- :mod:`~lakeloop.config.loader`: the generic loading: find a profile, merge what it extends,
  apply ``--set``/``--conf`` overrides, expand the placeholders, build the typed :class:`Profile`
  (:func:`load_profile`).
- :mod:`~lakeloop.config.checks`: check helpers the sections share.
- one module per section, each with its dataclasses and their checks: :mod:`~lakeloop.config.spark`
  (``spark``, ``jvm``), :mod:`~lakeloop.config.ingest` (``ingest_images``, ``ingest_tables``),
  :mod:`~lakeloop.config.features`, :mod:`~lakeloop.config.train`, :mod:`~lakeloop.config.score`,
  :mod:`~lakeloop.config.schedule`, :mod:`~lakeloop.config.maintain`, :mod:`~lakeloop.config.observe`
  (``evaluate``, ``promote``, ``quality``, ``observe``) and :mod:`~lakeloop.config.profile` (the
  whole :class:`Profile`, ``demo``, ``faults``, and :func:`check_profile`, which runs every check).

Config is the bottom of the package's layers above ``errors``, ``layout`` and ``stacks``: nothing
here imports a step (ingest, training, scoring ...), so a step's rule that must hold when a profile
loads is written here, in its section's module.
"""

from __future__ import annotations

from lakeloop.config.checks import require_uri
from lakeloop.config.features import FeaturesConfig, PreprocessConfig, TableFeaturesConfig, TableInputsConfig
from lakeloop.config.ingest import (RESERVED_READER_OPTIONS, ImageIngestConfig, IngestStreamConfig, TableIngestConfig,
                                    TableSource, check_table_source)
from lakeloop.config.loader import (DEFAULT_CONF_DIR, JAR_PLACEHOLDERS, RENAMED_SETTINGS, REPO_ROOT, build_settings,
                                    find_profile, is_secret_setting, load_profile, parse_override, placeholder_values,
                                    repo_for)
from lakeloop.config.maintain import DELTA_SAFE_RETENTION_HOURS, MaintainConfig
from lakeloop.config.observe import EvaluateConfig, ObserveConfig, PromoteConfig, QualityConfig
from lakeloop.config.profile import DemoConfig, FaultsConfig, Profile, TaskFault, check_profile
from lakeloop.config.schedule import ScheduleConfig
from lakeloop.config.score import SCORE_INPUT_FORMS, ScoreConfig, ScoreKafkaConfig, ScoreStreamConfig
from lakeloop.config.spark import JvmSettings, SparkSettings
from lakeloop.config.train import MAX_SEED, AugmentConfig, TrainConfig, init_source, task_metric

__all__ = [
    "REPO_ROOT", "DEFAULT_CONF_DIR", "require_uri", "SparkSettings", "JvmSettings", "IngestStreamConfig",
    "ImageIngestConfig", "TableSource", "TableIngestConfig", "PreprocessConfig", "TableFeaturesConfig",
    "TableInputsConfig", "FeaturesConfig", "AugmentConfig", "TrainConfig", "ScoreStreamConfig", "ScoreKafkaConfig",
    "ScoreConfig", "ScheduleConfig", "MaintainConfig", "PromoteConfig", "EvaluateConfig", "QualityConfig",
    "ObserveConfig", "DemoConfig", "TaskFault", "FaultsConfig", "Profile", "find_profile", "parse_override",
    "is_secret_setting", "JAR_PLACEHOLDERS", "placeholder_values", "RENAMED_SETTINGS", "build_settings", "repo_for",
    "load_profile", "check_profile", "RESERVED_READER_OPTIONS", "check_table_source", "task_metric", "MAX_SEED",
    "init_source", "SCORE_INPUT_FORMS", "DELTA_SAFE_RETENTION_HOURS",
]

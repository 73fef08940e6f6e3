"""The whole profile (:class:`Profile`: one field per section), the demo and fault-injection
sections, and :func:`check_profile`, which runs every section's checks in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lakeloop.config.checks import at_least, require_uri
from lakeloop.config.features import (FeaturesConfig, check_features, check_image_target, check_table_features,
                                      check_table_inputs)
from lakeloop.config.ingest import ImageIngestConfig, TableIngestConfig, check_image_ingest, check_table_source
from lakeloop.config.maintain import MaintainConfig, check_maintain
from lakeloop.config.observe import (EvaluateConfig, ObserveConfig, PromoteConfig, QualityConfig, check_evaluate,
                                     check_observe, check_promote, check_quality)
from lakeloop.config.schedule import ScheduleConfig, check_schedule
from lakeloop.config.score import ScoreConfig, check_score
from lakeloop.config.spark import JvmSettings, SparkSettings
from lakeloop.config.train import TrainConfig, check_train
from lakeloop.errors import ConfigError
from lakeloop.layout import table_ref


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writer (``dev/lakeloop_dev/demo_data.py``, run by ``./dev/demo.sh``) writes the demo raw zone."""

    raw_root: str | None = None


@dataclass(frozen=True)
class TaskFault:
    """One Spark task made to fail (``lakeloop.faults``): of ``job``'s work, in ``partition``, on ``attempt``."""

    job: Literal["ingest_images", "build_features", "score"]
    partition: int = 0
    attempt: int = 0
    marker: str | None = None  # a local folder: the failing task leaves a file there first


@dataclass(frozen=True)
class FaultsConfig:
    """Fault injection, for the reliability tests only (a test profile: its name ends in "test")."""

    fail_task: TaskFault | None = None


@dataclass(frozen=True)
class Profile:
    """Everything a job needs, from one profile file plus command-line overrides."""

    name: str
    lake_root: str
    spark: SparkSettings = field(default_factory=SparkSettings)
    jvm: JvmSettings = field(default_factory=JvmSettings)
    ingest_images: ImageIngestConfig = field(default_factory=ImageIngestConfig)
    ingest_tables: TableIngestConfig = field(default_factory=TableIngestConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    maintain: MaintainConfig = field(default_factory=MaintainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)

    def hadoop_conf(self) -> dict[str, str]:
        """The ``spark.hadoop.*`` settings without that prefix: how the processes that have no
        SparkSession (training ranks, scoring workers, the registry) reach the lake's storage."""
        prefix = "spark.hadoop."
        return {k[len(prefix):]: str(v) for k, v in self.spark.conf.items() if k.startswith(prefix) and v is not None}


def check_profile(profile: Profile) -> None:
    """Check the settings no type annotation can express; raise a ConfigError naming the first bad one."""
    require_uri(profile.lake_root, "lake_root")
    for setting, value in (
        ("ingest_images.source", profile.ingest_images.source),
        ("ingest_images.labels_table", profile.ingest_images.labels_table),
        ("demo.raw_root", profile.demo.raw_root),
    ):
        if value is not None:
            require_uri(value, setting)
    check_image_ingest(profile.ingest_images)
    for name, table in profile.ingest_tables.tables.items():
        check_table_source(name, table)
    at_least(profile.ingest_tables.max_nesting, 1, "ingest_tables.max_nesting", "1000")
    join = profile.features.join_table
    if join is not None and table_ref(join) is None:
        require_uri(join, "features.join_table (a lake table such as bronze.digits_meta, or a URI)")
    check_features(profile.features)
    check_train(profile.train)
    pre, shift = profile.features.preprocess, profile.train.augmentation.shift
    if profile.train.augment and shift >= min(pre.height, pre.width):
        raise ConfigError(f"train.augmentation.shift = {shift} moves an image by as much as its size "
                          f"({pre.height}x{pre.width}, features.preprocess); use less than {min(pre.height, pre.width)}, "
                          f"e.g. 2")
    if profile.features.table_inputs is not None:
        check_table_inputs(profile.features)
    if profile.features.table is not None:
        check_table_features(profile.features.table)
    check_image_target(profile.features, profile.train.task)
    check_score(profile.score)
    _check_faults(profile)
    check_schedule(profile.schedule)
    check_evaluate(profile.evaluate)
    check_promote(profile.promote)
    check_maintain(profile.maintain)
    check_quality(profile.quality)
    check_observe(profile.observe)


def _check_faults(profile: Profile) -> None:
    fault = profile.faults.fail_task
    if fault is None:
        return
    if not profile.name.endswith("test"):
        raise ConfigError(f"faults.fail_task makes a Spark task fail on purpose, for the reliability tests: it is "
                          f"refused in profile {profile.name!r}; set it only in a test profile (conf/test.yaml or one "
                          f"named *-test)")
    at_least(fault.partition, 0, "faults.fail_task.partition", "0")
    at_least(fault.attempt, 0, "faults.fail_task.attempt", "0")

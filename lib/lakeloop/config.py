"""Typed, frozen configuration: profile file -> command-line overrides -> config object.

A profile is a YAML file in ``conf/`` (``conf/local.yaml`` ...). It may start with
``extends: <other profile>``; its mappings are merged over the other's, key by key.
Command-line overrides are ``--set dotted.key=value`` (the value is parsed as YAML)
and ``--conf spark.key=value`` (a Spark setting). The merged mapping is then turned
into :class:`Profile`, rejecting unknown keys and wrong types with the key's full name.

These placeholders are expanded in string values, and nothing else is read from the
environment: ``{repo}``, the checkout the profile belongs to (:func:`repo_for`: the folder
above its ``conf/`` folder when it lives in one, else the checkout the command runs from;
``./spark-submit.sh`` tells the job which it used, so both expand it alike); ``{python}``
(the Python running the driver, for local masters whose workers share its interpreter) and
``{site_packages}`` (the folder pyspark lies in, with its jars: :func:`lakeloop.stacks.packages_folder`); ``{delta}``,
``{kafka}`` and ``{hadoop_aws}``, the JVM coordinates of the installed pyspark's stack
(:mod:`lakeloop.stacks`). Without a supported pyspark those three stay as written, so the
profile still loads; :mod:`lakeloop.runtime.jars` says why when the jars are needed. ``~``
at the start of a local cache path is the user's home.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from lakeloop.errors import ConfigError, LakeloopError
from lakeloop.layout import (LAKE_SCHEMES, LATEST, check_alias, check_model_name, factory_reference, parse_model_ref,
                             safe_uri, table_ref)
from lakeloop.stacks import Stack, installed_stack, packages_folder

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONF_DIR = REPO_ROOT / "conf"

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def require_uri(value: str, setting: str) -> str:
    """Return ``value`` if it carries a URI scheme lakeloop reaches (:data:`LAKE_SCHEMES`), else raise a
    ConfigError saying what to write."""
    if not isinstance(value, str) or not _SCHEME.match(value) or re.match(r"^[a-zA-Z]:[\\/]", value):
        raise ConfigError(
            f"{setting} = {value!r} has no URI scheme. Write 'file:/absolute/path' for a local "
            f"folder, 'hdfs://namenode:8020/path' for HDFS or 's3a://bucket/path' for S3."
        )
    scheme = value.partition(":")[0].lower()
    if scheme not in LAKE_SCHEMES:
        # Spark might list such a folder, but the training ranks, scoring workers and the registry
        # reach storage without Spark (lakeloop.io.lakefs): the run would fail halfway.
        hint = (f" For S3 write {'s3a' + safe_uri(value)[len(scheme):]!r}: lakeloop reaches S3 through Hadoop's s3a "
                f"connector." if scheme in ("s3", "s3n") else "")
        raise ConfigError(
            f"{setting} = {safe_uri(value)!r}: lakeloop cannot reach scheme '{scheme}:'; the schemes it "
            f"supports are {', '.join(s + ':' for s in LAKE_SCHEMES)}.{hint or ' Copy the data to one of them.'}"
        )
    return value.rstrip("/") if value not in ("file:/",) else value


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SparkSettings:
    """How to reach Spark: the master URL and Spark/Hadoop settings (``spark.*`` keys)."""

    master: str | None = "local[*]"
    app_name: str = "lakeloop"
    # A null value removes a setting inherited from the profile this one extends.
    conf: dict[str, str | None] = field(default_factory=dict)
    log_level: str = "WARN"


@dataclass(frozen=True)
class JvmSettings:
    """Maven coordinates Spark needs beyond its own jars, and where they are cached.

    ``packages`` are resolved by ``python -m lakeloop.jars resolve`` (run by the setup)
    into ``cache_dir`` and handed to Spark as ``spark.jars``; nothing is fetched when a
    job runs. Leave ``packages`` empty where the platform provides them (Databricks).
    """

    packages: tuple[str, ...] = ()
    cache_dir: str = "~/.cache/lakeloop/jars"
    # A local driver JVM maps the classes a job loads from an archive written once by the setup
    # (python -m lakeloop.runtime.class_archive) instead of reading them from the jars: about 4 s
    # less a job. No archive yet, or one the JVM refuses (another Java): it starts as before.
    class_archive: bool = False


@dataclass(frozen=True)
class IngestStreamConfig:
    """``ingest_images --stream``: new files of the source folder as a Structured Streaming query."""

    trigger: str = "available_now"  # or an interval such as "1 minute"
    max_files_per_trigger: int = 1000  # files per micro-batch
    # Spark's file source ignores a new file whose modification time is this much older than the
    # newest file it has seen (a copy that kept an old time): large, so that none is passed over.
    max_file_age: str = "3650d"
    checkpoint: str | None = None  # default <lake>/_streams/ingest_images/<source hash>


@dataclass(frozen=True)
class ImageIngestConfig:
    """Settings of ``jobs/ingest_images.py``; see README "ingest_images"."""

    source: str | None = None
    extensions: tuple[str, ...] = ("png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp")
    max_pixels: int = 25_000_000
    label_from: Literal["parent_folder", "labels_table", "none"] = "parent_folder"
    labels_table: str | None = None
    labels_path_column: str = "path"
    labels_label_column: str = "label"
    quarantine_content_max_bytes: int = 1_048_576
    # Larger files are ingested by reference: bronze keeps their path, size, time, sha256 and
    # header facts but not their bytes, and later steps read them from the source (sha256 checked).
    content_max_bytes: int = 16 * 1024 * 1024
    # Larger files are quarantined unread: Spark reads at most 2 GiB (2**31 - 1 bytes) a file.
    max_file_bytes: int = 2_000_000_000
    # Files under a name starting with "." (".thumb.jpg", ".cache/x.png"): "skip" lists them in the
    # ledger as skipped, unread; "ingest" takes them like any other. Names starting with "_" are
    # always taken.
    hidden_files: Literal["skip", "ingest"] = "skip"
    # Bytes of file content a Python worker is handed at a time to check (besides the record cap
    # spark.sql.execution.arrow.maxRecordsPerBatch): a batch of camera photos stays this size.
    max_batch_bytes: int = 32 * 1024 * 1024
    stream: IngestStreamConfig = field(default_factory=IngestStreamConfig)


@dataclass(frozen=True)
class TableSource:
    """One table of ``jobs/ingest_tables.py``: where it is, its schema and its key."""

    source: str
    format: Literal["csv", "json", "parquet"]
    keys: tuple[str, ...]
    schema: str | None = None
    infer_schema: bool = False
    options: dict[str, str] = field(default_factory=dict)
    evolve_schema: bool = False
    on_type_error: Literal["quarantine", "fail"] = "quarantine"
    raw_max_chars: int = 10_000
    # JSON lines only: every line must be standard JSON holding one object (checked with Python's
    # json module); false takes Spark's lenient reader (single quotes, trailing junk ...) instead.
    strict_json: bool = True


@dataclass(frozen=True)
class TableIngestConfig:
    """Settings of ``jobs/ingest_tables.py``: the tables it knows, by name."""

    tables: dict[str, TableSource] = field(default_factory=dict)
    # A table whose source files, settings, bronze and quarantine tables are all as its last
    # successful run left them is not read again (that run's counts are carried over); false: read it.
    skip_unchanged: bool = True
    # JSON lines nested more deeply than this ([[[...]]] or {"a": {"a": ...}}) are quarantined
    # before any parser sees them: Python's json module (and the Jackson parser Spark uses) give up
    # near 1,000 levels, and a record of 100,000 would otherwise fail the task on every run.
    max_nesting: int = 1000


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


@dataclass(frozen=True)
class TableFeaturesConfig:
    """A table as training data (``features.table``): which bronze table, its key, the columns a
    model reads and the one it predicts; see README "Tables as training data"."""

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
    """Settings of ``jobs/build_features.py``; see README "build_features"."""

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


@dataclass(frozen=True)
class AugmentConfig:
    """``train.augmentation``: what training does to each image before the model sees it (with
    ``train.augment: true``); never applied at scoring. See README "Augmentation" and
    :mod:`lakeloop.training.augment`."""

    shift: int = 2  # move each image by up to this many pixels, black filled (0: off)
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random resized crop, area fraction range; (1, 1): off
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)  # the crop box's aspect ratio range
    flip: bool = False  # mirror half the images left to right
    colour_jitter: float = 0.0  # brightness, contrast, saturation factors in [1 - x, 1 + x] (0: off)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``jobs/train.py``; see README "train"."""

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


@dataclass(frozen=True)
class ScoreStreamConfig:
    """``score --stream``: Structured Streaming over ``score.input``; see README "Streaming scoring"."""

    # "available_now": score what is new, then stop (scheduled runs); an interval such as
    # "30 seconds": keep going, one micro-batch per interval, until the job is stopped.
    trigger: str = "available_now"
    max_files_per_trigger: int = 100  # the Delta source's maxFilesPerTrigger: input files per micro-batch
    # false: a commit that rewrites input rows (a full features rebuild, an UPDATE) stops the stream with
    # Delta's error. true: such commits are skipped whole, rows they add too (run the batch score after).
    skip_change_commits: bool = False
    checkpoint: str | None = None  # default <lake>/_streams/score/<input>/<model>/v<version>


@dataclass(frozen=True)
class ScoreKafkaConfig:
    """``score.input: kafka``: frames on a Kafka topic, scored by ``score --stream``; see README "Scoring from Kafka".

    A message is one frame: its key the frame's id (``image_id`` in gold.predictions), its value the
    encoded image (PNG, JPEG ...), an optional header holding the true label.
    """

    bootstrap_servers: str | None = None  # host:port[,host:port ...]
    topic: str | None = None  # one topic, or several separated by commas
    starting_offsets: str = "earliest"  # where a new checkpoint (a new model version) starts: earliest or latest
    max_offsets_per_trigger: int = 10000  # messages per micro-batch, over all partitions
    max_message_bytes: int = 16 * 1024 * 1024  # a larger value is quarantined without being decoded
    label_header: str | None = "label"  # the header whose UTF-8 value is the frame's true label, if sent
    # true: offsets the broker deleted before they were scored (retention) stop the stream with Spark's error.
    fail_on_data_loss: bool = True
    # More settings of Spark's Kafka source, e.g. kafka.security.protocol, kafka.sasl.jaas.config.
    # Their values are never written to reports or logs.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of ``jobs/score.py``; see :mod:`lakeloop.scoring`."""

    model: str = "digits_lenet"
    input: str = "features"
    input_column: str | None = None
    batch_size: int = 512
    max_batch_bytes: int = 64 * 1024 * 1024
    torch_threads_per_task: int = 1
    max_rows_per_run: int | None = None  # a bounded backfill: score at most this many rows, the rest next run
    commit_every_rows: int | None = None  # MERGE every so many rows, so a killed run keeps what it scored
    stream: ScoreStreamConfig = field(default_factory=ScoreStreamConfig)
    kafka: ScoreKafkaConfig = field(default_factory=ScoreKafkaConfig)


@dataclass(frozen=True)
class ScheduleConfig:
    """Scheduled scoring: when the score job runs (Databricks bundle, Airflow DAG), who hears of a failure.

    See README "Scheduled scoring". Unset ``cron`` and ``file_arrival_url``: no schedule is generated.
    """

    cron: str | None = None  # five fields, minute hour day month weekday, e.g. "*/15 * * * *"
    timezone: str = "UTC"  # a Java / IANA time zone id, e.g. Europe/Berlin
    file_arrival_url: str | None = None  # Databricks only: run score when new files arrive here (instead of cron)
    stream: bool = True  # the scheduled run is score --stream: only the input files it has not seen yet
    paused: bool = False  # generate the schedule paused (deploy first, unpause when ready)
    on_failure_emails: tuple[str, ...] = ()
    on_failure_webhook_ids: tuple[str, ...] = ()  # Databricks notification destination ids (webhook, Slack ...)


@dataclass(frozen=True)
class MaintainConfig:
    """Lake housekeeping (``lakeloop maintain``, jobs/maintain.py); see README "maintain"."""

    optimize: bool = True
    vacuum_retention_hours: float = 168.0  # Delta's own default and safety limit: 7 days
    allow_short_retention: bool = False  # a retention under 168 hours needs this
    keep_training_sets: int = 2  # per recipe (preprocessing or table settings, file count): the newest by features version
    # A training set a training run wrote or took up within this many hours is never deleted: the run may
    # still read it. Longer than the longest training run.
    training_set_lease_hours: float = 24.0
    checkpoint_max_age_hours: float = 168.0  # a killed run's checkpoints, not resumed since


@dataclass(frozen=True)
class PromoteConfig:
    """The promotion gate of ``lakeloop registry promote``: which test-split metric decides, by how much."""

    alias: str = "production"
    metric: str = "accuracy"  # a key of the version's test metrics: accuracy, macro_f1, loss, or a batch_metrics name
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


# --------------------------------------------------------------------------- loading


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def find_profile(name_or_path: str, conf_dir: Path = DEFAULT_CONF_DIR) -> Path:
    """Locate a profile by name (``local`` -> ``conf/local.yaml``) or by file path."""
    candidates = [Path(name_or_path)]
    if not name_or_path.endswith((".yaml", ".yml")):
        candidates.append(conf_dir / f"{name_or_path}.yaml")
    else:
        # On a cluster, spark-submit --files puts the profile in the working directory.
        candidates.append(Path(Path(name_or_path).name))
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in conf_dir.glob("*.yaml")) if conf_dir.is_dir() else []
    raise ConfigError(
        f"profile {name_or_path!r} not found (looked for {', '.join(str(c) for c in candidates)}). "
        f"Known profiles: {', '.join(known) or 'none'}; pass --profile NAME or a path to a YAML file."
    )


def _read_profile_mapping(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        raise ConfigError(f"profile {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a mapping of settings, found {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent:
        base = _read_profile_mapping(find_profile(str(parent), path.parent), seen + (path.resolve(),))
        data = _deep_merge(base, data)
    return data


def parse_override(text: str, flag: str = "--set") -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is parsed as YAML (``3`` -> 3, ``[a, b]`` -> list)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} ingest_images.max_pixels=1000000")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


# Settings that are mappings whose keys hold dots themselves (Kafka and Spark option names):
# ``--set score.kafka.options.kafka.sasl.mechanism=PLAIN`` sets the key ``kafka.sasl.mechanism``.
_DOTTED_KEY_MAPPINGS = ("score.kafka.options", "spark.conf")
# Settings whose values may be credentials: errors name them but never show their values.
_SECRET_SETTINGS = ("score.kafka.options",)
# Spark, Hadoop and Kafka setting names that hold a credential (S3 keys, session tokens, passwords,
# JAAS configs): their values never go into a file lakeloop writes for people to copy (train --plan-only).
_SECRET_NAME = re.compile(r"secret|passw|token|credential|access[._-]?key|account\.key|jaas|private[._-]?key|"
                          r"api[._-]?key", re.IGNORECASE)
# ... except the names of settings that say how to get one (fs.s3a.aws.credentials.provider, a class).
_SECRET_NAME_EXCEPTIONS = (".provider", ".enabled", ".class", ".type")


def is_secret_setting(name: str) -> bool:
    """Whether the Spark, Hadoop or Kafka setting ``name`` (``fs.s3a.secret.key``,
    ``spark.hadoop.fs.s3a.session.token`` ...) holds a credential."""
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(_SECRET_NAME_EXCEPTIONS)


def _shown(key: str, value: Any) -> str:
    """``value`` for an error message, unless ``key`` may hold a credential."""
    if any(key == s or key.startswith(s + ".") for s in _SECRET_SETTINGS):
        return "a value not shown here (it may be a credential)"
    return repr(value)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    mapping = next((m for m in _DOTTED_KEY_MAPPINGS if dotted.startswith(m + ".")), None)
    parts = [*mapping.split("."), dotted[len(mapping) + 1:]] if mapping else dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


# The placeholders of lakeloop.stacks.Stack.placeholders: JVM coordinates of the installed pyspark's stack.
JAR_PLACEHOLDERS = ("delta", "kafka", "hadoop_aws")


def placeholder_values(repo: Path, stack: Stack | None = None) -> dict[str, str]:
    """Placeholder name (without braces) -> what it stands for in a profile.

    ``stack`` gives ``{delta}``, ``{kafka}`` and ``{hadoop_aws}``; default the installed
    pyspark's (:func:`lakeloop.stacks.installed_stack`). Without a supported pyspark they are
    left out, so they stay in the profile as written.
    """
    values = {"repo": str(repo), "python": sys.executable, "site_packages": packages_folder()}
    if stack is None:
        try:
            stack = installed_stack()
        except LakeloopError:
            return values  # lakeloop.runtime.jars.cache_dir_for says why, if the jars are ever needed
    return {**values, **stack.placeholders()}


def _expand(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        # One pass: a value that contains braces ({{secrets/...}}, a path) is never expanded twice.
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _expand(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, values) for v in value]
    return value


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} = {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_settings(tp, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, found {_shown(key, value)}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, found {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be a whole number, found {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, found {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, bool):  # Spark settings written as YAML true/false
            return "true" if value else "false"
        raise ConfigError(f"{key} must be text, found {_shown(key, value)}")
    return value


# Settings that moved: a profile that still uses the old name is told the new one.
RENAMED_SETTINGS = {"train.architecture": "train.model",
                    "train.pretrained_weights": "train.init_from (a weights file URI, or NAME:VERSION / NAME@alias)",
                    # The feed no longer runs Petastorm's pools: the order is the plan's whatever the reader.
                    "train.reader_pool": "train.reader (arrow, or petastorm on the spark40 stack); delete it",
                    "train.reader_workers": "train.prefetch (row groups decoded ahead by one thread); delete it"}


def build_settings(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'profile'} must be a mapping of settings, found {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        renamed = RENAMED_SETTINGS.get(f"{where}{unknown[0]}")
        if renamed:
            raise ConfigError(f"setting {where}{unknown[0]} is now {renamed}; rename it in the profile or --set")
        raise ConfigError(
            f"unknown setting {where}{unknown[0]}; the settings of {prefix or 'a profile'} are: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, fld in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(f"setting {key} is required but missing")
    return cls(**kwargs)


def repo_for(profile_path: Path, checkout: Path = REPO_ROOT) -> Path:
    """What ``{repo}`` stands for in the profile at ``profile_path``: the folder above its ``conf/``
    folder when it lives in one (``<checkout>/conf/local.yaml``), else ``checkout``."""
    folder = profile_path.resolve().parent
    return folder.parent if folder.name == "conf" else checkout


def load_profile(
    name_or_path: str = "local",
    overrides: typing.Iterable[str | tuple[str, Any]] = (),
    spark_conf: typing.Iterable[str] = (),
    conf_dir: Path = DEFAULT_CONF_DIR,
    repo_root: Path | None = None,
    stack: Stack | None = None,
) -> Profile:
    """Load a profile, apply ``--set`` overrides and ``--conf`` Spark settings, validate it.

    Parameters
    ----------
    name_or_path : profile name in ``conf_dir`` or a path to a YAML file.
    overrides : ``dotted.key=value`` strings (value parsed as YAML) or ``(key, value)``
        pairs (value taken as is), applied in order.
    spark_conf : ``spark.key=value`` strings, added to ``spark.conf``.
    repo_root : what ``{repo}`` stands for; default :func:`repo_for` the profile's path.
    stack : whose JVM coordinates ``{delta}``, ``{kafka}``, ``{hadoop_aws}`` stand for; default
        the installed pyspark's (:func:`placeholder_values`).

    Raises
    ------
    ConfigError
        unknown profile, unknown key, wrong type, or a location without a URI scheme.
    """
    path = find_profile(name_or_path, conf_dir)
    data = _read_profile_mapping(path)
    for item in overrides:
        # A (key, value) pair is taken as it is; a "key=value" string has its value parsed as YAML.
        key, value = item if isinstance(item, tuple) else parse_override(item)
        _set_dotted(data, key, value)
    for item in spark_conf:
        key, value = parse_override(item, "--conf")
        data.setdefault("spark", {}).setdefault("conf", {})[key] = "" if value is None else value
    data.setdefault("name", path.stem)
    data = _expand(data, placeholder_values(repo_root or repo_for(path), stack))
    profile: Profile = build_settings(Profile, data, "")
    check_profile(profile)
    return dataclasses.replace(profile, lake_root=require_uri(profile.lake_root, "lake_root"))


# --------------------------------------------------------------------------- validation
# Everything a job would otherwise find out halfway: checked when the profile loads, each
# error naming the setting.


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
    _check_image_ingest(profile.ingest_images)
    for name, table in profile.ingest_tables.tables.items():
        check_table_source(name, table)
    _at_least(profile.ingest_tables.max_nesting, 1, "ingest_tables.max_nesting", "1000")
    join = profile.features.join_table
    if join is not None and table_ref(join) is None:
        require_uri(join, "features.join_table (a lake table such as bronze.digits_meta, or a URI)")
    _check_features(profile.features)
    _check_train(profile.train)
    pre, shift = profile.features.preprocess, profile.train.augmentation.shift
    if profile.train.augment and shift >= min(pre.height, pre.width):
        raise ConfigError(f"train.augmentation.shift = {shift} moves an image by as much as its size "
                          f"({pre.height}x{pre.width}, features.preprocess); use less than {min(pre.height, pre.width)}, "
                          f"e.g. 2")
    if profile.features.table_inputs is not None:
        _check_table_inputs(profile.features)
    if profile.features.table is not None:
        _check_table_features(profile.features.table)
    _check_image_target(profile.features, profile.train.task)
    _check_score(profile.score)
    _check_faults(profile)
    _check_schedule(profile.schedule)
    _check_observe(profile)


def _at_least(value: int, minimum: int, setting: str, example: str) -> None:
    if value < minimum:
        raise ConfigError(f"{setting} = {value!r} must be at least {minimum}, e.g. {example}")


def _check_batch_bytes(value: int, setting: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 << 20 <= value < (1 << 31) - 1:
        raise ConfigError(f"{setting} = {value!r} must be between 1 MiB (1048576) and 2 GiB - 2 (2147483646, Spark's "
                          f"Arrow limit), e.g. {example}")


def _check_image_ingest(cfg: ImageIngestConfig) -> None:
    _check_batch_bytes(cfg.max_batch_bytes, "ingest_images.max_batch_bytes", "33554432")
    if not cfg.extensions:
        raise ConfigError("ingest_images.extensions is empty; list the file endings to ingest, e.g. [png, jpg]")
    for ext in cfg.extensions:
        if not re.fullmatch(r"\.?[A-Za-z0-9]+", ext):
            raise ConfigError(f"ingest_images.extensions entry {ext!r} must be letters and digits only, e.g. png")
    _at_least(cfg.max_pixels, 1, "ingest_images.max_pixels", "25000000")
    _at_least(cfg.quarantine_content_max_bytes, 0, "ingest_images.quarantine_content_max_bytes", "1048576")
    _at_least(cfg.content_max_bytes, 0, "ingest_images.content_max_bytes", "16777216")
    if not 1 <= cfg.max_file_bytes <= 2**31 - 1:
        raise ConfigError(
            f"ingest_images.max_file_bytes = {cfg.max_file_bytes} must be between 1 and 2147483647 (2 GiB - 1: "
            f"the most Spark reads of one file), e.g. 2000000000"
        )
    if cfg.label_from == "labels_table" and not cfg.labels_table:
        raise ConfigError(
            "ingest_images.label_from = labels_table but ingest_images.labels_table is not set; name the Delta "
            "table of labels (a URI), or set ingest_images.label_from to parent_folder or none"
        )
    _check_trigger(cfg.stream.trigger, "ingest_images.stream.trigger")
    _at_least(cfg.stream.max_files_per_trigger, 1, "ingest_images.stream.max_files_per_trigger", "1000")
    if not re.fullmatch(r"[1-9][0-9]*(s|m|min|h|d)", cfg.stream.max_file_age):
        raise ConfigError(f"ingest_images.stream.max_file_age = {cfg.stream.max_file_age!r} must be a count and a "
                          f"unit (s, m, h, d), e.g. 3650d")
    if cfg.stream.checkpoint is not None:
        require_uri(cfg.stream.checkpoint, "ingest_images.stream.checkpoint")


# Reader options lakeloop sets itself: a user value would hide malformed records
# (mode=DROPMALFORMED), crash on them (FAILFAST) or bypass the declared schema.
RESERVED_READER_OPTIONS = {
    "mode": "lakeloop reads in PERMISSIVE mode so that malformed records reach quarantine",
    "columnnameofcorruptrecord": "lakeloop names the corrupt-record column itself",
    "enforceschema": "lakeloop checks CSV headers against the schema itself",
    "inferschema": "use ingest_tables.tables.<name>.infer_schema instead",
}


def check_table_source(name: str, table: TableSource) -> None:
    """Check one table of ingest_tables.tables (also called by the reader, for a TableSource built by hand)."""
    prefix = f"ingest_tables.tables.{name}"
    require_uri(table.source, f"{prefix}.source")
    if not table.keys:
        raise ConfigError(f"{prefix}.keys is empty; name the column(s) that identify a row")
    if table.schema is None and not table.infer_schema:
        raise ConfigError(
            f"{prefix} has no schema; declare one as DDL (schema: \"id INT, name STRING\") or set infer_schema: true"
        )
    for key in table.options:
        reason = RESERVED_READER_OPTIONS.get(key.lower())
        if reason:
            raise ConfigError(f"{prefix}.options.{key} cannot be set: {reason}; remove it")
    _at_least(table.raw_max_chars, 1, f"{prefix}.raw_max_chars", "10000")


def _check_features(cfg: FeaturesConfig) -> None:
    _check_batch_bytes(cfg.max_batch_bytes, "features.max_batch_bytes", "33554432")
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
    _at_least(cfg.training_set_files, 1, "features.training_set_files", "16")


def _check_table_features(cfg: TableFeaturesConfig) -> None:
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
    _at_least(cfg.max_categories, 1, "features.table.max_categories", "50")
    if not cfg.label_delimiter:
        raise ConfigError("features.table.label_delimiter is empty; use e.g. ','")


def _check_table_inputs(cfg: FeaturesConfig) -> None:
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
    _at_least(inputs.max_categories, 1, "features.table_inputs.max_categories", "50")


def _check_image_target(cfg: FeaturesConfig, task: str) -> None:
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


def _check_train(cfg: TrainConfig) -> None:
    check_model_name(cfg.model_name)
    for setting, value, example in (("num_processes", cfg.num_processes, "2"), ("epochs", cfg.epochs, "30"),
                                    ("batch_size", cfg.batch_size, "64"),
                                    ("torch_threads", cfg.torch_threads, "1")):
        _at_least(value, 1, f"train.{setting}", example)
    _at_least(cfg.prefetch, 0, "train.prefetch", "2")
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
        _at_least(cfg.early_stopping_patience, 1, "train.early_stopping_patience", "5 (epochs without improvement)")
    _check_augmentation(cfg.augmentation)
    if cfg.alias is not None:
        check_alias(cfg.alias)
        if cfg.alias == LATEST:
            raise ConfigError(f"train.alias = {LATEST!r}: publishing moves that alias itself; pick another name "
                              f"(e.g. production) or leave train.alias unset")


def _check_augmentation(cfg: AugmentConfig) -> None:
    _at_least(cfg.shift, 0, "train.augmentation.shift", "2")
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


SCORE_INPUT_FORMS = "features, images, kafka, a lake table such as silver.features, or a Delta table URI"


def _check_score(cfg: ScoreConfig) -> None:
    parse_model_ref(cfg.model)
    if cfg.input not in ("features", "images", "kafka") and table_ref(cfg.input) is None:
        require_uri(cfg.input, f"score.input ({SCORE_INPUT_FORMS})")
    _at_least(cfg.batch_size, 1, "score.batch_size", "512")
    _at_least(cfg.torch_threads_per_task, 1, "score.torch_threads_per_task",
              "1 (one thread per task when Spark runs one task per core)")
    for setting, value, example in (("max_rows_per_run", cfg.max_rows_per_run, "1000000"),
                                    ("commit_every_rows", cfg.commit_every_rows, "100000")):
        if value is not None:
            _at_least(value, 1, f"score.{setting}", example)
    _check_batch_bytes(cfg.max_batch_bytes, "score.max_batch_bytes", "67108864")
    _check_score_stream(cfg.stream)
    if cfg.input == "kafka":
        _check_score_kafka(cfg.kafka)


def _check_faults(profile: Profile) -> None:
    fault = profile.faults.fail_task
    if fault is None:
        return
    if not profile.name.endswith("test"):
        raise ConfigError(f"faults.fail_task makes a Spark task fail on purpose, for the reliability tests: it is "
                          f"refused in profile {profile.name!r}; set it only in a test profile (conf/test.yaml or one "
                          f"named *-test)")
    _at_least(fault.partition, 0, "faults.fail_task.partition", "0")
    _at_least(fault.attempt, 0, "faults.fail_task.attempt", "0")


# Spark's Kafka source options lakeloop sets from score.kafka.* (options may not set them again).
_KAFKA_OWN_OPTIONS = ("kafka.bootstrap.servers", "subscribe", "subscribepattern", "assign", "startingoffsets",
                      "maxoffsetspertrigger", "failondataloss", "includeheaders")


# Kafka consumer settings Spark's source manages itself and refuses, and what to do instead.
_KAFKA_REFUSED_OPTIONS = {
    "kafka.auto.offset.reset": "use score.kafka.starting_offsets",
    "kafka.enable.auto.commit": "the offsets live in the stream's checkpoint, not in Kafka",
    "kafka.key.deserializer": "keys arrive as bytes; lakeloop reads them as UTF-8",
    "kafka.value.deserializer": "values arrive as bytes: the encoded image",
    "kafka.interceptor.classes": "Spark's Kafka source does not take consumer interceptors",
}


def _check_score_kafka(cfg: ScoreKafkaConfig) -> None:
    for setting, value, example in (("bootstrap_servers", cfg.bootstrap_servers, "broker1:9092,broker2:9092"),
                                    ("topic", cfg.topic, "camera-frames")):
        if not value or not value.strip():
            raise ConfigError(f"score.input is kafka but score.kafka.{setting} is not set; set it, e.g. "
                              f"--set score.kafka.{setting}={example}")
    if any(not re.match(r"^[^\s,:]+:[0-9]+$", server) for server in cfg.bootstrap_servers.split(",")):
        raise ConfigError(f"score.kafka.bootstrap_servers = {cfg.bootstrap_servers!r} is not a comma-separated "
                          f"list of host:port, e.g. broker1:9092,broker2:9092")
    if any(not re.match(r"^[A-Za-z0-9._-]{1,249}$", topic) for topic in cfg.topic.split(",")):
        raise ConfigError(f"score.kafka.topic = {cfg.topic!r} is not a Kafka topic name (letters, digits, '.', '_', "
                          f"'-'), or several separated by commas")
    if cfg.starting_offsets not in ("earliest", "latest"):
        raise ConfigError(f"score.kafka.starting_offsets = {cfg.starting_offsets!r} must be earliest (score every "
                          f"message the topic still holds) or latest (only those that arrive from now on)")
    _at_least(cfg.max_offsets_per_trigger, 1, "score.kafka.max_offsets_per_trigger", "10000")
    _at_least(cfg.max_message_bytes, 1, "score.kafka.max_message_bytes", "16777216")
    for key in cfg.options:
        if key.lower() in _KAFKA_REFUSED_OPTIONS:
            raise ConfigError(f"score.kafka.options.{key} cannot be set: {_KAFKA_REFUSED_OPTIONS[key.lower()]}")
        if key.lower() in _KAFKA_OWN_OPTIONS:
            raise ConfigError(f"score.kafka.options.{key} is set by lakeloop from score.kafka.*; remove it and use "
                              f"the score.kafka setting instead")
        if not key.startswith("kafka."):
            raise ConfigError(f"score.kafka.options.{key}: only Kafka consumer settings (kafka.*, e.g. "
                              f"kafka.security.protocol) can be passed here")


# A processing-time trigger as Spark parses it: a count and a unit.
_TRIGGER_INTERVAL = re.compile(r"^[1-9][0-9]* (second|minute|hour|day)s?$")


def _check_trigger(trigger: str, setting: str) -> None:
    if trigger != "available_now" and not _TRIGGER_INTERVAL.match(trigger):
        raise ConfigError(
            f"{setting} = {trigger!r} is neither available_now (take what is new, then stop) nor "
            f"an interval such as '30 seconds', '5 minutes' or '1 hour' (a micro-batch every interval)"
        )


def _check_score_stream(cfg: ScoreStreamConfig) -> None:
    _check_trigger(cfg.trigger, "score.stream.trigger")
    _at_least(cfg.max_files_per_trigger, 1, "score.stream.max_files_per_trigger", "100")
    if cfg.checkpoint is not None:
        require_uri(cfg.checkpoint, "score.stream.checkpoint")


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_schedule(cfg: ScheduleConfig) -> None:
    if cfg.cron is not None:
        fields = cfg.cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ConfigError(
                f"schedule.cron = {cfg.cron!r} is not a five-field cron expression (minute hour day-of-month month "
                f"day-of-week), e.g. '*/15 * * * *' for every 15 minutes or '0 2 * * *' for 02:00 every day"
            )
        if fields[2] != "*" and fields[4] != "*":
            raise ConfigError(f"schedule.cron = {cfg.cron!r} sets both the day of the month and the day of the week, "
                              f"which Databricks' Quartz schedules cannot express; keep one of them '*'")
    if cfg.cron is not None and cfg.file_arrival_url is not None:
        raise ConfigError("schedule.cron and schedule.file_arrival_url are both set; a Databricks job has a schedule "
                          "or a file-arrival trigger, not both: keep one")
    if cfg.file_arrival_url is not None and not re.match(r"^(s3|s3a|abfss|gs)://|^/Volumes/", cfg.file_arrival_url):
        raise ConfigError(f"schedule.file_arrival_url = {cfg.file_arrival_url!r} is not a location Databricks can "
                          f"watch: use a cloud storage URL (s3://bucket/raw/, abfss://..., gs://...) or a "
                          f"/Volumes/... path")
    bad = [e for e in cfg.on_failure_emails if not _EMAIL.match(e)]
    if bad:
        raise ConfigError(f"schedule.on_failure_emails: {bad[0]!r} is not an e-mail address")


def _check_observe(profile: Profile) -> None:
    """evaluate.*, quality.* and observe.*: references parse, numbers are in range."""
    if profile.evaluate.model is not None:
        parse_model_ref(profile.evaluate.model)
    _at_least(profile.evaluate.top_k, 1, "evaluate.top_k", "3")
    check_alias(profile.promote.alias)
    if profile.promote.alias == LATEST:
        raise ConfigError(f"promote.alias = {LATEST!r}: publishing moves that alias; promote to another one, "
                          f"e.g. production")
    _check_maintain(profile.maintain)
    if profile.promote.margin < 0:
        raise ConfigError(f"promote.margin = {profile.promote.margin!r} must be 0 or more, e.g. 0.005")
    _at_least(profile.evaluate.calibration_bins, 2, "evaluate.calibration_bins", "10")
    quality = profile.quality
    for setting, value, low, high, example in (
        ("max_class_imbalance", quality.max_class_imbalance, 1.0, math.inf, "3.0 (the largest class at most 3x "
                                                                             "the smallest)"),
        ("min_label_coverage", quality.min_label_coverage, 0.0, 1.0, "0.95"),
        ("max_group_accuracy_gap", quality.max_group_accuracy_gap, 0.0, 1.0, "0.05"),
        ("max_input_psi", quality.max_input_psi, 0.0, math.inf, "0.25"),
    ):
        if value is not None and not low <= value <= high:
            raise ConfigError(f"quality.{setting} = {value!r} must be between {low} and {high}, e.g. {example}")
    if profile.observe.progress_interval_s < 0:
        raise ConfigError(f"observe.progress_interval_s = {profile.observe.progress_interval_s!r} must be 0 "
                          f"(no progress lines) or more, e.g. 10")
    if profile.observe.mlflow_tracking_uri is not None and not profile.observe.mlflow_tracking_uri.strip():
        raise ConfigError("observe.mlflow_tracking_uri is empty; name a tracking URI (e.g. "
                          "sqlite:///mlflow.db, file:/path/mlruns, http://host:5000, databricks) or leave it unset")


# Delta refuses a VACUUM retention under this unless its safety check is turned off.
DELTA_SAFE_RETENTION_HOURS = 168.0


def _check_maintain(cfg: MaintainConfig) -> None:
    if cfg.vacuum_retention_hours < 0 or cfg.checkpoint_max_age_hours < 0:
        raise ConfigError("maintain.vacuum_retention_hours and maintain.checkpoint_max_age_hours must be 0 or more, "
                          "e.g. 168")
    if cfg.training_set_lease_hours < 0:
        raise ConfigError(f"maintain.training_set_lease_hours = {cfg.training_set_lease_hours:g} must be 0 or more "
                          f"(longer than the longest training run), e.g. 24")
    if cfg.vacuum_retention_hours < DELTA_SAFE_RETENTION_HOURS and not cfg.allow_short_retention:
        raise ConfigError(
            f"maintain.vacuum_retention_hours = {cfg.vacuum_retention_hours:g} is under Delta's safety limit of "
            f"{DELTA_SAFE_RETENTION_HOURS:g} hours: a job still reading or writing an older table version could "
            f"lose its files. Keep 168 or more, or set maintain.allow_short_retention: true when no job runs "
            f"during maintenance"
        )
    _at_least(cfg.keep_training_sets, 1, "maintain.keep_training_sets", "2")

"""Features: bronze images (+ a joined table) -> Delta ``silver.features``.

``silver.features`` holds, per image: ``image_id``, ``label``, ``label_index``, ``split``
(train/validation/test, from a hash of ``image_id`` and ``features.split_seed``: the same
on every rerun), ``pixels`` (the preprocessed image as uint8 H x W x C bytes, see
:mod:`lakeloop.preprocess`), the joined table columns, the preprocessing spec's key and
the bronze Delta version it was built from. The spec itself and the class list are table
properties (``lakeloop.preprocess``, ``lakeloop.classes``).

The Parquet training set Petastorm reads is made from this table by the training step
(:mod:`lakeloop.training.dataset`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

import pandas as pd  # module level: pandas UDF type hints resolve in this module's globals

from lakeloop.config import FeaturesConfig, Profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.features.quality import check_features_quality, features_quality
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.preprocess import CLASSES_PROPERTY, IMAGE_TARGET_PROPERTY, SPEC_PROPERTY, PreprocessSpec
from lakeloop.report import RunReport
from lakeloop.tabular import TARGET_COLUMNS, task_target

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

PREPROCESS_SCHEMA = "pixels binary, error string"


def assign_split(image_id: "Column", seed: str, fractions: tuple[float, ...]) -> "Column":
    """train/validation/test from a hash of (seed, image_id): stable across reruns and machines."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.lit(seed), image_id), F.lit(1_000_000)) / F.lit(1_000_000.0)
    train, val = fractions[0], fractions[0] + fractions[1]
    return F.when(bucket < train, "train").when(bucket < val, "validation").otherwise("test")


def _preprocess_udf(spec_json: str):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(PREPROCESS_SCHEMA)
    def preprocess(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from lakeloop.preprocess import image_to_pixels

        spec = PreprocessSpec.from_json(spec_json)
        for contents in batches:
            pixels, errors = [], []
            for content in contents:
                try:
                    pixels.append(image_to_pixels(content, spec))
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - any decode failure is a quarantine reason
                    pixels.append(None)
                    errors.append(f"cannot preprocess image ({type(exc).__name__}: {exc})")
            yield pd.DataFrame({"pixels": pixels, "error": errors})

    return preprocess


def to_features(
    bronze: "DataFrame",
    spec: PreprocessSpec,
    classes: list[str],
    split_seed: str,
    split_fractions: tuple[float, ...],
    source_version: int,
    run_id: str,
) -> "DataFrame":
    """Bronze image rows -> feature rows (with ``error`` set where preprocessing failed)."""
    from pyspark.sql import functions as F

    class_index = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i))]) if classes else None
    processed = bronze.withColumn("_pre", _preprocess_udf(spec.to_json())(F.col("content")))
    return processed.select(
        "image_id",
        "path",
        "relative_path",
        "label",
        (class_index[F.col("label")] if class_index is not None else F.lit(None)).cast("int").alias("label_index"),
        assign_split(F.col("image_id"), split_seed, split_fractions).alias("split"),
        F.col("_pre.pixels").alias("pixels"),
        F.lit(spec.height).alias("height"),
        F.lit(spec.width).alias("width"),
        F.lit(spec.channels).alias("channels"),
        F.lit(spec.key).alias("spec_key"),
        F.lit(source_version).cast("long").alias("source_version"),
        F.current_timestamp().alias("built_at"),
        F.lit(run_id).alias("run_id"),
        F.col("_pre.error").alias("error"),
    )


def join_table_columns(features: "DataFrame", table: "DataFrame", key: str, columns: tuple[str, ...]) -> "DataFrame":
    """Left-join ``columns`` of a table whose ``key`` holds the image's path relative to the source."""
    from pyspark.sql import functions as F

    missing = [c for c in (key, *columns) if c not in table.columns]
    if missing:
        raise ConfigError(
            f"features.join_table has no column(s) {missing} (it has {', '.join(table.columns)}); "
            f"fix features.join_key / features.join_columns"
        )
    clash = [c for c in columns if c in features.columns]
    if clash:
        raise ConfigError(f"features.join_columns {clash} clash with feature columns; leave them out")
    right = table.select(F.col(key).cast("string").alias("_join_key"), *columns).dropDuplicates(["_join_key"])
    return features.join(right, features["relative_path"] == right["_join_key"], "left").drop("_join_key")


def natural_order(label: str) -> tuple:
    """Sort key of a class name: whole numbers by value ("2" before "10"), then text."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def stable_classes(previous: list[str], labels: set[str]) -> list[str]:
    """The class list: ``previous`` (the one silver.features was built with) kept as it is, new
    labels appended in :func:`natural_order`. A class index, once given, never changes."""
    return [*previous, *sorted(set(labels) - set(previous), key=natural_order)]


def _read_bronze(spark: "SparkSession", lake: LakeLayout) -> tuple["DataFrame", int, list[str]]:
    """bronze.images pinned to its current version, that version, and the class list (stable across runs)."""
    if not delta.is_delta_table(spark, lake.bronze_images):
        raise SourceError(f"{lake.bronze_images} is not a Delta table yet; run ingest_images first")
    version = delta.table_version(spark, lake.bronze_images)
    bronze = delta.read_table(spark, lake.bronze_images, version)
    labels = {r.label for r in bronze.where("label IS NOT NULL").select("label").distinct().collect()}
    previous: list[str] = []
    if delta.is_delta_table(spark, lake.features):
        stored = delta.table_properties(spark, lake.features).get(CLASSES_PROPERTY)
        previous = list(json.loads(stored)) if stored else []
    return bronze, version, stable_classes(previous, labels)


def _label_list(spark: "SparkSession", features: "DataFrame", lake: LakeLayout) -> list[str]:
    """A multilabel image model's labels: the ones silver.features lists already, new ones appended."""
    from pyspark.sql import functions as F

    names = {r["c"] for r in features.where("error IS NULL").select(F.explode("labels").alias("c")).distinct()
             .collect()}
    previous: list[str] = []
    if delta.is_delta_table(spark, lake.features):
        properties = delta.table_properties(spark, lake.features)
        built = json.loads(properties.get(IMAGE_TARGET_PROPERTY, "{}"))
        if built.get("task") == "multilabel":
            previous = list(built["labels"])
    return stable_classes(previous, names)


def _join_configured_table(spark: "SparkSession", features: "DataFrame", cfg: FeaturesConfig,
                           lake: LakeLayout) -> "DataFrame":
    """``features`` with ``features.join_columns`` of ``features.join_table`` (pinned to its current version)."""
    join_uri = lake.resolve_table(cfg.join_table)
    if not delta.is_delta_table(spark, join_uri):
        raise SourceError(f"features.join_table {join_uri} is not a Delta table; run ingest_tables first "
                          f"or unset features.join_table")
    table = delta.read_table(spark, join_uri, delta.table_version(spark, join_uri))
    return join_table_columns(features, table, cfg.join_key, cfg.join_columns)


def _write_features(spark: "SparkSession", features: "DataFrame", cfg: FeaturesConfig, spec: PreprocessSpec,
                    classes: list[str], task: str, lake: LakeLayout,
                    report: RunReport) -> tuple[dict[str, int], int]:
    """MERGE the good rows into silver, the failed ones into quarantine, set the table's properties;
    returns the MERGE metrics and the number quarantined."""
    from pyspark.sql import functions as F

    good = features.where("error IS NULL").drop("error")
    bad = features.where("error IS NOT NULL").select(
        "image_id", "path", "error", F.current_timestamp().alias("quarantined_at"),
        F.lit(report.run_id).alias("run_id"))
    target = [TARGET_COLUMNS[task]] if task != "classification" else []
    compare = ["label", "label_index", "split", "spec_key", *(cfg.join_columns if cfg.join_table else ()), *target]
    # add_columns: a features table built for one task gains the target column of another (and a
    # row rewritten for one task leaves another's target null).
    metrics = delta.merge_upsert(spark, good, lake.features, ["image_id"], compare, add_columns=True)
    bad_count = bad.count()
    if bad_count:
        delta.merge_insert_new(spark, bad, lake.quarantine_features, ["image_id"])
    # A classifier's class list is kept through a run for another task, so its indices never shift.
    properties = {SPEC_PROPERTY: spec.to_json(), IMAGE_TARGET_PROPERTY: json.dumps(
        {"task": task, "target": cfg.target if target else "label", "labels": classes if task == "multilabel" else []})}
    if task == "classification":
        properties[CLASSES_PROPERTY] = json.dumps(classes)
    delta.set_table_properties(spark, lake.features, properties)
    return metrics, bad_count


def _quality(spark: "SparkSession", profile: Profile, lake: LakeLayout, version: int,
             report: RunReport) -> dict:
    """The quality figures of silver.features at ``version``, kept in the report's details."""
    from pyspark.sql import functions as F

    table = delta.read_table(spark, lake.features, version)
    task = profile.train.task
    if task != "classification":
        # Class counts are a classifier's; another task's rows count as labelled when they have a target.
        table = table.withColumn("label", F.when(F.col(TARGET_COLUMNS[task]).isNotNull(), F.lit(task)))
    group_column = profile.quality.group_column
    if group_column is not None and group_column not in table.columns:
        report.warnings.append(f"quality.group_column {group_column!r} is not a column of {lake.features} (it has "
                               f"{', '.join(table.columns)}): no per-group figures; add it to features.join_columns")
        group_column = None
    quality = report.details["quality"] = features_quality(table, group_column)
    return quality


def build_features(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Build or update ``silver.features`` from the current ``bronze.images``.

    Rows whose image, label index, spec or joined columns are unchanged are not rewritten;
    a rerun on unchanged input commits nothing. Images that fail preprocessing go to
    ``quarantine.features``. Reads ``features.*``.

    Raises
    ------
    SourceError
        bronze.images does not exist yet (run ingest_images first).
    ConfigError
        a join table without the configured columns.
    """
    from pyspark import StorageLevel

    cfg = profile.features
    report = report or RunReport.start("build_features")
    lake = LakeLayout(profile.lake_root)
    spec = PreprocessSpec.from_config(cfg.preprocess)
    task = profile.train.task
    with report.timed("read"):
        bronze, source_version, classes = _read_bronze(spark, lake)
    if task != "classification":
        classes = []  # a class index is a classifier's; multilabel's label list comes from the targets below
    features = to_features(bronze, spec, classes, cfg.split_seed, cfg.split_fractions, source_version, report.run_id)
    if cfg.join_table:
        features = _join_configured_table(spark, features, cfg, lake)
    if task != "classification":
        features = features.withColumn(TARGET_COLUMNS[task], task_target(
            features, cfg.target, task, cfg.label_delimiter, "features.target",
            text_numbers=cfg.target == "label"))  # an image label is text: "3.25"
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with report.timed("preprocess"):
            n_images = features.count()
        if task == "multilabel":
            classes = _label_list(spark, features, lake)
        report.details.update(bronze_version=source_version, classes=classes, task=task,
                              preprocess=json.loads(spec.to_json()))
        with report.timed("write"):
            metrics, bad_count = _write_features(spark, features, cfg, spec, classes, task, lake, report)
    finally:
        features.unpersist()
    version = delta.table_version(spark, lake.features)
    with report.timed("quality"):
        quality = _quality(spark, profile, lake, version, report)
    split_counts = quality["rows_per_split"]
    unlabelled = quality["rows"] - quality["labelled"]
    inserted, updated = metrics.get("num_inserted_rows", 0), metrics.get("num_updated_rows", 0)
    report.counts.update(
        images=n_images,
        inserted=inserted,
        updated=updated,
        unchanged=n_images - bad_count - inserted - updated,
        quarantined=bad_count,
        **{f"split_{k}": v for k, v in sorted(split_counts.items())},
    )
    if unlabelled:
        report.counts["unlabelled"] = unlabelled
    check_features_quality(report, quality, profile.quality)
    report.details["features_version"] = version
    report.outputs.update(features=lake.features, quarantine=lake.quarantine_features)
    return report

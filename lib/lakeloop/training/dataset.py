"""The training set: ``silver.features`` at one Delta version, as plain Parquet that Petastorm reads.

It is written by Spark and read with Petastorm's ``make_batch_reader``, not
``materialize_dataset`` with a Unischema and image codecs: the pixels are already decoded,
fixed-size uint8, so a codec would only add a PNG decode per row, and ``make_batch_reader``
is the fast path (docs/architecture.md, "Performance": 1.2x bare pyarrow vs 0.62x for the converter). It lives at
:meth:`lakeloop.layout.LakeLayout.training_set` (``_training_sets/v<features version>-<spec
key>-<files>/``) and is reused while all three match (uber/petastorm#735).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile
from lakeloop.errors import SourceError
from lakeloop.io import delta, hadoop
from lakeloop.layout import LakeLayout
from lakeloop.metrics import INTENSITY_BINS, histogram_fractions
from lakeloop.preprocess import (CLASSES_PROPERTY, IMAGE_TARGET_PROPERTY, SPEC_PROPERTY, SPLITS, PreprocessSpec,
                                 intensity_bin, mean_intensity)
from lakeloop.tabular import (TABLE_PROPERTY, TARGET_COLUMNS, encode_targets, encode_training_rows, encoded_columns,
                              fit_encoding, input_layout, input_width, table_features_uri, target_stats,
                              with_encoded_inputs)
from lakeloop.training.loader import Feed

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A training set with table columns keeps the encoding fitted for it beside its splits.
FITTED_FILE = "encoding.json"

@dataclass(frozen=True)
class TrainingSet:
    """A materialized training set: one Parquet folder per split, keyed by what it came from."""

    root: str
    features_version: int
    spec: PreprocessSpec | None  # images; None for a table
    classes: tuple[str, ...]
    rows: dict[str, int]
    reused: bool
    task: str = "classification"
    features_uri: str = ""
    encoding: dict[str, Any] | None = None  # table columns: how they became inputs (lakeloop.tabular)
    target: dict[str, float] | None = None  # regression: the train split's target mean and std
    feed: Feed | None = field(default=None)
    recipe_key: str = ""  # a table: a hash of features.table, the task and the classes; images: see key

    def __post_init__(self):
        if self.feed is None and self.spec is not None:
            object.__setattr__(self, "feed", Feed.for_images(self.spec))

    def split_uri(self, split: str) -> str:
        return f"{self.root}/{split}"

    @property
    def key(self) -> str:
        """What names the set's content besides the features version: the spec's key (with a hash of
        ``features.table_inputs`` when the images come with table columns), or a table's recipe key
        (at one Delta version the recipe fixes the fitted encoding)."""
        return self.recipe_key or self.spec.key

    @property
    def input_kind(self) -> str:
        """``image``, ``table``, or ``image_table`` (images with encoded table columns)."""
        if self.spec is None:
            return "table"
        return "image_table" if self.encoding is not None else "image"

    @property
    def num_outputs(self) -> int:
        return 1 if self.task == "regression" else len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.feed.input_shape


def materialize_training_set(spark: "SparkSession", profile: Profile, features_version: int | None = None) -> TrainingSet:
    """Write (or reuse) the Parquet splits of ``silver.features`` at a Delta version.

    The folder name holds the features version, the spec key and the file count, so an
    unchanged features table reuses the set written before. Only labelled rows go in.

    Raises
    ------
    SourceError
        silver.features does not exist or has no labelled training rows.
    """
    from pyspark.sql import functions as F

    lake = LakeLayout(profile.lake_root)
    uri = lake.features
    if not delta.is_delta_table(spark, uri):
        raise SourceError(f"{uri} is not a Delta table yet; run build_features first")
    version = features_version if features_version is not None else delta.table_version(spark, uri)
    properties = delta.table_properties(spark, uri)
    spec = PreprocessSpec.from_json(properties[SPEC_PROPERTY])
    task, classes = _image_task(profile, properties, uri)
    inputs_cfg = profile.features.table_inputs
    if task == "classification":
        # Keyed as before images had other tasks, so the sets written then are reused.
        key = spec.key if inputs_cfg is None else f"{spec.key}-{_recipe_key(dataclasses.asdict(inputs_cfg))}"
    else:
        key = f"{spec.key}-" + _recipe_key({"table_inputs": dataclasses.asdict(inputs_cfg) if inputs_cfg else None,
                                            "task": task, "target": profile.features.target, "classes": classes})
    files = profile.features.training_set_files
    root = lake.training_set(version, key, files)
    target_column = "label_index" if task == "classification" else TARGET_COLUMNS[task]
    table = delta.read_table(spark, uri, version).where(
        F.col(target_column).isNotNull() & (F.col("spec_key") == spec.key))
    reused = _splits_written(spark, root)
    encoding = target = None
    if inputs_cfg is not None:
        _check_joined(table.columns, inputs_cfg, uri)
    if inputs_cfg is not None or task == "regression":
        train = table.where(F.col("split") == "train")
        reused, fitted = _fitted(spark, root, reused, lambda: {
            "encoding": fit_encoding(train, inputs_cfg) if inputs_cfg is not None else None,
            "target": target_stats(train) if task == "regression" else None})
        encoding, target = fitted["encoding"], fitted["target"]
    schema = ("image_id string, " + ("label_index int" if task == "classification" else "target binary")
              + ", pixels binary" + (", inputs binary" if encoding else ""))
    columns = [part.split()[0] for part in schema.split(", ")]
    rows: dict[str, int] = {}
    for split in SPLITS:
        if not reused:
            part = table.where(F.col("split") == split).select(
                "image_id", target_column, "pixels", *(encoded_columns(encoding) if encoding else ()))
            if encoding is not None or task != "classification":
                part = part.mapInPandas(
                    lambda frames: (_image_training_rows(f, encoding, task, classes, target)[columns] for f in frames),
                    schema)
            # Hash-partitioned and sorted: the same files, in the same order, every time.
            part.repartition(files, "image_id").sortWithinPartitions("image_id") \
                .write.mode("overwrite").parquet(f"{root}/{split}")
        rows[split] = spark.read.parquet(f"{root}/{split}").count()
    if rows["train"] == 0:
        raise SourceError(f"silver.features at version {version} has no labelled training rows; check the labels"
                          + ("" if task == "classification" else f" (features.target {profile.features.target!r})"))
    if (encoding is not None or target is not None) and not reused:
        hadoop.write_text(spark, f"{root}/{FITTED_FILE}", json.dumps(fitted, sort_keys=True))
    feed = Feed.for_images(spec, input_width(encoding) if encoding else 0, _target_width(task, classes))
    return TrainingSet(root, version, spec, classes, rows, reused, task, uri, encoding, target, feed, key)


def _target_width(task: str, classes: tuple[str, ...]) -> int:
    """float32 target values per row: 0 for a classifier (a class index instead), 1 value, or 1 per label."""
    return {"classification": 0, "regression": 1}.get(task, len(classes))


def _image_task(profile: Profile, properties: dict[str, str], uri: str) -> tuple[str, tuple[str, ...]]:
    """(train.task, its classes or labels) after checking silver.features was built for them."""
    task, target = profile.train.task, profile.features.target
    built = json.loads(properties.get(IMAGE_TARGET_PROPERTY, '{"task": "classification", "target": "label"}'))
    if built["task"] != task or (task != "classification" and built["target"] != target):
        raise SourceError(f"{uri} was built for train.task = {built['task']!r} with target {built['target']!r}, "
                          f"not {task!r} with {target!r}; run build_features again with this profile")
    if task == "multilabel":
        if not built["labels"]:
            raise SourceError(f"{uri} has no labels in its multilabel targets (features.target {target!r}); check "
                              f"that column and features.label_delimiter, then run build_features again")
        return task, tuple(built["labels"])
    if task == "regression":
        return task, ()
    if CLASSES_PROPERTY not in properties:
        raise SourceError(f"{uri} lists no classes (it was built for another task); run build_features again "
                          f"with this profile")
    return task, tuple(json.loads(properties[CLASSES_PROPERTY]))


def _image_training_rows(frame: "Any", encoding: dict[str, Any] | None, task: str, classes: tuple[str, ...],
                         target: dict[str, float] | None) -> "Any":
    """Rows of silver.features -> image training-set rows: table columns encoded into ``inputs``, a
    multilabel or regression target into ``target`` (float32 bytes)."""
    out = with_encoded_inputs(frame, encoding) if encoding is not None else frame
    if task != "classification":
        out["target"] = encode_targets(out, task, classes, target)
    return out


def _splits_written(spark: "SparkSession", root: str) -> bool:
    return all(hadoop.exists(spark, f"{root}/{split}/_SUCCESS") for split in SPLITS)


def _recipe_key(recipe: Any) -> str:
    return "t" + hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:11]


def _fitted(spark: "SparkSession", root: str, splits_written: bool, fit: Any) -> tuple[bool, dict[str, Any]]:
    """(whether the set at ``root`` is whole and reused, its ``{"encoding", "target"}``): the one
    stored beside its splits when it is (written last, so a set with it is whole), else ``fit()``."""
    fitted_uri = f"{root}/{FITTED_FILE}"
    if splits_written and hadoop.exists(spark, fitted_uri):
        return True, json.loads(hadoop.read_text(spark, fitted_uri))
    return False, fit()


def _check_joined(columns: list[str], cfg: Any, uri: str) -> None:
    missing = [c for c in (*cfg.numeric, *cfg.categorical) if c not in columns]
    if missing:
        raise SourceError(f"features.table_inputs names {missing}, which {uri} does not have (it has "
                          f"{', '.join(columns)}); run build_features again with features.join_columns listing them")


def materialize_table_training_set(spark: "SparkSession", profile: Profile,
                                   features_version: int | None = None) -> TrainingSet:
    """Write (or reuse) the Parquet splits of ``silver.<table>_features`` at a Delta version, its
    inputs encoded with an encoding fitted on the train split (:mod:`lakeloop.tabular`).

    Raises
    ------
    SourceError
        the features table does not exist, has no labelled training rows, or was built for another task.
    """
    from pyspark.sql import functions as F

    cfg, task = profile.features.table, profile.train.task
    uri = table_features_uri(profile)
    if not delta.is_delta_table(spark, uri):
        raise SourceError(f"{uri} is not a Delta table yet; run build_features first")
    version = features_version if features_version is not None else delta.table_version(spark, uri)
    built = json.loads(delta.table_properties(spark, uri)[TABLE_PROPERTY])
    if built["task"] != task:
        raise SourceError(f"{uri} was built for train.task = {built['task']!r}, not {task!r}; run build_features "
                          f"again with this profile")
    target_column = TARGET_COLUMNS[task]
    table = delta.read_table(spark, uri, version).where(F.col(target_column).isNotNull())
    classes = tuple(built["classes"])
    recipe_key = _recipe_key({"table": dataclasses.asdict(cfg), "task": task, "classes": classes})
    files = profile.features.training_set_files
    root = LakeLayout(profile.lake_root).training_set(version, recipe_key, files)
    train = table.where(F.col("split") == "train")
    reused, fitted = _fitted(spark, root, _splits_written(spark, root),
                             lambda: {"encoding": fit_encoding(train, cfg),
                                      "target": target_stats(train) if task == "regression" else None})
    encoding, target = fitted["encoding"], fitted["target"]
    schema = "row_id string, inputs binary, " + ("label_index int" if task == "classification" else "target binary")
    columns = ["row_id", *cfg.numeric, *cfg.categorical, target_column]
    rows: dict[str, int] = {}
    for split in SPLITS:
        if not reused:
            part = table.where(F.col("split") == split).select(*columns).mapInPandas(
                lambda frames: (encode_training_rows(f, encoding, task, classes, target) for f in frames), schema)
            part.repartition(files, "row_id").sortWithinPartitions("row_id").write.mode("overwrite") \
                .parquet(f"{root}/{split}")
        rows[split] = spark.read.parquet(f"{root}/{split}").count()
    if rows["train"] == 0:
        raise SourceError(f"{uri} at version {version} has no labelled training rows; check features.table.target")
    if not reused:
        hadoop.write_text(spark, f"{root}/{FITTED_FILE}", json.dumps(fitted, sort_keys=True))
    feed = Feed.for_table(input_width(encoding), _target_width(task, classes))
    return TrainingSet(root, version, None, classes, rows, reused, task, uri, encoding, target, feed, recipe_key)


def materialize(spark: "SparkSession", profile: Profile) -> TrainingSet:
    """The training set of the profile's features: a table's with ``features.table``, else the images',
    its lease renewed: ``lakeloop maintain`` keeps it for ``maintain.training_set_lease_hours`` from now."""
    if profile.features.table is not None:
        ts = materialize_table_training_set(spark, profile)
    else:
        ts = materialize_training_set(spark, profile)
    hadoop.write_text(spark, LakeLayout.training_set_lease(ts.root), datetime.now(timezone.utc).isoformat())
    return ts


def table_layout(ts: TrainingSet) -> list[dict[str, Any]]:
    return input_layout(ts.encoding) if ts.encoding else []


def input_statistics(spark: "SparkSession", ts: TrainingSet) -> dict[str, Any] | None:
    """What the training inputs looked like, stored with the model: the histogram of per-image mean
    intensity over the train split (scoring compares its inputs with it), its mean and spread.
    None for a table (its encoding holds each column's train mean and spread)."""
    from pyspark.sql import functions as F

    if ts.spec is None:
        return None
    means = spark.read.parquet(ts.split_uri("train")).select(mean_intensity(F.col("pixels"), ts.spec).alias("m"))
    rows = means.groupBy(intensity_bin(F.col("m"), INTENSITY_BINS).alias("bin")).agg(
        F.count("*").alias("rows"), F.sum("m").alias("total"), F.sum(F.col("m") * F.col("m")).alias("squares")
    ).collect()
    n = sum(r["rows"] for r in rows)
    mean = sum(r["total"] for r in rows) / n if n else None
    variance = sum(r["squares"] for r in rows) / n - mean * mean if n else None
    return {"statistic": "mean_intensity", "bins": INTENSITY_BINS, "rows": n,
            "train_fractions": histogram_fractions({r["bin"]: r["rows"] for r in rows}),
            "mean": mean, "std": max(variance, 0.0) ** 0.5 if variance is not None else None}

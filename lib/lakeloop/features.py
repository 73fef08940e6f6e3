"""Features: bronze images (+ a joined table) -> Delta ``silver.features``, and the
Parquet training set Petastorm reads.

``silver.features`` holds, per image: ``image_id``, ``label``, ``label_index``, ``split``
(train/validation/test, from a hash of ``image_id`` and ``features.split_seed``: the same
on every rerun), ``pixels`` (the preprocessed image as uint8 H x W x C bytes, see
:mod:`lakeloop.preprocess`), the joined table columns, the preprocessing spec's key and
the bronze Delta version it was built from. The spec itself and the class list are table
properties (``lakeloop.preprocess``, ``lakeloop.classes``).

The training set is plain Parquet written by Spark and read with Petastorm's
``make_batch_reader``, not ``materialize_dataset`` with a Unischema and image codecs:
the pixels are already decoded, fixed-size uint8, so a codec would only add a PNG
decode per row, and ``make_batch_reader`` is the fast path (DESIGN.md: 1.2x bare pyarrow
vs 0.62x for the converter). It lives at ``_training_sets/v<features version>-<spec
key>-<files>/`` and is reused while both match (uber/petastorm#735).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import pandas as pd  # module level: pandas UDF type hints resolve in this module's globals

from lakeloop import delta_io, storage
from lakeloop.config import Profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.ingest_images import bronze_images_uri
from lakeloop.preprocess import PreprocessSpec
from lakeloop.report import RunReport, new_run_id

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SPLITS = ("train", "validation", "test")
SPEC_PROPERTY = "lakeloop.preprocess"
CLASSES_PROPERTY = "lakeloop.classes"
PREPROCESS_SCHEMA = "pixels binary, error string"


def features_uri(profile: Profile) -> str:
    return profile.table_uri("silver", "features")


def quarantine_features_uri(profile: Profile) -> str:
    return profile.table_uri("quarantine", "features")


def lake_table(profile: Profile, ref: str) -> str:
    """``bronze.digits_meta`` -> that table's URI in the lake; a URI is returned as it is."""
    if re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", ref):
        layer, name = ref.split(".")
        return profile.table_uri(layer, name)
    return ref


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


def _set_properties(spark: "SparkSession", uri: str, properties: dict[str, str]) -> None:
    """Set table properties only when they differ, so a rerun commits nothing."""
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, uri).detail().select("properties").first()
    current = dict(detail["properties"] or {})
    changed = {k: v for k, v in properties.items() if current.get(k) != v}
    if changed:
        assignments = ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ({assignments})")


def table_properties(spark: "SparkSession", uri: str) -> dict[str, str]:
    from delta.tables import DeltaTable

    return dict(DeltaTable.forPath(spark, uri).detail().select("properties").first()["properties"] or {})


def build_features(spark: "SparkSession", profile: Profile, run_id: str | None = None,
                   report: RunReport | None = None) -> RunReport:
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
    from pyspark.sql import functions as F

    cfg = profile.features
    run_id = run_id or new_run_id("build_features")
    report = report or RunReport(job="build_features", run_id=run_id)
    spec = PreprocessSpec.from_config(cfg.preprocess)
    source_uri, target_uri = bronze_images_uri(profile), features_uri(profile)
    if not delta_io.is_delta_table(spark, source_uri):
        raise SourceError(f"{source_uri} is not a Delta table yet; run ingest_images first")

    with report.timed("read"):
        source_version = delta_io.table_version(spark, source_uri)
        bronze = delta_io.read_table(spark, source_uri, source_version)
        classes = sorted(r.label for r in bronze.where("label IS NOT NULL").select("label").distinct().collect())
    report.details.update(bronze_version=source_version, classes=classes, preprocess=json.loads(spec.to_json()))

    features = to_features(bronze, spec, classes, cfg.split_seed, cfg.split_fractions, source_version, run_id)
    join_columns: tuple[str, ...] = ()
    if cfg.join_table:
        join_uri = lake_table(profile, cfg.join_table)
        if not delta_io.is_delta_table(spark, join_uri):
            raise SourceError(f"features.join_table {join_uri} is not a Delta table; run ingest_tables first "
                              f"or unset features.join_table")
        table = delta_io.read_table(spark, join_uri, delta_io.table_version(spark, join_uri))
        features = join_table_columns(features, table, cfg.join_key, cfg.join_columns)
        join_columns = cfg.join_columns
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    with report.timed("preprocess"):
        n_images = features.count()

    good = features.where("error IS NULL").drop("error")
    bad = features.where("error IS NOT NULL").select(
        "image_id", "path", "error", F.current_timestamp().alias("quarantined_at"), F.lit(run_id).alias("run_id"))
    with report.timed("write"):
        compare = ["label", "label_index", "split", "spec_key", *join_columns]
        metrics = delta_io.merge_upsert(spark, good, target_uri, ["image_id"], compare)
        bad_count = bad.count()
        if bad_count:
            delta_io.merge_insert_new(spark, bad, quarantine_features_uri(profile), ["image_id"])
        _set_properties(spark, target_uri, {SPEC_PROPERTY: spec.to_json(), CLASSES_PROPERTY: json.dumps(classes)})
    features.unpersist()

    version = delta_io.table_version(spark, target_uri)
    split_counts = {r["split"]: r["count"] for r in
                    delta_io.read_table(spark, target_uri, version).groupBy("split").count().collect()}
    inserted, updated = metrics.get("num_inserted_rows", 0), metrics.get("num_updated_rows", 0)
    report.counts.update(
        images=n_images,
        inserted=inserted,
        updated=updated,
        unchanged=n_images - bad_count - inserted - updated,
        quarantined=bad_count,
        **{f"split_{k}": v for k, v in sorted(split_counts.items())},
    )
    report.details["features_version"] = version
    report.outputs.update(features=target_uri, quarantine=quarantine_features_uri(profile))
    return report


@dataclass(frozen=True)
class TrainingSet:
    """A materialized training set: one Parquet folder per split, keyed by what it came from."""

    root: str
    features_version: int
    spec: PreprocessSpec
    classes: tuple[str, ...]
    rows: dict[str, int]
    reused: bool

    def split_uri(self, split: str) -> str:
        return f"{self.root}/{split}"


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

    uri = features_uri(profile)
    if not delta_io.is_delta_table(spark, uri):
        raise SourceError(f"{uri} is not a Delta table yet; run build_features first")
    version = features_version if features_version is not None else delta_io.table_version(spark, uri)
    properties = table_properties(spark, uri)
    spec = PreprocessSpec.from_json(properties[SPEC_PROPERTY])
    classes = tuple(json.loads(properties[CLASSES_PROPERTY]))
    files = profile.features.training_set_files
    root = f"{profile.lake_root}/_training_sets/v{version}-{spec.key}-{files}"
    rows: dict[str, int] = {}
    reused = all(storage.exists(spark, f"{root}/{split}/_SUCCESS") for split in SPLITS)
    table = delta_io.read_table(spark, uri, version).where("label_index IS NOT NULL AND spec_key = '%s'" % spec.key)
    for split in SPLITS:
        part = table.where(F.col("split") == split).select("image_id", "label_index", "pixels")
        if not reused:
            # Hash-partitioned and sorted: the same files, in the same order, every time.
            part.repartition(files, "image_id").sortWithinPartitions("image_id") \
                .write.mode("overwrite").parquet(f"{root}/{split}")
        rows[split] = spark.read.parquet(f"{root}/{split}").count()
    if rows["train"] == 0:
        raise SourceError(f"silver.features at version {version} has no labelled training rows; check the labels")
    return TrainingSet(root, version, spec, classes, rows, reused)

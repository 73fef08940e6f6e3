"""The training set: ``silver.features`` at one Delta version, as plain Parquet that Petastorm reads.

It is written by Spark and read with Petastorm's ``make_batch_reader``, not
``materialize_dataset`` with a Unischema and image codecs: the pixels are already decoded,
fixed-size uint8, so a codec would only add a PNG decode per row, and ``make_batch_reader``
is the fast path (DESIGN.md: 1.2x bare pyarrow vs 0.62x for the converter). It lives at
:meth:`lakeloop.layout.LakeLayout.training_set` (``_training_sets/v<features version>-<spec
key>-<files>/``) and is reused while all three match (uber/petastorm#735).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile
from lakeloop.errors import SourceError
from lakeloop.io import delta, hadoop
from lakeloop.layout import LakeLayout
from lakeloop.metrics import INTENSITY_BINS, histogram_fractions
from lakeloop.preprocess import CLASSES_PROPERTY, SPEC_PROPERTY, SPLITS, PreprocessSpec, intensity_bin, mean_intensity

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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

    lake = LakeLayout(profile.lake_root)
    uri = lake.features
    if not delta.is_delta_table(spark, uri):
        raise SourceError(f"{uri} is not a Delta table yet; run build_features first")
    version = features_version if features_version is not None else delta.table_version(spark, uri)
    properties = delta.table_properties(spark, uri)
    spec = PreprocessSpec.from_json(properties[SPEC_PROPERTY])
    classes = tuple(json.loads(properties[CLASSES_PROPERTY]))
    files = profile.features.training_set_files
    root = lake.training_set(version, spec.key, files)
    rows: dict[str, int] = {}
    reused = all(hadoop.exists(spark, f"{root}/{split}/_SUCCESS") for split in SPLITS)
    table = delta.read_table(spark, uri, version).where("label_index IS NOT NULL AND spec_key = '%s'" % spec.key)
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


def input_statistics(spark: "SparkSession", ts: TrainingSet) -> dict[str, Any]:
    """What the training inputs looked like, stored with the model: the histogram of per-image mean
    intensity over the train split (scoring compares its inputs with it), its mean and spread."""
    from pyspark.sql import functions as F

    means = spark.read.parquet(ts.split_uri("train")).select(mean_intensity(F.col("pixels")).alias("m"))
    rows = means.groupBy(intensity_bin(F.col("m"), INTENSITY_BINS).alias("bin")).agg(
        F.count("*").alias("rows"), F.sum("m").alias("total"), F.sum(F.col("m") * F.col("m")).alias("squares")
    ).collect()
    n = sum(r["rows"] for r in rows)
    mean = sum(r["total"] for r in rows) / n if n else None
    variance = sum(r["squares"] for r in rows) / n - mean * mean if n else None
    return {"statistic": "mean_intensity", "bins": INTENSITY_BINS, "rows": n,
            "train_fractions": histogram_fractions({r["bin"]: r["rows"] for r in rows}),
            "mean": mean, "std": max(variance, 0.0) ** 0.5 if variance is not None else None}

"""Tombstones of records erased from the lake (``lakeloop forget``, :mod:`lakeloop.ops.forget`), in
``_ledger/forgotten``: one row per erased image (its id) or table row (its table and key), which the
ingestion jobs read so that they never take an erased record back in.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lakeloop.io import delta
from lakeloop.layout import LakeLayout

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

KIND_IMAGE = "image"
KIND_TABLE_ROW = "table_row"
TOMBSTONE_KEYS = ("kind", "table", "key")


def tombstone_schema():
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    return StructType([StructField("kind", StringType()), StructField("table", StringType()),
                       StructField("key", StringType()), StructField("forgotten_at", TimestampType()),
                       StructField("run_id", StringType())])


def table_key_text(values: dict[str, str]) -> str:
    """A table row's key as its tombstone holds it: the key columns and their values as text, JSON."""
    return json.dumps({k: str(v) for k, v in values.items()}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def row_key_text(keys: dict[str, str]) -> "Column":
    """:func:`table_key_text` of each row, as a Spark column; ``keys``: each key as the table's settings
    name it -> the column holding it."""
    from pyspark.sql import functions as F

    return F.to_json(F.struct(*[F.col(f"`{keys[k]}`").cast("string").alias(k) for k in sorted(keys)]))


def forgotten_lookup(spark: "SparkSession", uri: str) -> "DataFrame":
    """The tombstones at ``uri`` (a lake's ``_ledger/forgotten``), pinned; empty when there are none."""
    return delta.read_pinned_or_empty(spark, uri, tombstone_schema())


def forgotten_images(spark: "SparkSession", lake: LakeLayout) -> "DataFrame":
    """The ids (``image_id``) of the images erased from the lake, pinned to the tombstones' current version."""
    from pyspark.sql import functions as F

    stones = delta.read_pinned_or_empty(spark, lake.forgotten, tombstone_schema())
    return stones.where(F.col("kind") == KIND_IMAGE).select(F.col("key").alias("image_id"))

"""Which split a row is in, for one model: the split it had in the features version the model
was trained on, so a row the model trained on is never counted as test after ``features.split_seed``
or ``features.split_fractions`` changed and ``build_features`` reassigned the splits.

Computed here once, when a row is scored: scoring writes each row's split into the ``split`` column
of its predictions (``gold.predictions``), and the evaluation (``gold.model_evaluations``) takes it
from that column, never joining silver.features again for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.io import delta, hadoop

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def trained_version(metadata: Mapping[str, Any], features_uri: str) -> int | None:
    """The Delta version of ``features_uri`` the model of ``metadata`` was trained on (its registry
    metadata, ``features.delta_version``); None when it was trained on another table or does not say."""
    features = metadata.get("features") or {}
    version, table = features.get("delta_version"), features.get("table")
    if version is None or (table and table.rstrip("/") != features_uri.rstrip("/")):
        return None
    return int(version)


def model_splits(spark: "SparkSession", features_uri: str, metadata: Mapping[str, Any],
                 key: str = "image_id") -> tuple["DataFrame", str | None]:
    """``(key, split)`` for every row of the features table at ``features_uri``: its split in the
    version the model of ``metadata`` was trained on (:func:`trained_version`), and for a row
    added since, its split now; both versions pinned. Second: a warning when the trained-on
    version can no longer be read (VACUUM removed its files, or Delta's log retention its log),
    and every row has its split now."""
    from pyspark.sql import functions as F

    now = delta.read_table(spark, features_uri, delta.table_version(spark, features_uri)) \
        .select(key, F.col("split").alias("_now"))
    version = trained_version(metadata, features_uri)
    if version is None:
        return now.withColumnRenamed("_now", "split"), None
    try:
        then = delta.read_table(spark, features_uri, version)
        missing = sum(not hadoop.exists(spark, uri) for uri in then.inputFiles())
        why = f"VACUUM removed {missing} of its files" if missing else None
    except Exception as exc:  # noqa: BLE001 - Delta's error for a version past its log retention differs by release
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    if why:
        return now.withColumnRenamed("_now", "split"), (
            f"{features_uri} at version {version}, the version the model was trained on, can no longer be read "
            f"({why}): each row is counted in its split now, which differs from its split in training if "
            f"features.split_seed or features.split_fractions changed since")
    then = then.select(key, F.col("split").alias("_then"))
    return now.join(then, key, "full").select(key, F.coalesce("_then", "_now").alias("split")), None

"""Table features: a bronze table -> Delta ``silver.<table>_features`` (``features.table``).

Per source row: ``row_id`` (the key as text: what training sets and predictions are keyed
by), the key column itself, the configured numeric and categorical columns as they are in
bronze, the target in the task's form (:data:`lakeloop.tabular.TARGET_COLUMNS`: ``label``
text, ``labels`` an array of names, or ``target`` a double), ``split`` (from a hash of the
key and ``features.split_seed``, so a rerun gives the same split), the bronze version read,
``built_at`` and ``run_id``. A row without a target stays in, unlabelled: it is scored, not
trained on. Rows are MERGEd by ``row_id``: a rerun on unchanged bronze commits nothing.

Inputs stay raw here. Their encoding (standardising, one-hot) is fitted on the train split
when a training set is made (:mod:`lakeloop.training.dataset`) and stored with the model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lakeloop.config import Profile
from lakeloop.errors import SourceError
from lakeloop.features.silver import assign_split, stable_classes
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.report import RunReport
from lakeloop.tabular import (TABLE_PROPERTY, TARGET_COLUMNS, check_columns, table_features_uri, table_properties,
                              task_target)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

def _classes(spark: "SparkSession", features: "DataFrame", uri: str, task: str) -> list[str]:
    """The stable class (or label) list: the one stored on the table, new names appended."""
    from pyspark.sql import functions as F

    if task == "regression":
        return []
    if task == "multilabel":
        names = {r["c"] for r in features.select(F.explode("labels").alias("c")).distinct().collect()}
    else:
        names = {r["label"] for r in features.where("label IS NOT NULL").select("label").distinct().collect()}
    previous: list[str] = []
    if delta.is_delta_table(spark, uri):
        stored = delta.table_properties(spark, uri).get(TABLE_PROPERTY)
        previous = list(json.loads(stored).get("classes", [])) if stored else []
    return stable_classes(previous, names)


def build_table_features(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Build or update ``silver.<table>_features`` from the current ``features.table.source``.

    Raises
    ------
    SourceError
        the source table does not exist yet (run ingest_tables first).
    ConfigError
        the source lacks a configured column, or its target cannot serve ``train.task``.
    """
    from pyspark.sql import functions as F

    cfg, task = profile.features.table, profile.train.task
    report = report or RunReport.start("build_features")
    lake = LakeLayout(profile.lake_root)
    source_uri, uri = lake.resolve_table(cfg.source), table_features_uri(profile)
    if not delta.is_delta_table(spark, source_uri):
        raise SourceError(f"features.table.source {source_uri} is not a Delta table yet; run ingest_tables first")
    version = delta.table_version(spark, source_uri)
    with report.timed("read"):
        bronze = delta.read_table(spark, source_uri, version)
        check_columns(bronze.columns, cfg, source_uri)
    target_column = TARGET_COLUMNS[task]
    features = bronze.select(
        F.col(cfg.key).cast("string").alias("row_id"), cfg.key, *cfg.numeric, *cfg.categorical,
        task_target(bronze, cfg.target, task, cfg.label_delimiter, "features.table.target").alias(target_column),
        assign_split(F.col(cfg.key).cast("string"), profile.features.split_seed,
                     profile.features.split_fractions).alias("split"),
        F.lit(version).cast("long").alias("source_version"), F.current_timestamp().alias("built_at"),
        F.lit(report.run_id).alias("run_id"),
    ).where(F.col("row_id").isNotNull())
    with report.timed("write"):
        classes = _classes(spark, features, uri, task)
        compare = [cfg.key, *cfg.numeric, *cfg.categorical, target_column, "split"]
        # The features mirror bronze: a row deleted there (a snapshot source's missing key) goes here too.
        metrics = delta.merge_upsert(spark, features, uri, ["row_id"], compare, delete_missing=True)
        delta.set_table_properties(spark, uri, table_properties(cfg, task, classes))
    features_version = delta.table_version(spark, uri)
    with report.timed("count"):
        counts = _split_counts(delta.read_table(spark, uri, features_version), target_column)
    report.counts.update(rows=sum(counts.values()), inserted=metrics.get("num_inserted_rows", 0),
                         updated=metrics.get("num_updated_rows", 0), deleted=metrics.get("num_deleted_rows", 0),
                         **{f"split_{k}": v for k, v in sorted(counts.items()) if k != "unlabelled"})
    if counts.get("unlabelled"):
        report.counts["unlabelled"] = counts["unlabelled"]
    report.details.update(source=source_uri, source_version=version, features_version=features_version, task=task,
                          classes=classes)
    report.outputs["features"] = uri
    return report


def _split_counts(table: "DataFrame", target_column: str) -> dict[str, int]:
    """Labelled rows per split, and the unlabelled rows."""
    from pyspark.sql import functions as F

    labelled = F.col(target_column).isNotNull()
    rows = table.groupBy(F.when(labelled, F.col("split")).otherwise("unlabelled").alias("s")).count().collect()
    return {r["s"]: r["count"] for r in rows}

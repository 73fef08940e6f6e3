"""Model evaluation: ``gold.predictions`` -> Delta ``gold.model_evaluations``, the one place a model
version's accuracy is computed (the score job reports only its own run's; promotion reads these rows).

Per split (train, validation, test) of one model version: accuracy, macro precision /
recall / F1, per-class precision / recall / F1, the confusion matrix, top-k accuracy, a
calibration table (reliability bins and the expected calibration error), and the
accuracy per group of ``quality.group_column`` with the largest gap between groups (the
bias report, groups from ``silver.features``). The split is gold.predictions' ``split`` column,
written by the score job: the one a row had in the ``silver.features`` version the model was
trained on (:mod:`lakeloop.splits`), never today's, so after a ``features.split_seed`` change a
row the model trained on is still counted as train.

Spark does the counting; :mod:`lakeloop.metrics` turns the few aggregate rows into
figures. The headline is the split of ``evaluate.split`` (test by default).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout, parse_model_ref
from lakeloop.metrics import calibration_table, classification_summary, confusion_matrix, group_accuracy
from lakeloop.preprocess import SPLITS
from lakeloop.registry import ModelVersion, Registry
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EVALUATION_KEYS = ("model_name", "model_version", "split")


def labelled_predictions(spark: "SparkSession", lake: LakeLayout, version: ModelVersion,
                         group_column: str | None) -> tuple["DataFrame", dict[str, int | None]]:
    """This version's predictions that have a true label, with their ``split`` as gold.predictions
    holds it (the score job wrote each row's split in the features version the model trained on,
    :func:`lakeloop.splits.model_splits`; ``unknown`` where it has none) and, with ``group_column``,
    the row's ``group`` from silver.features now, the tables pinned; plus the Delta versions read."""
    from pyspark.sql import functions as F

    if not delta.is_delta_table(spark, lake.predictions):
        raise SourceError(f"{lake.predictions} is not a Delta table yet; run score first")
    versions: dict[str, int | None] = {
        "predictions": delta.table_version(spark, lake.predictions),
        "features": delta.table_version(spark, lake.features) if delta.is_delta_table(spark, lake.features) else None}
    predictions = delta.read_table(spark, lake.predictions, versions["predictions"]).where(
        (F.col("model_name") == version.name) & (F.col("model_version") == version.version)
        & F.col("true_label").isNotNull())
    split = F.col("split") if "split" in predictions.columns else F.lit(None).cast("string")
    rows = predictions.select("image_id", "label", "true_label", "score", "scores",
                              F.coalesce(split, F.lit("unknown")).alias("split"))
    if group_column is None or versions["features"] is None:
        return rows.withColumn("group", F.lit(None).cast("string")), versions
    features = delta.read_table(spark, lake.features, versions["features"])
    groups = features.select("image_id", F.col(group_column).cast("string").alias("group"))
    return rows.join(groups, "image_id", "left"), versions


def _aggregates(rows: "DataFrame", classes: list[str], top_k: int, n_bins: int) -> dict[str, list[Any]]:
    """The few aggregate rows the figures are made of, collected in one pass each."""
    from pyspark.sql import functions as F

    correct = (F.col("label") == F.col("true_label")).cast("int")
    class_array = F.array(*[F.lit(c) for c in classes])
    true_score = F.element_at("scores", F.array_position(class_array, F.col("true_label")).cast("int"))
    # Rank of the true class among the scores: how many classes scored higher.
    higher = F.size(F.filter("scores", lambda s: s > true_score))
    in_top_k = F.when(F.array_position(class_array, F.col("true_label")) > 0, (higher < top_k).cast("int")) \
        .otherwise(F.lit(0))
    bin_ = F.least(F.floor(F.col("score") * n_bins), F.lit(n_bins - 1)).cast("int")
    return {
        "confusion": rows.groupBy("split", "true_label", "label").count().collect(),
        "calibration": rows.groupBy("split", bin_.alias("bin")).agg(
            F.count("*").alias("rows"), F.avg("score").alias("confidence"), F.sum(correct).alias("correct")).collect(),
        "top_k": rows.groupBy("split").agg(F.sum(in_top_k).alias("top_k"), F.count("*").alias("rows")).collect(),
        "groups": rows.groupBy("split", "group").agg(
            F.count("*").alias("rows"), F.sum(correct).alias("correct")).collect(),
    }


def evaluation_by_split(rows: "DataFrame", classes: list[str], top_k: int, n_bins: int,
                        with_groups: bool) -> dict[str, dict[str, Any]]:
    """``{split: figures}`` for every split the labelled predictions fall in."""
    agg = _aggregates(rows, classes, top_k, n_bins)
    order = {s: i for i, s in enumerate(SPLITS)}
    splits = sorted({r["split"] for r in agg["top_k"]}, key=lambda s: (order.get(s, len(order)), s))
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        pairs = [(r["true_label"], r["label"], r["count"]) for r in agg["confusion"] if r["split"] == split]
        matrix = confusion_matrix(pairs, classes)
        figures = classification_summary(matrix, classes)
        top = next(r for r in agg["top_k"] if r["split"] == split)
        figures.update(
            confusion_matrix=matrix,
            classes=list(classes),
            unknown_labels=sorted({str(t) for t, _, _ in pairs if t not in classes}),
            top_k={"k": top_k, "accuracy": top["top_k"] / top["rows"] if top["rows"] else None},
            calibration=calibration_table([(r["bin"], r["rows"], r["confidence"], r["correct"])
                                           for r in agg["calibration"] if r["split"] == split], n_bins),
        )
        if with_groups:
            figures["groups"] = group_accuracy([(r["group"], r["rows"], r["correct"])
                                                for r in agg["groups"] if r["split"] == split])
        out[split] = figures
    return out


def _group_column(spark: "SparkSession", profile: Profile, lake: LakeLayout, report: RunReport) -> str | None:
    """``quality.group_column`` if silver.features has it; a warning (not an error) when it does not."""
    column = profile.quality.group_column
    if column is None:
        return None
    if not delta.is_delta_table(spark, lake.features):
        report.warnings.append(f"quality.group_column {column!r}: {lake.features} is not a Delta table yet, so no "
                               f"per-group figures; run build_features")
        return None
    columns = delta.read_table(spark, lake.features).columns
    if column in columns:
        return column
    report.warnings.append(f"quality.group_column {column!r} is not a column of {lake.features} (it has "
                           f"{', '.join(columns)}): no per-group figures; add it to features.join_columns")
    return None


def _write_evaluations(spark: "SparkSession", by_split: dict[str, dict[str, Any]], version: ModelVersion,
                       versions: dict[str, int], lake: LakeLayout, report: RunReport) -> dict[str, int]:
    from pyspark.sql import functions as F
    from pyspark.sql.types import (DoubleType, IntegerType, LongType, StringType, StructField, StructType)

    schema = StructType([
        StructField("model_name", StringType()), StructField("model_version", IntegerType()),
        StructField("split", StringType()), StructField("rows", LongType()),
        StructField("accuracy", DoubleType()), StructField("macro_f1", DoubleType()),
        StructField("top_k_accuracy", DoubleType()), StructField("expected_calibration_error", DoubleType()),
        StructField("largest_group_gap", DoubleType()), StructField("evaluation", StringType()),
        StructField("predictions_delta_version", LongType()), StructField("features_delta_version", LongType()),
        StructField("run_id", StringType()),
    ])
    rows = [(version.name, version.version, split, f["rows"], f["accuracy"], f["macro_f1"], f["top_k"]["accuracy"],
             f["calibration"]["expected_calibration_error"],
             ((f.get("groups") or {}).get("largest_gap") or {}).get("value"),
             json.dumps(f, sort_keys=True), versions["predictions"], versions["features"], report.run_id)
            for split, f in by_split.items()]
    df = spark.createDataFrame(rows, schema).withColumn("evaluated_at", F.current_timestamp())
    # Figures unchanged since the last evaluation (same predictions, same splits) are not rewritten.
    return delta.merge_upsert(spark, df, lake.model_evaluations, list(EVALUATION_KEYS), ["evaluation"])


def evaluate_model(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Evaluate the predictions of ``evaluate.model`` (default ``score.model``) against the labels.

    Writes one row per split to ``gold.model_evaluations`` (MERGE on model, version and split;
    unchanged figures commit nothing). Reports the figures of ``evaluate.split`` as metrics
    (``test_accuracy``, ``test_macro_f1``, ``test_top_3_accuracy``, ...) and the per-group
    accuracy of ``quality.group_column``; a gap above ``quality.max_group_accuracy_gap`` is a
    quality violation (a warning, or a failure with ``quality.on_violation: fail``).

    Raises
    ------
    SourceError
        no predictions or features yet, or no labelled prediction of the version.
    ConfigError
        the model is not a classifier.
    ModelNotFound
        the model reference names no committed version.
    QualityError
        a crossed threshold with ``quality.on_violation: fail``.
    """
    cfg = profile.evaluate
    report = report or RunReport.start("evaluate")
    lake = LakeLayout(profile.lake_root)
    registry = Registry.for_profile(profile)
    name, ref = parse_model_ref(cfg.model or profile.score.model)
    version = registry.resolve(name, ref)
    metadata = registry.read_metadata(version)
    if metadata.get("task", "classification") != "classification":
        raise ConfigError(f"evaluate computes a classifier's figures, and {version.name}:{version.version} is a "
                          f"{metadata['task']} model: its validation and test figures are in its metadata "
                          f"(metrics.val, metrics.test) and the score job reports them for what it scores")
    classes = list(metadata["classes"])
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    with report.timed("read"):
        group_column = _group_column(spark, profile, lake, report)
        rows, versions = labelled_predictions(spark, lake, version, group_column)
    # Four aggregations read these rows: join and filter once, not once each.
    rows = rows.persist()
    try:
        with report.timed("evaluate"):
            by_split = evaluation_by_split(rows, classes, cfg.top_k, cfg.calibration_bins, group_column is not None)
    finally:
        rows.unpersist()
    if not by_split:
        raise SourceError(f"{lake.predictions} has no labelled prediction of {version.name}:{version.version}; "
                          f"score labelled rows (score.input features) first")
    if "unknown" in by_split:
        report.warnings.append(f"{by_split['unknown']['rows']} labelled prediction(s) of {version.name}:"
                               f"{version.version} have no split in {lake.predictions} (scored before it kept one, "
                               f"or in no features table): counted as split 'unknown'")
    with report.timed("write"):
        report.details["evaluations_merge"] = _write_evaluations(spark, by_split, version, versions, lake, report)
    _report_figures(report, by_split, cfg.split, group_column, versions)
    _check_group_gap(report, by_split.get(cfg.split), profile)
    report.outputs["evaluations"] = lake.model_evaluations
    return report


def _report_figures(report: RunReport, by_split: dict[str, dict[str, Any]], split: str,
                    group_column: str | None, versions: dict[str, int]) -> None:
    report.counts.update({f"rows_{s}": f["rows"] for s, f in by_split.items()})
    report.details.update(split=split, group_column=group_column, delta_versions=versions,
                          accuracy_by_split={s: f["accuracy"] for s, f in by_split.items()})
    # Every split's accuracy in the run's summary (the score job no longer counts them).
    report.metrics.update({f"{s}_accuracy": round(f["accuracy"], 6) for s, f in by_split.items()
                           if s != split and f["accuracy"] is not None})
    headline = by_split.get(split)
    if headline is None:
        report.warnings.append(f"no labelled prediction falls in the {split} split (evaluate.split); the figures "
                               f"of {', '.join(by_split)} are in gold.model_evaluations")
        return
    report.details["evaluation"] = headline
    k = headline["top_k"]["k"]
    for key, value in (("accuracy", headline["accuracy"]), ("macro_f1", headline["macro_f1"]),
                       (f"top_{k}_accuracy", headline["top_k"]["accuracy"]),
                       ("expected_calibration_error", headline["calibration"]["expected_calibration_error"])):
        if value is not None:
            report.metrics[f"{split}_{key}"] = round(value, 6)
    gap = (headline.get("groups") or {}).get("largest_gap")
    if gap:
        report.metrics[f"{split}_largest_group_gap"] = round(gap["value"], 6)


def _check_group_gap(report: RunReport, headline: dict[str, Any] | None, profile: Profile) -> None:
    limit = profile.quality.max_group_accuracy_gap
    gap = ((headline or {}).get("groups") or {}).get("largest_gap")
    if limit is not None and gap and gap["value"] > limit:
        report.flag("max_group_accuracy_gap",
                    f"accuracy differs by {gap['value']:.1%} between {profile.quality.group_column} groups "
                    f"{gap['best']!r} and {gap['worst']!r} on the {report.details['split']} split, above "
                    f"quality.max_group_accuracy_gap = {limit:.1%}", profile.quality.on_violation == "fail")

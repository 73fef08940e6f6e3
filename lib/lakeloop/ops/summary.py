"""What the lake holds, in a few lines a person reads: each table's rows and Delta version,
the quarantine reasons, the predictions per model version and their evaluation (gold.model_evaluations),
and the registered models.

    lakeloop show [--profile P] [--set k=v ...]          (what ./dev/demo.sh prints last)

Reads only; the command line is :mod:`lakeloop.cli.lake`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeloop.config import Profile
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.models import model_label
from lakeloop.registry import Registry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def lake_tables(profile: Profile) -> list[tuple[str, str]]:
    """(layer, name) of every table the profile's jobs write, in pipeline order."""
    table = profile.features.table
    return LakeLayout(profile.lake_root).tables(
        profile.ingest_tables.tables, feature_tables=[LakeLayout.source_name(table.source)] if table else [])


def _prediction_lines(df: "DataFrame", evaluated: set[tuple[str, int]]) -> list[str]:
    """Rows per model version; a version ``evaluated`` (a row in gold.model_evaluations) has its
    accuracy there, shown under that table; another one is pointed to the evaluate job."""
    per_model = df.groupBy("model_name", "model_version").count().orderBy("model_name", "model_version")
    lines = []
    for row in per_model.collect():
        pending = "" if (row["model_name"], row["model_version"]) in evaluated else \
            ", not evaluated yet (its accuracy: ./spark-submit.sh evaluate --model " \
            f"{row['model_name']}:{row['model_version']})"
        lines.append(f"  {'':<24} {row['count']:>6} by {row['model_name']}:{row['model_version']}{pending}")
    return lines


def _evaluation_lines(df: "DataFrame") -> list[str]:
    """The test-split figures of each evaluated version, with the largest gap between groups."""
    lines = []
    for row in df.where("split = 'test'").orderBy("model_name", "model_version").collect():
        gap = "" if row["largest_group_gap"] is None else f", largest group gap {row['largest_group_gap']:.1%}"
        lines.append(f"  {'':<24} {row['model_name']}:{row['model_version']} test: accuracy {row['accuracy']:.2%} "
                     f"({row['rows']} rows), macro-F1 {row['macro_f1']:.3f}{gap}")
    return lines


def _evaluated(spark: "SparkSession", lake: LakeLayout) -> set[tuple[str, int]]:
    """(model name, version) of every version with a row in gold.model_evaluations."""
    if not delta.is_delta_table(spark, lake.model_evaluations):
        return set()
    rows = delta.read_table(spark, lake.model_evaluations).select("model_name", "model_version").distinct().collect()
    return {(r["model_name"], r["model_version"]) for r in rows}


def _reason_lines(df: "DataFrame") -> list[str]:
    """Quarantined rows per reason: the reason class where the table has one, else the start of the message."""
    from pyspark.sql import functions as F

    reason = F.trim(F.regexp_extract("error", r"^([^:(;]+)", 1))
    if "reason" in df.columns:
        reason = F.coalesce(F.col("reason"), reason)
    return [f"  {'':<24} {row['count']:>6} x {row['reason']}"
            for row in df.groupBy(reason.alias("reason")).count().orderBy("reason").collect()]


def test_headline(metrics: dict) -> str:
    """A version's test figures in a few words: accuracy, micro-F1, or RMSE and R², whichever its task has."""
    accuracy, test = metrics.get("test_accuracy"), metrics.get("test") or {}
    if isinstance(accuracy, float):
        return f"test accuracy {accuracy:.2%}"
    if isinstance(test.get("micro_f1"), float):
        return f"test micro-F1 {test['micro_f1']:.3f}"
    if isinstance(test.get("rmse"), float):
        r2 = test.get("r2")
        return f"test RMSE {test['rmse']:.4g}" + (f", R² {r2:.3f}" if isinstance(r2, float) else "")
    return ""


def _model_lines(registry: Registry) -> list[str]:
    lines = []
    for model in registry.list_models():
        for number in registry.list_versions(model):
            metadata = registry.read_metadata(registry.resolve(model, number))
            metrics = metadata.get("metrics", {})
            shown = test_headline(metrics)
            parent = ((metadata.get("lineage") or {}).get("init_from") or {})
            if parent.get("model"):
                shown += f", from {parent['model']}:{parent['version']}"
            lines.append(f"  model {model}:{number:<12} {model_label(metadata)}  {shown}  {registry.root}/{model}/{number}")
    return lines


def show_lake(spark: "SparkSession", profile: Profile) -> str:
    """A short account of the lake: each table's rows and version, quarantine reasons,
    the predictions per model version, and the registered models with their test accuracy."""
    lake = LakeLayout(profile.lake_root)
    lines = [f"lake: {profile.lake_root}"]
    for layer, name in lake_tables(profile):
        uri = lake.table(layer, name)
        if not delta.is_delta_table(spark, uri):
            if layer != "quarantine":
                lines.append(f"  {layer + '.' + name:<24} (not written yet)")
            continue
        df = delta.read_table(spark, uri)
        version = delta.table_version(spark, uri)
        lines.append(f"  {layer + '.' + name:<24} {df.count():>6} rows  Delta v{version:<3} {uri}")
        if (layer, name) == ("gold", "predictions"):
            lines += _prediction_lines(df, _evaluated(spark, lake))
        if (layer, name) == ("gold", "model_evaluations"):
            lines += _evaluation_lines(df)
        if layer == "quarantine" and "error" in df.columns:
            lines += _reason_lines(df)
    return "\n".join(lines + _model_lines(Registry.for_profile(profile)))

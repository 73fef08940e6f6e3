"""What every scoring driver opens first: the input table pinned to one Delta version, its image
column, and the model pinned to one version (:class:`ScoringInput`, :func:`open_input`).

The batch driver (:mod:`lakeloop.scoring.job`) and the stream driver (:mod:`lakeloop.scoring.stream`)
share it; a Kafka input is opened by the stream driver (its topic has no Delta version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.config import Profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.preprocess import CLASSES_PROPERTY, SPEC_PROPERTY, PreprocessSpec
from lakeloop.registry import ModelVersion, Registry
from lakeloop.report import RunReport
from lakeloop.scoring.batch import INPUT_PIXELS, model_label, model_spec
from lakeloop.scoring.udf import check_table_columns, image_column, resolve_model
from lakeloop.splits import model_splits

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


def input_table_uri(profile: Profile, ref: str) -> str:
    """``features`` -> silver.features, ``images`` -> bronze.images, ``layer.name`` -> that lake
    table, else ``ref`` itself: a URI (the profile checked which of these ``score.input`` is)."""
    lake = LakeLayout(profile.lake_root)
    return {"features": lake.features, "images": lake.bronze_images}.get(ref) or lake.resolve_table(ref)


def _spec_warning(spark: "SparkSession", input_uri: str, metadata: Mapping[str, Any]) -> str | None:
    """A warning when a features table was preprocessed differently from what the model expects."""
    properties = delta.table_properties(spark, input_uri)
    if SPEC_PROPERTY not in properties:
        return None
    table_spec, wanted = PreprocessSpec.from_json(properties[SPEC_PROPERTY]), model_spec(metadata)
    geometry = ("height", "width", "channels", "resize", "storage")
    if all(getattr(table_spec, g) == getattr(wanted, g) for g in geometry):
        classes = properties.get(CLASSES_PROPERTY)
        classifier = metadata.get("task", "classification") == "classification"
        if classifier and classes and sorted(json.loads(classes)) != sorted(metadata["classes"]):
            return (f"{input_uri} lists classes {classes} but the model predicts {metadata['classes']}; "
                    f"accuracy compares label names")
        return None
    return (
        f"{input_uri} was preprocessed as {table_spec.height}x{table_spec.width}x{table_spec.channels} "
        f"({table_spec.resize}, stored as {table_spec.storage}) but model {model_label(metadata)} expects "
        f"{wanted.height}x{wanted.width}x{wanted.channels} ({wanted.resize}, stored as {wanted.storage}); rows of "
        f"the wrong size are quarantined and others may be prepared differently from training: score the raw "
        f"images with --input images"
    )


def warn_without_worker_reuse(spark: "SparkSession", report: RunReport) -> None:
    if spark.sparkContext.getConf().get("spark.python.worker.reuse", "true").lower() != "true":
        report.warnings.append("spark.python.worker.reuse is false: every task starts a Python worker and loads "
                               "the model again; remove that setting from the profile")


@dataclass
class ScoringInput:
    """The input table pinned to one version, its image column, and the model pinned to one version."""

    uri: str
    source: "DataFrame | None"  # None for a stream's input (a Kafka topic)
    column: str
    kind: str
    version: ModelVersion
    metadata: dict[str, Any]
    # (image_id, split): each row's split in the silver.features version the model trained on (lakeloop.splits)
    splits: "DataFrame | None"
    # bronze.images (image files with path and image_id): the storage settings that read the files
    # it holds by reference (a null content), else None
    references: dict[str, str] | None = None
    # the input's pinned Delta version and its commit time (None for a Kafka topic)
    input_commit: tuple[int, str] | None = None

    @property
    def task(self) -> str:
        return self.metadata.get("task", "classification")


def open_input(spark: "SparkSession", profile: Profile, registry: Registry, report: RunReport) -> ScoringInput:
    """Check the input table, pin it and the model, find the image column."""
    cfg = profile.score
    if cfg.input == "kafka":
        raise ConfigError("score.input is kafka: frames on a Kafka topic are scored as a stream; run score --stream "
                          "(with --trigger available_now it scores what the topic holds and stops)")
    input_uri = input_table_uri(profile, cfg.input)
    if not delta.is_delta_table(spark, input_uri):
        hint = {"features": "run build_features first", "images": "run ingest_images first"}.get(
            cfg.input, "check score.input")
        raise SourceError(f"score.input {cfg.input!r} -> {input_uri} is not a Delta table; {hint}")
    with report.timed("resolve_model"):
        version, metadata = resolve_model(registry, cfg.model)
    if metadata.get("input_kind") == "table":
        raise ConfigError(f"model {version.name}:{version.version} was trained on a table, not on images; score it "
                          f"with the profile that sets features.table (its rows go to gold.<table>_predictions)")
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}
    input_version, input_committed_at = delta.last_commit(spark, input_uri)
    source = delta.read_table(spark, input_uri, input_version)
    column, kind = image_column(source, cfg.input_column, "score.input_column")
    check_table_columns(source.columns, {**metadata, "name": version.name, "version": version.version},
                        f"score.input {input_uri}")
    if "image_id" not in source.columns:
        raise ConfigError(
            f"score.input {input_uri} has no image_id column (it has {', '.join(source.columns)}); "
            f"gold.predictions is keyed by it: add one (e.g. sha2(content, 256)) or score the table in a "
            f"notebook with lakeloop.score(df, ...)"
        )
    report.details["input"] = {"uri": input_uri, "delta_version": input_version, "committed_at": input_committed_at,
                               "column": column, "kind": kind}
    if kind == INPUT_PIXELS:
        warning = _spec_warning(spark, input_uri, metadata)
        if warning:
            report.warnings.append(warning)
    splits = None
    lake = LakeLayout(profile.lake_root)
    if delta.is_delta_table(spark, lake.features):
        # Not the input's split nor today's: after a features.split_seed change a row the model trained on
        # would be counted as test.
        splits, warning = model_splits(spark, lake.features, metadata)
        if warning:
            report.warnings.append(warning)
    # bronze.images' null contents are files held by reference, read from their paths.
    references = profile.hadoop_conf() if input_uri == lake.bronze_images and column == "content" else None
    return ScoringInput(input_uri, source, column, kind, version, metadata, splits, references,
                  (input_version, input_committed_at))


def this_version(version: ModelVersion) -> "Column":
    from pyspark.sql import functions as F

    return (F.col("model_name") == F.lit(version.name)) & (F.col("model_version") == F.lit(version.version))

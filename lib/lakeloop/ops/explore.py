"""Notebook helpers: the lake's tables, images and a model's results as frames and figures.

``notebooks/explore.ipynb`` uses these; any notebook can::

    from lakeloop import build_session, load_profile
    from lakeloop.ops import explore
    profile = load_profile("local"); spark = build_session(profile)
    explore.class_samples(spark, profile)                 # a figure: sample images per class
    explore.table_history(spark, explore.lake(profile).bronze_images)

Each reads pinned Delta versions through the same profile as the jobs, collects only what it
shows (a few dozen images, a few aggregate rows) and returns a pandas frame or a matplotlib
figure (:mod:`lakeloop.figures`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lakeloop import figures
from lakeloop.config import Profile
from lakeloop.errors import SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout, parse_model_ref
from lakeloop.registry import ModelVersion, Registry

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pyspark.sql import DataFrame, SparkSession


def lake(profile: Profile) -> LakeLayout:
    """Where the profile's lake keeps each table."""
    return LakeLayout(profile.lake_root)


def _read(spark: "SparkSession", uri: str, what: str) -> "DataFrame":
    if not delta.is_delta_table(spark, uri):
        raise SourceError(f"{uri} is not a Delta table yet; {what}")
    return delta.read_table(spark, uri)


def table_history(spark: "SparkSession", uri: str, limit: int = 20) -> "pd.DataFrame":
    """A Delta table's commits, newest first: version, time, operation, its metrics and the run's
    user metadata (time travel to any of them with :func:`table_at`)."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, uri).history(limit)
    frame = history.select("version", "timestamp", "operation", "operationMetrics").toPandas()
    frame["operationMetrics"] = frame["operationMetrics"].map(lambda m: dict(sorted((m or {}).items())))
    return frame


def table_at(spark: "SparkSession", uri: str, version: int) -> "DataFrame":
    """The table as it was at ``version`` (Delta time travel)."""
    return delta.read_table(spark, uri, version)


def class_balance(spark: "SparkSession", profile: Profile) -> "pd.DataFrame":
    """Rows of silver.features per class (rows) and split (columns)."""
    features = _read(spark, lake(profile).features, "run build_features first")
    frame = features.groupBy("label").pivot("split").count().toPandas().set_index("label").fillna(0).astype(int)
    return frame.sort_index(key=lambda labels: labels.map(lambda v: (len(str(v)), str(v))))


def _pixels(row: Any) -> Any:
    if len(row["pixels"]) != row["height"] * row["width"] * row["channels"]:
        return bytes(row["pixels"])  # features.preprocess.storage: encoded (an image file the grid decodes)
    return figures.pixels_array(row["pixels"], row["height"], row["width"], row["channels"])


def class_samples(spark: "SparkSession", profile: Profile, per_class: int = 6) -> "Figure":
    """A grid of preprocessed images from silver.features, ``per_class`` per class, titled by class."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    features = _read(spark, lake(profile).features, "run build_features first").where("label IS NOT NULL")
    ranked = features.withColumn("_n", F.row_number().over(Window.partitionBy("label").orderBy("image_id")))
    rows = ranked.where(F.col("_n") <= per_class).select("label", "pixels", "height", "width", "channels") \
        .orderBy("label").collect()
    return figures.image_grid([_pixels(r) for r in rows], [f"class {r['label']}" for r in rows], columns=per_class)


def quarantined(spark: "SparkSession", profile: Profile, limit: int = 12) -> "Figure":
    """A grid of the files ``quarantine.images`` holds (their stored bytes, where kept), titled by reason."""
    refused = _read(spark, lake(profile).quarantine_images, "nothing was quarantined (or ingest_images never ran)")
    rows = refused.select("path", "reason", "content").orderBy("path").limit(limit).collect()
    titles = [f"{r['reason']}\n{r['path'].rsplit('/', 1)[-1]}" for r in rows]
    return figures.image_grid([r["content"] for r in rows], titles, columns=6, size=1.6)


def resolve(profile: Profile, model: str | None = None) -> ModelVersion:
    """The version ``model`` (default ``evaluate.model``, else ``score.model``) names."""
    name, ref = parse_model_ref(model or profile.evaluate.model or profile.score.model)
    return Registry.for_profile(profile).resolve(name, ref)


def misclassified(spark: "SparkSession", profile: Profile, model: str | None = None, split: str = "test",
                  limit: int = 16) -> "Figure":
    """A grid of the ``split`` images the model version gets wrong, titled ``true -> predicted (score)``."""
    from pyspark.sql import functions as F

    version = resolve(profile, model)
    predictions = _read(spark, lake(profile).predictions, "run score first").where(
        (F.col("model_name") == version.name) & (F.col("model_version") == version.version)
        & (F.col("label") != F.col("true_label"))).select("image_id", F.col("label").alias("predicted"), "score")
    features = _read(spark, lake(profile).features, "run build_features first").where(F.col("split") == split)
    rows = features.join(predictions, "image_id").orderBy("image_id").limit(limit).collect()
    titles = [f"{r['label']} -> {r['predicted']} ({r['score']:.2f})" for r in rows]
    return figures.image_grid([_pixels(r) for r in rows], titles, columns=8)


def evaluation(spark: "SparkSession", profile: Profile, model: str | None = None,
               split: str | None = None) -> dict[str, Any]:
    """The figures ``gold.model_evaluations`` holds for a version and split (see the evaluate job)."""
    from pyspark.sql import functions as F

    version = resolve(profile, model)
    split = split or profile.evaluate.split
    rows = _read(spark, lake(profile).model_evaluations, "run the evaluate job first").where(
        (F.col("model_name") == version.name) & (F.col("model_version") == version.version)
        & (F.col("split") == split)).select("evaluation").collect()
    if not rows:
        raise SourceError(f"{lake(profile).model_evaluations} has no {split} figures for {version.name}:"
                          f"{version.version}; run the evaluate job for it")
    return json.loads(rows[0]["evaluation"])


def confusion_matrix(ev: dict[str, Any]) -> "Figure":
    """The confusion matrix of an :func:`evaluation`."""
    return figures.confusion_matrix(ev["confusion_matrix"], ev["classes"])


def group_accuracy(ev: dict[str, Any], column: str) -> "Figure":
    """Accuracy per group of an :func:`evaluation` (made with ``quality.group_column = column``)."""
    groups = ev.get("groups")
    if not groups:
        raise SourceError("this evaluation has no per-group figures; evaluate with quality.group_column set")
    return figures.group_accuracy(groups["groups"], groups["largest_gap"], column)


def lineage(spark: "SparkSession", profile: Profile, image_id: str | None = None, path: str | None = None,
            table: str | None = None, key: str | None = None) -> "pd.DataFrame":
    """Where one record is (``lakeloop lineage``'s answer as a frame, one row a place, the model
    versions whose training set holds it last): an image by ``image_id`` or ``path``, a table row by
    ``table`` and ``key`` (:mod:`lakeloop.ops.lineage`)."""
    import pandas as pd

    from lakeloop.ops.lineage import image_lineage, table_lineage

    found = table_lineage(spark, profile, table, key) if table is not None else \
        image_lineage(spark, profile, image_id=image_id, path=path)
    rows = [{"place": p.name, "rows": p.rows, "uri": p.uri} for p in found.places]
    rows += [{"place": f"model {m['model']}:{m['version']} ({', '.join(m['splits'])})", "rows": None,
              "uri": m["training_set"]} for m in found.models]
    return pd.DataFrame(rows, columns=["place", "rows", "uri"])

"""Features: bronze images (+ a joined table) -> Delta ``silver.features``.

``silver.features`` holds, per image: ``image_id``, ``label``, ``label_index``, ``split``
(train/validation/test, from a hash of ``image_id`` and ``features.split_seed``: the same
on every rerun), ``pixels`` (the preprocessed image as uint8 H x W x C bytes, or with
``features.preprocess.storage: encoded`` the image re-encoded at a bounded size; see
:mod:`lakeloop.preprocess`), the joined table columns, the preprocessing spec's key and
the bronze Delta version it was built from. The spec itself and the class list are table
properties (``lakeloop.preprocess``, ``lakeloop.classes``).

The Parquet training set Petastorm reads is made from this table by the training step
(:mod:`lakeloop.training.dataset`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

import pandas as pd  # module level: pandas UDF type hints resolve in this module's globals

from lakeloop.config import FeaturesConfig, Profile, TaskFault
from lakeloop.errors import ConfigError, SourceError
from lakeloop.features.quality import check_features_quality, features_quality
from lakeloop.io import delta
from lakeloop.io.batches import arrow_batch_settings
from lakeloop.io.lakefs import REFERENCED_IMAGE
from lakeloop.layout import LakeLayout
from lakeloop.preprocess import CLASSES_PROPERTY, IMAGE_TARGET_PROPERTY, SPEC_PROPERTY, PreprocessSpec
from lakeloop.report import RunReport
from lakeloop.tabular import TARGET_COLUMNS, task_target

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from lakeloop.io.lakefs import LakeFiles

PREPROCESS_SCHEMA = "pixels binary, error string"
# silver.features' record of its last complete build: the bronze version it read and its recipe.
BUILD_PROPERTY = "lakeloop.features_build"


def assign_split(image_id: "Column", seed: str, fractions: tuple[float, ...]) -> "Column":
    """train/validation/test from a hash of (seed, image_id): stable across reruns and machines."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.lit(seed), image_id), F.lit(1_000_000)) / F.lit(1_000_000.0)
    train, val = fractions[0], fractions[0] + fractions[1]
    return F.when(bucket < train, "train").when(bucket < val, "validation").otherwise("test")


def _preprocess_udf(spec_json: str, hadoop_conf: dict[str, str], fault: TaskFault | None = None):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(PREPROCESS_SCHEMA)
    def preprocess(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from lakeloop.faults import fail_if_chosen
        from lakeloop.io.lakefs import LakeFiles

        fail_if_chosen(fault, "build_features")
        spec = PreprocessSpec.from_json(spec_json)
        files = LakeFiles(hadoop_conf)
        for contents, paths, image_ids in batches:
            rows = [_pixels_or_error(c, p, i, spec, files) for c, p, i in zip(contents, paths, image_ids)]
            yield pd.DataFrame(rows, columns=["pixels", "error"])

    return preprocess


def _pixels_or_error(content: bytes | None, path: str, image_id: str, spec: PreprocessSpec,
                     files: "LakeFiles") -> tuple[bytes | None, str | None]:
    """One image's pixels, or why there are none. A null ``content`` is an image ingested by
    reference: read from ``path``, and refused when it is gone or its sha256 is no longer
    ``image_id``. Other read errors of the source are raised (the task is tried again), not taken
    for a bad image."""
    from lakeloop.errors import SourceChanged
    from lakeloop.preprocess import stored_image

    if content is None:
        try:
            content = files.read_verified(path, image_id, REFERENCED_IMAGE)
        except SourceChanged as exc:
            return None, str(exc)
    try:
        return stored_image(content, spec), None
    except Exception as exc:  # noqa: BLE001 - any decode failure is a quarantine reason
        return None, f"cannot preprocess image ({type(exc).__name__}: {exc})"


def to_features(
    bronze: "DataFrame",
    spec: PreprocessSpec,
    classes: list[str],
    split_seed: str,
    split_fractions: tuple[float, ...],
    source_version: int,
    run_id: str,
    fault: TaskFault | None = None,
    hadoop_conf: dict[str, str] | None = None,
) -> "DataFrame":
    """Bronze image rows -> feature rows (with ``error`` set where preprocessing failed); ``fault``:
    the reliability tests' injected task failure (:mod:`lakeloop.faults`); ``hadoop_conf``: the
    storage settings that reach the files bronze holds by reference (``profile.hadoop_conf()``)."""
    from pyspark.sql import functions as F

    class_index = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i))]) if classes else None
    preprocess = _preprocess_udf(spec.to_json(), dict(hadoop_conf or {}), fault)
    processed = bronze.withColumn("_pre", preprocess(F.col("content"), F.col("path"), F.col("image_id")))
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


def natural_order(label: str) -> tuple:
    """Sort key of a class name: whole numbers by value ("2" before "10"), then text."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def stable_classes(previous: list[str], labels: set[str]) -> list[str]:
    """The class list: ``previous`` (the one silver.features was built with) kept as it is, new
    labels appended in :func:`natural_order`. A class index, once given, never changes."""
    return [*previous, *sorted(set(labels) - set(previous), key=natural_order)]


def build_recipe(cfg: FeaturesConfig, spec: PreprocessSpec, task: str, join: dict | None) -> dict:
    """Everything a feature row depends on besides its own bronze row. While it stays the same,
    rows built once stay right, and a build only needs bronze's new rows."""
    return {"spec": spec.key, "split_seed": cfg.split_seed, "split_fractions": list(cfg.split_fractions),
            "task": task, "target": cfg.target, "label_delimiter": cfg.label_delimiter, "join": join}


def _last_build(spark: "SparkSession", lake: LakeLayout) -> dict:
    """What the last complete build recorded (bronze version, recipe), or ``{}``."""
    if not delta.is_delta_table(spark, lake.features):
        return {}
    return json.loads(delta.table_properties(spark, lake.features).get(BUILD_PROPERTY, "{}"))


def _bronze_to_build(spark: "SparkSession", lake: LakeLayout, recipe: dict, last: dict,
                     incremental: bool = True) -> tuple["DataFrame", int, dict, "DataFrame | None"]:
    """The bronze rows this build must preprocess, bronze's current version, how it chose them,
    and the ``image_id`` of rows bronze deleted since the last build (None: a full build).

    Incremental when the last complete build used the same recipe: only the rows bronze's
    change data feed records as added or updated (a relabel, a move) since the version that build
    read, and the rows it deleted (an image gone from a mirrored source). Otherwise, or when
    the feed cannot be read (turned on later, or its versions vacuumed), or ``incremental`` is
    false, every row.
    """
    from pyspark.sql import functions as F

    if not delta.is_delta_table(spark, lake.bronze_images):
        raise SourceError(f"{lake.bronze_images} is not a Delta table yet; run ingest_images first")
    version = delta.table_version(spark, lake.bronze_images)
    since, unreadable = last.get("bronze_version"), {}
    if not incremental:
        reason = "features.incremental is false"
    elif since is None:
        reason = "no earlier build of silver.features recorded what it read"
    elif last.get("recipe") != recipe:
        changed = sorted(k for k in {*recipe, *last.get("recipe", {})} if recipe.get(k) != last["recipe"].get(k))
        reason = f"the recipe changed since the last build ({', '.join(changed)})"
    elif since >= version:
        empty = delta.read_table(spark, lake.bronze_images, version).where(F.lit(False))
        return empty, version, {"mode": "incremental", "since_bronze_version": since, "new_rows": 0}, \
            empty.select("image_id")
    else:
        try:
            latest = delta.read_changes(spark, lake.bronze_images, since + 1, version, ["image_id"])
            kinds = {r["_change_type"]: r["count"]  # reads the feed whole: proves it readable
                     for r in latest.groupBy("_change_type").count().collect()}
            built = latest.where(F.col("_change_type") != "delete").drop("_change_type")
            deleted = latest.where(F.col("_change_type") == "delete").select("image_id")
            return built, version, {"mode": "incremental", "since_bronze_version": since,
                                    "new_rows": kinds.get("insert", 0), "updated_rows": kinds.get("update_postimage", 0),
                                    "deleted_rows": kinds.get("delete", 0)}, deleted
        except Exception as exc:  # noqa: BLE001 - a full build is always right; say why it was needed
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = (f"the change data feed of {lake.bronze_images} from version {since + 1} cannot be read "
                      f"({first_line[:300]}); every image was built again")
            unreadable = {"feed_unreadable": True}
    return delta.read_table(spark, lake.bronze_images, version), version, {"mode": "full", "reason": reason,
                                                                          **unreadable}, None


def _classes(spark: "SparkSession", bronze: "DataFrame", lake: LakeLayout) -> list[str]:
    """The class list: the one silver.features was built with, and the labels of ``bronze`` it lacks."""
    labels = {r.label for r in bronze.where("label IS NOT NULL").select("label").distinct().collect()}
    previous: list[str] = []
    if delta.is_delta_table(spark, lake.features):
        stored = delta.table_properties(spark, lake.features).get(CLASSES_PROPERTY)
        previous = list(json.loads(stored)) if stored else []
    return stable_classes(previous, labels)


def _label_list(spark: "SparkSession", features: "DataFrame", lake: LakeLayout) -> list[str]:
    """A multilabel image model's labels: the ones silver.features lists already, new ones appended."""
    from pyspark.sql import functions as F

    names = {r["c"] for r in features.where("error IS NULL").select(F.explode("labels").alias("c")).distinct()
             .collect()}
    previous: list[str] = []
    if delta.is_delta_table(spark, lake.features):
        properties = delta.table_properties(spark, lake.features)
        built = json.loads(properties.get(IMAGE_TARGET_PROPERTY, "{}"))
        if built.get("task") == "multilabel":
            previous = list(built["labels"])
    return stable_classes(previous, names)


def _join_source(spark: "SparkSession", cfg: FeaturesConfig, lake: LakeLayout) -> dict | None:
    """``features.join_table``'s URI and current version (the recipe names both), or None."""
    if not cfg.join_table:
        return None
    join_uri = lake.resolve_table(cfg.join_table)
    if not delta.is_delta_table(spark, join_uri):
        raise SourceError(f"features.join_table {join_uri} is not a Delta table; run ingest_tables first "
                          f"or unset features.join_table")
    return {"table": join_uri, "version": delta.table_version(spark, join_uri), "key": cfg.join_key,
            "columns": list(cfg.join_columns)}


def _write_features(spark: "SparkSession", features: "DataFrame", cfg: FeaturesConfig, spec: PreprocessSpec,
                    classes: list[str], task: str, lake: LakeLayout, built: dict, how: dict,
                    deleted: "DataFrame | None", report: RunReport) -> tuple[dict[str, int], int]:
    """Write the good rows into silver (appended when the build is incremental and bronze only
    gained rows, else MERGEd), the failed ones into quarantine, remove the rows of images bronze
    no longer holds (``deleted``, or on a full build every image not among ``features``), then set
    the table's properties, ``built`` (what this build read) among them: written last, so a build
    killed before it is redone from the same bronze version. Returns the write's metrics (with
    ``num_removed_rows``) and the number quarantined."""
    from pyspark.sql import functions as F

    since = how.get("since_bronze_version") if how["mode"] == "incremental" else None

    good = features.where("error IS NULL").drop("error")
    bad = features.where("error IS NOT NULL").select(
        "image_id", "path", "error", F.current_timestamp().alias("quarantined_at"),
        F.lit(report.run_id).alias("run_id"))
    target = [TARGET_COLUMNS[task]] if task != "classification" else []
    compare = ["label", "label_index", "split", "spec_key", *(cfg.join_columns if cfg.join_table else ()), *target]
    if since is not None and not how.get("updated_rows"):
        # Incremental: the rows are new to silver, built with the recipe of the rows already there,
        # but for those a build killed before its record may have written; those carry a later
        # source_version than the recorded one, which file statistics find without a full scan.
        metrics = delta.append_missing(spark, good, lake.features, ["image_id"], f"source_version > {since}")
    else:
        # add_columns: a features table built for one task gains the target column of another (and
        # a row rewritten for one task leaves another's target null). path: a moved file's new one.
        metrics = delta.merge_upsert(spark, good, lake.features, ["image_id"], [*compare, "path", "relative_path"],
                                     add_columns=True)
    metrics["num_removed_rows"] = _remove_deleted(spark, lake, deleted, features)
    bad_count = bad.count()
    if bad_count:
        delta.merge_insert_new(spark, bad, lake.quarantine_features, ["image_id"])
        changed = bad.where(F.col("error").startswith(REFERENCED_IMAGE)).count()
        if changed:
            report.warnings.append(
                f"{changed} image(s) ingested by reference are gone or changed since they were recorded, and were "
                f"not used; {lake.quarantine_features} says which (run ingest_images again to take new versions)")
    # A classifier's class list is kept through a run for another task, so its indices never shift.
    properties = {BUILD_PROPERTY: json.dumps(built, sort_keys=True), SPEC_PROPERTY: spec.to_json(),
                  IMAGE_TARGET_PROPERTY: json.dumps(
        {"task": task, "target": cfg.target if target else "label", "labels": classes if task == "multilabel" else []})}
    if task == "classification":
        properties[CLASSES_PROPERTY] = json.dumps(classes)
    delta.set_table_properties(spark, lake.features, properties)
    return metrics, bad_count


def _remove_deleted(spark: "SparkSession", lake: LakeLayout, deleted: "DataFrame | None",
                    built: "DataFrame") -> int:
    """Delete from silver.features and quarantine.features the images bronze deleted (``deleted``),
    or with None (a full build of every bronze row) those not among ``built``; the silver rows removed."""
    keys, absent = (built, True) if deleted is None else (deleted, False)
    removed = delta.delete_keys(spark, keys, lake.features, ["image_id"], absent=absent)
    delta.delete_keys(spark, keys, lake.quarantine_features, ["image_id"], absent=absent)
    return removed


def _quality(spark: "SparkSession", profile: Profile, lake: LakeLayout, version: int,
             report: RunReport) -> dict:
    """The quality figures of silver.features at ``version``, kept in the report's details."""
    from pyspark.sql import functions as F

    table = delta.read_table(spark, lake.features, version)
    task = profile.train.task
    if task != "classification":
        # Class counts are a classifier's; another task's rows count as labelled when they have a target.
        table = table.withColumn("label", F.when(F.col(TARGET_COLUMNS[task]).isNotNull(), F.lit(task)))
    group_column = profile.quality.group_column
    if group_column is not None and group_column not in table.columns:
        report.warnings.append(f"quality.group_column {group_column!r} is not a column of {lake.features} (it has "
                               f"{', '.join(table.columns)}): no per-group figures; add it to features.join_columns")
        group_column = None
    quality = report.details["quality"] = features_quality(table, group_column)
    return quality


def _preprocess_and_write(spark: "SparkSession", features: "DataFrame", cfg: FeaturesConfig, spec: PreprocessSpec,
                          classes: list[str], task: str, lake: LakeLayout, built: dict, how: dict,
                          deleted: "DataFrame | None", report: RunReport) -> tuple[int, int, dict[str, int], list[str]]:
    """Preprocess the chosen rows and write them, removing the rows of ``deleted`` images (nothing
    when bronze did not change since the last build); returns rows read, rows quarantined, the
    write's metrics and the class list."""
    from pyspark.sql import functions as F

    if how["mode"] == "incremental" and not (how.get("new_rows") or how.get("updated_rows") or
                                             how.get("deleted_rows")):
        return 0, 0, {}, _label_list(spark, features, lake) if task == "multilabel" else classes
    with report.timed("preprocess"):
        # Held: counted, then written by a MERGE, which would otherwise preprocess every row again.
        features = delta.held(features)
    try:
        with report.timed("preprocess"):
            stats = features.agg(F.count(F.lit(1)).alias("rows"), F.avg(F.length("pixels")).alias("bytes")).first()
            n_images = stats["rows"]
        if stats["bytes"] is not None:  # what features.preprocess.storage costs a row (pixels or encoded)
            report.details["stored_bytes_per_row"] = round(float(stats["bytes"]), 1)
        if task == "multilabel":
            classes = _label_list(spark, features, lake)
        with report.timed("write"):
            metrics, bad_count = _write_features(spark, features, cfg, spec, classes, task, lake, built, how, deleted,
                                                 report)
    finally:
        delta.release(features)
    return n_images, bad_count, metrics, classes


def build_features(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Build or update ``silver.features`` from the current ``bronze.images``.

    Only bronze's rows added since the last build are preprocessed, read from bronze's change
    data feed, while the recipe (spec, split, task, target, joined table and its version) is
    the one that build used; otherwise every row is, and rows whose image, label index, spec
    or joined columns are unchanged are not rewritten. A rerun on unchanged input commits
    nothing. Images that fail preprocessing go to ``quarantine.features``. Reads ``features.*``;
    the preprocessing workers get at most ``features.max_batch_bytes`` of image bytes at a time.
    ``details.build`` says which it was (``mode``: ``incremental`` or ``full``, and why).

    Raises
    ------
    SourceError
        bronze.images does not exist yet (run ingest_images first).
    ConfigError
        a join table without the configured columns.
    """
    cfg = profile.features
    report = report or RunReport.start("build_features")
    lake = LakeLayout(profile.lake_root)
    spec = PreprocessSpec.from_config(cfg.preprocess)
    task = profile.train.task
    with report.timed("read"):
        join = _join_source(spark, cfg, lake)
        recipe = build_recipe(cfg, spec, task, join)
        last = _last_build(spark, lake)
        bronze, source_version, how, deleted = _bronze_to_build(spark, lake, recipe, last, cfg.incremental)
        classes = _classes(spark, bronze, lake) if task == "classification" else []
    # a class index is a classifier's; multilabel's label list comes from the targets below
    report.details["build"] = how
    if how["mode"] == "full" and last.get("recipe") not in (None, recipe):
        # Rows are about to be rewritten with another recipe: a build killed halfway must not
        # leave the old record behind, or the next build would add to rows it no longer describes.
        delta.unset_table_property(spark, lake.features, BUILD_PROPERTY)
    if how.get("feed_unreadable"):
        report.warnings.append(f"build_features preprocessed every image: {how['reason']}")
    features = to_features(bronze, spec, classes, cfg.split_seed, cfg.split_fractions, source_version, report.run_id,
                           fault=profile.faults.fail_task, hadoop_conf=profile.hadoop_conf())
    if join:
        table = delta.read_table(spark, join["table"], join["version"])
        features = join_table_columns(features, table, cfg.join_key, cfg.join_columns)
    if task != "classification":
        features = features.withColumn(TARGET_COLUMNS[task], task_target(
            features, cfg.target, task, cfg.label_delimiter, "features.target",
            text_numbers=cfg.target == "label"))  # an image label is text: "3.25"
    report.details.update(bronze_version=source_version, task=task, preprocess=json.loads(spec.to_json()))
    built = {"bronze_version": source_version, "recipe": recipe}
    # Bronze's image bytes reach the preprocessing workers in batches of at most features.max_batch_bytes.
    with delta.scoped_conf(spark, arrow_batch_settings(None, cfg.max_batch_bytes)):
        n_images, bad_count, metrics, classes = _preprocess_and_write(spark, features, cfg, spec, classes, task,
                                                                      lake, built, how, deleted, report)
    report.details["classes"] = classes
    version = delta.table_version(spark, lake.features)
    with report.timed("quality"):
        quality = _quality(spark, profile, lake, version, report)
    split_counts = quality["rows_per_split"]
    unlabelled = quality["rows"] - quality["labelled"]
    inserted, updated = metrics.get("num_inserted_rows", 0), metrics.get("num_updated_rows", 0)
    report.counts.update(
        images=n_images,
        inserted=inserted,
        updated=updated,
        unchanged=n_images - bad_count - inserted - updated,
        quarantined=bad_count,
        removed=metrics.get("num_removed_rows", 0),
        **{f"split_{k}": v for k, v in sorted(split_counts.items())},
    )
    if unlabelled:
        report.counts["unlabelled"] = unlabelled
    check_features_quality(report, quality, profile.quality)
    report.details["features_version"] = version
    report.outputs.update(features=lake.features, quarantine=lake.quarantine_features)
    return report

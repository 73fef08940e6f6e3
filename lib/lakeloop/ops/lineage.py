"""Where one record is in the lake, and which model versions saw it (``lakeloop lineage``).

An image is found by its id (the SHA-256 of its bytes, ``image_id``) or by the path it was read
from; a table row by its table and key. The answer lists every place that holds it, one entry a
place: the bronze, quarantine and ledger tables, silver, each training-set split (plain Parquet
folders under ``_training_sets/``), gold's predictions, and the model versions whose training set
holds it (with the split: a version trained on it, or only validated or tested on it). Nothing is
written; each table is read at its current version.

What a record left in a table's time travel (older Delta versions until VACUUM) or inside model
weights is not listed: those are the limits of what the lake can show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from lakeloop.config import Profile
from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import LakeLayout, safe_uri
from lakeloop.registry import Registry

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The columns shown for a row found in each image table (those the table has).
_IMAGE_TABLES = (
    ("bronze.images", "bronze_images", ("path", "label", "ingested_at", "run_id")),
    ("quarantine.images", "quarantine_images", ("path", "reason", "quarantined_at", "run_id")),
    ("_ledger.images", "images_ledger", ("path", "outcome", "seen_at", "run_id")),
    ("quarantine.image_label_conflicts", "image_label_conflicts", ("paths", "labels", "found_at", "run_id")),
    ("silver.features", "features", ("path", "label", "split", "source_version", "run_id")),
    ("quarantine.features", "quarantine_features", ("path", "error", "run_id")),
    ("gold.predictions", "predictions", ("model_name", "model_version", "label", "split", "run_id")),
    ("quarantine.predictions", "quarantine_predictions", ("model_name", "model_version", "error", "run_id")),
)
_MAX_SHOWN = 20  # rows shown per place; the count is always complete


@dataclass
class Place:
    """One table or folder holding the record: its name, URI, how many rows, and some of them."""

    name: str
    uri: str
    rows: int
    shown: list[dict[str, Any]] = field(default_factory=list)
    # frame -> the condition selecting the record's rows in it (what ``lakeloop forget`` deletes)
    where_for: Any = field(default=None, repr=False, compare=False)

    @property
    def is_training_set(self) -> bool:
        return self.name.startswith("training set ")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "rows": self.rows, "shown": self.shown}


@dataclass
class Lineage:
    """Every place a record is, and the model versions whose training set holds it."""

    record: str
    places: list[Place] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    looked_in: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)  # an image: its ids (a path's, as the ledger has them)
    table_key: tuple[str, dict[str, str]] | None = None  # a table row: its table and key values

    @property
    def found(self) -> bool:
        """Whether any place holds the record."""
        return bool(self.places)

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.record, "places": [p.as_dict() for p in self.places], "models": self.models,
                "looked_in": self.looked_in}

    def text(self) -> str:
        """What a person reads: one line a place, then the model versions."""
        lines = [f"{self.record}: in {len(self.places)} place(s) of the {len(self.looked_in)} looked in"]
        for place in self.places:
            lines.append(f"  {place.name}: {place.rows} row(s)  ({safe_uri(place.uri)})")
            for row in place.shown:
                lines.append("    " + ", ".join(f"{k}={v}" for k, v in row.items()))
        if not self.places:
            lines.append("  nowhere: no table or training set of this lake holds it")
        lines.append(f"model versions whose training set holds it: {len(self.models)}")
        for model in self.models:
            lines.append(f"  {model['model']}:{model['version']} ({', '.join(model['splits'])}; "
                         f"training set {safe_uri(model['training_set'])})")
        return "\n".join(lines)


def _rows(frame: "DataFrame", where: "Column", show: Sequence[str]) -> tuple[int, list[dict[str, Any]]]:
    found = frame.where(where)
    columns = [c for c in show if c in frame.columns]
    rows = found.select(*columns).limit(_MAX_SHOWN).collect() if columns else []
    count = found.count()
    return count, [{k: (str(v) if v is not None and not isinstance(v, (int, float, str)) else v)
                    for k, v in r.asDict().items()} for r in rows]


def _find(lineage: Lineage, name: str, uri: str, frame: "DataFrame", where_for, show: Sequence[str]) -> bool:
    """Look for the record in ``frame`` (the place ``name`` at ``uri``); whether it is there."""
    lineage.looked_in.append(name)
    where = where_for(frame)
    if where is None:
        return False
    count, shown = _rows(frame, where, show)
    if count:
        lineage.places.append(Place(name, uri, count, shown, where_for))
    return bool(count)


def _look(spark: "SparkSession", lineage: Lineage, name: str, uri: str, where_for, show: Sequence[str]) -> None:
    """Look for the record in the Delta table ``uri`` (skipped if there is none)."""
    if delta.is_delta_table(spark, uri):
        _find(lineage, name, uri, delta.read_table(spark, uri), where_for, show)


def _training_sets(spark: "SparkSession", lineage: Lineage, lake: LakeLayout, files: LakeFiles,
                   where_for) -> dict[str, list[str]]:
    """The training-set splits holding the record: {set root: [split, ...]}."""
    held: dict[str, list[str]] = {}
    for name in files.list_dir(lake.training_sets):
        root = f"{lake.training_sets}/{name}"
        for split in files.list_dir(root):
            uri = f"{root}/{split}"
            if not files.exists(f"{uri}/_SUCCESS"):
                continue
            if _find(lineage, f"training set {name}/{split}", uri, spark.read.parquet(uri), where_for,
                     ("label_index",)):
                held.setdefault(root, []).append(split)
    return held


def _models(profile: Profile, held: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Each committed model version whose training set is one of ``held``, with the splits."""
    registry = Registry.for_profile(profile)
    found = []
    for name in registry.list_models():
        for number in registry.list_versions(name):
            version = registry.resolve(name, number)
            root = (registry.read_metadata(version).get("features") or {}).get("training_set")
            if root in held:
                found.append({"model": name, "version": number, "training_set": root, "splits": sorted(held[root])})
    return found


def image_lineage(spark: "SparkSession", profile: Profile, image_id: str | None = None,
                  path: str | None = None) -> Lineage:
    """Every place of the lake holding the image ``image_id`` (its bytes' SHA-256) or the file read
    from ``path``, and the model versions whose training set holds it.

    Raises
    ------
    ConfigError
        neither or both of ``image_id`` and ``path`` given.
    """
    from pyspark.sql import functions as F

    if (image_id is None) == (path is None):
        raise ConfigError("lineage of an image: give its id (--image-id, the SHA-256 of its bytes) or the path "
                          "it was read from (--path), one of them")
    lake = LakeLayout(profile.lake_root)
    if path is not None:
        # The ids the path was read as: the ledger records each file's id (or, refused, its bytes' hash).
        ledger = delta.read_table(spark, lake.images_ledger) if delta.is_delta_table(spark, lake.images_ledger) \
            else None
        ids = sorted({r[0] for r in ledger.where(F.col("path") == path).select(
            F.coalesce("image_id", "content_sha256")).collect() if r[0]}) if ledger is not None else []
    else:
        ids = [image_id.strip().lower()]
    record = f"image {image_id}" if image_id else f"image file {path}" + (f" (id {', '.join(ids)})" if ids else "")
    lineage = Lineage(record, image_ids=list(ids))

    def where_for(frame: "DataFrame") -> "Column | None":
        conditions = []
        for column in ("image_id", "content_sha256"):
            if column in frame.columns and ids:
                conditions.append(F.col(column).isin(ids))
        if path is not None and "path" in frame.columns:
            conditions.append(F.col("path") == path)
        if not conditions:
            return None
        out = conditions[0]
        for condition in conditions[1:]:
            out = out | condition
        return out

    for name, attribute, show in _IMAGE_TABLES:
        _look(spark, lineage, name, getattr(lake, attribute), where_for, show)
    held = _training_sets(spark, lineage, lake, LakeFiles(profile.hadoop_conf()), where_for)
    lineage.models = _models(profile, held)
    return lineage


def _key_condition(frame: "DataFrame", key: dict[str, str]) -> "Column | None":
    from pyspark.sql import functions as F

    if not all(k in frame.columns for k in key):
        return None
    out = None
    for column, value in key.items():
        condition = F.col(f"`{column}`").cast("string") == value
        out = condition if out is None else out & condition
    return out


def parse_key(text: str, keys: Sequence[str], table: str) -> dict[str, str]:
    """``K`` (a table with one key column) or ``col=value,col=value`` as {column: value}.

    Raises
    ------
    ConfigError
        the text does not name every key column of the table, or names another column.
    """
    if "=" not in text:
        if len(keys) != 1:
            raise ConfigError(f"table {table} has the key columns {', '.join(keys)}: give each, e.g. "
                              f"--key {','.join(f'{k}=...' for k in keys)}")
        return {keys[0]: text}
    pairs = dict(part.split("=", 1) for part in text.split(",") if part)
    if sorted(pairs) != sorted(keys):
        raise ConfigError(f"--key {text!r} names {', '.join(sorted(pairs))}; table {table}'s key columns are "
                          f"{', '.join(keys)}: give each once, e.g. --key {','.join(f'{k}=...' for k in keys)}")
    return pairs


def table_lineage(spark: "SparkSession", profile: Profile, table: str, key: str) -> Lineage:
    """Every place of the lake holding the row of ingested table ``table`` with key ``key`` (see
    :func:`parse_key`): bronze, its features and predictions, the training sets, and quarantined
    records whose raw text holds every key value as a whole field (a refused record has no typed
    key to match: these are candidates, a duplicate of the key among them).

    Raises
    ------
    ConfigError
        ``table`` is not one of the profile's ``ingest_tables.tables``, or the key does not fit it.
    """
    from pyspark.sql import functions as F

    tables = profile.ingest_tables.tables
    if table not in tables:
        raise ConfigError(f"lineage: table {table!r} is not in ingest_tables.tables of profile {profile.name} "
                          f"(it has: {', '.join(sorted(tables)) or 'none'}); name one of them")
    values = parse_key(key, tables[table].keys, table)
    lake = LakeLayout(profile.lake_root)
    lineage = Lineage(f"table {table} row {', '.join(f'{k}={v}' for k, v in values.items())}",
                      table_key=(table, values))

    def keyed(frame: "DataFrame") -> "Column | None":
        return _key_condition(frame, values)

    def mentioned(frame: "DataFrame") -> "Column | None":
        # A refused record has no typed key: its raw text must hold each key value as a whole field
        # (between separators such as , ; : " or a line's ends), so key 5 does not match 15 or 0.5.
        if "raw" not in frame.columns:
            return None
        out = None
        for value in values.values():
            condition = F.col("raw").rlike(rf"(^|[^A-Za-z0-9_.\-]){re.escape(value)}($|[^A-Za-z0-9_.\-])")
            out = condition if out is None else out & condition
        return out

    _look(spark, lineage, f"bronze.{table}", lake.bronze_table(table), keyed, ("_run_id", "_ingested_at"))
    _look(spark, lineage, f"quarantine.{table} (raw text holds the key)", lake.quarantine_table(table),
          mentioned, ("source", "error", "run_id"))
    _look(spark, lineage, f"silver.{table}_features", lake.table_features(table), keyed, ("split", "run_id"))
    _look(spark, lineage, f"gold.{table}_predictions", lake.table_predictions(table), keyed,
          ("model_name", "model_version", "run_id"))
    held = _training_sets(spark, lineage, lake, LakeFiles(profile.hadoop_conf()), keyed)
    lineage.models = _models(profile, held)
    return lineage

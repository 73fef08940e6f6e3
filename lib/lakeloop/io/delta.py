"""Thin Delta I/O: create-if-missing, idempotent MERGEs, reading a table's version, table properties.

Everything that writes to a lake table goes through MERGE on a key, so a rerun (after
success or after a crash) adds nothing twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


def is_delta_table(spark: "SparkSession", uri: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, uri))


def ensure_table(spark: "SparkSession", uri: str, schema: "StructType", comment: str | None = None) -> None:
    """Create an empty Delta table at ``uri`` with ``schema`` unless one is there."""
    from delta.tables import DeltaTable

    if is_delta_table(spark, uri):
        return
    builder = DeltaTable.createIfNotExists(spark).location(uri).addColumns(schema)
    if comment:
        builder = builder.comment(comment)
    builder.execute()


def read_table(spark: "SparkSession", uri: str, version: int | None = None) -> "DataFrame":
    """The Delta table at ``uri``, at ``version`` if given.

    Pin a version whenever a DataFrame is used again after the same table is written:
    a recomputed plan must not see the job's own later commits.
    """
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(uri)


def read_pinned_or_empty(spark: "SparkSession", uri: str, schema: "StructType") -> "DataFrame":
    """The table at ``uri`` pinned to its current version, or an empty DataFrame of ``schema``."""
    if is_delta_table(spark, uri):
        return read_table(spark, uri, table_version(spark, uri))
    return spark.createDataFrame([], schema)


def table_version(spark: "SparkSession", uri: str) -> int:
    """Current version of the Delta table at ``uri``."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, uri).history(1).select("version").first()[0])


def table_properties(spark: "SparkSession", uri: str) -> dict[str, str]:
    """The Delta table's properties (``TBLPROPERTIES``)."""
    from delta.tables import DeltaTable

    return dict(DeltaTable.forPath(spark, uri).detail().select("properties").first()["properties"] or {})


def set_table_properties(spark: "SparkSession", uri: str, properties: dict[str, str]) -> None:
    """Set table properties, only those that differ, so a rerun commits nothing."""
    current = table_properties(spark, uri)
    changed = {k: v for k, v in properties.items() if current.get(k) != v}
    if changed:
        assignments = ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ({assignments})")


def _key_condition(keys: Sequence[str]) -> str:
    # <=> so that a null in a key column matches itself (callers keep null keys out anyway).
    return " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)


def _metrics(result: "DataFrame | None") -> dict[str, int]:
    if result is None:
        return {}
    row = result.first()
    return {k: int(v) for k, v in row.asDict().items()} if row else {}


def _pending_rows(spark: "SparkSession", df: "DataFrame", uri: str, columns: Sequence[str]) -> "DataFrame":
    """Rows of ``df`` with no row in the table equal on all ``columns`` (null-safe)."""
    from pyspark.sql import functions as F

    target = read_table(spark, uri, table_version(spark, uri)).select(*columns)
    condition = F.expr(" AND ".join(f"s.`{c}` <=> t.`{c}`" for c in columns))
    return df.alias("s").join(target.alias("t"), on=condition, how="left_anti")


def _last_commit_rows(spark: "SparkSession", uri: str) -> int:
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, uri).history(1).select("operationMetrics").first()[0] or {}
    return int(metrics.get("numOutputRows", 0))


_NOTHING = {"num_affected_rows": 0, "num_updated_rows": 0, "num_deleted_rows": 0, "num_inserted_rows": 0}


def merge_insert_new(spark: "SparkSession", df: "DataFrame", uri: str, keys: Sequence[str]) -> dict[str, int]:
    """Insert the rows of ``df`` whose key is not in the table yet; create the table if needed.

    ``df`` must hold at most one row per key. Returns Delta's MERGE metrics. When no row
    is new, nothing is committed (Delta would otherwise record an empty MERGE).
    """
    from delta.tables import DeltaTable

    if not is_delta_table(spark, uri):
        # No table yet: the first commit creates it with all rows at once, atomically (a
        # crash before it leaves no table; after it, a rerun MERGEs against it).
        df.write.format("delta").mode("errorifexists").save(uri)
        return {**_NOTHING, "num_inserted_rows": _last_commit_rows(spark, uri)}
    if _pending_rows(spark, df, uri, keys).isEmpty():
        return dict(_NOTHING)
    merge = (
        DeltaTable.forPath(spark, uri)
        .alias("t")
        .merge(df.alias("s"), _key_condition(keys))
        .whenNotMatchedInsertAll()
    )
    return _metrics(merge.execute())


def merge_upsert(
    spark: "SparkSession",
    df: "DataFrame",
    uri: str,
    keys: Sequence[str],
    compare_columns: Sequence[str],
    evolve_schema: bool = False,
) -> dict[str, int]:
    """Update rows whose key exists and whose values changed; insert the rest.

    Unchanged rows are left alone, and when no row is new or changed nothing is committed,
    so a rerun on the same input leaves the table's version as it was.
    With ``evolve_schema`` new source columns are added to the table (Delta's
    ``withSchemaEvolution``).
    """
    from delta.tables import DeltaTable

    ensure_table(spark, uri, df.schema)
    table_columns = set(read_table(spark, uri).columns)
    known = [c for c in compare_columns if c in table_columns]
    new_columns = evolve_schema and bool(set(df.columns) - table_columns)
    if not new_columns and _pending_rows(spark, df, uri, [*keys, *known]).isEmpty():
        return dict(_NOTHING)
    # Columns the table gains in this MERGE count as changed for every matched row.
    changed = "true" if new_columns else (" OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in known) or "false")
    merge = DeltaTable.forPath(spark, uri).alias("t").merge(df.alias("s"), _key_condition(keys))
    if evolve_schema:
        merge = merge.withSchemaEvolution()
    merge = merge.whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll()
    return _metrics(merge.execute())

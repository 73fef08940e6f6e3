"""Thin Delta I/O: create-if-missing, idempotent MERGEs, reading a table's version, table properties.

Everything that writes to a lake table goes through MERGE on a key, so a rerun (after
success or after a crash) adds nothing twice.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple, Sequence

from lakeloop.errors import ConcurrentWriteConflict

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

# Table properties that make Delta record which rows each commit adds (its change data feed),
# so a later step can read only those: bronze.images has it, for incremental build_features.
CHANGE_FEED_ON = {"delta.enableChangeDataFeed": "true"}

_PROTOCOL_KEYS = {"delta.minReaderVersion", "delta.minWriterVersion"}
_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


class Txn(NamedTuple):
    """An idempotent write's identity (Delta's ``txnAppId`` / ``txnVersion``): the table records the
    highest ``version`` committed for ``app_id``, and skips a write of the same or a lower one."""

    app_id: str
    version: int


# Delta's session settings for idempotent MERGE/UPDATE/DELETE (writers take txnAppId/txnVersion options).
_TXN_CONF = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")


@contextmanager
def scoped_conf(spark: "SparkSession", settings: Mapping[str, str]) -> Iterator[None]:
    """Set runtime Spark settings for the block, then restore what was there (or unset)."""
    before = {key: spark.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, str(value))
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# Delta's commit conflicts (io.delta.exceptions.*): another writer committed first, and what this
# write read is no longer the table. Delta committed nothing of it; a rerun starts from the new table.
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
              "ProtocolChangedException")
_CONFLICT_IN_TEXT = re.compile(r"io\.delta\.exceptions\.(" + "|".join(_CONFLICTS) + r")\b")


def conflict_class(exc: BaseException) -> str | None:
    """The name of Delta's commit-conflict exception ``exc`` came from, or None.

    delta-spark 4.4 (the current stack) raises them as its own Python classes
    (``delta.exceptions.ConcurrentAppendException``, ...),
    whose text names only the error class (``[DELTA_CONCURRENT_APPEND...]``); on delta-spark 4.0
    PySpark hands them over as ``UnknownException`` or ``Py4JJavaError`` naming the JVM class."""
    try:
        import delta.exceptions as delta_exceptions
    except ImportError:  # no Delta Python package: only the JVM class name can tell
        delta_exceptions = None
    # By each class: delta-spark 4.4's ConcurrentAppendException and its siblings do not derive from
    # its DeltaConcurrentModificationException.
    classes = tuple(getattr(delta_exceptions, name) for name in (*_CONFLICTS, "DeltaConcurrentModificationException")
                    if hasattr(delta_exceptions, name))
    if classes and isinstance(exc, classes):
        return type(exc).__name__
    java = getattr(exc, "java_exception", None)
    text = str(java.getClass().getName()) if java is not None else str(exc)
    found = _CONFLICT_IN_TEXT.search(text)
    return found.group(1) if found else None


@contextmanager
def _conflicts_named(uri: str) -> Iterator[None]:
    """Delta's commit conflicts inside the block, raised again as :class:`ConcurrentWriteConflict`
    naming the table and what to do."""
    try:
        yield
    except Exception as exc:
        name = conflict_class(exc)
        if name is None:
            raise
        raise ConcurrentWriteConflict(
            f"another run committed to {uri} while this run wrote to it, so Delta refused this run's commit "
            f"({name}); nothing of it was written. Run the job again: it takes only what is still missing"
        ) from exc


def _idempotent(spark: "SparkSession", txn: Txn | None):
    """Delta commands inside the block carry ``txn`` (nothing when ``None``); the settings are
    put back afterwards, so no later command of the session is skipped by mistake."""
    return scoped_conf(spark, {} if txn is None else {_TXN_CONF[0]: txn.app_id, _TXN_CONF[1]: str(txn.version)})


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


def read_changes(spark: "SparkSession", uri: str, start: int, end: int, keys: Sequence[str]) -> "DataFrame":
    """The last change versions ``start``..``end`` of the table at ``uri`` made to each key, from
    Delta's change data feed: one row per key with the table's own columns (as the change left the
    row; a deleted row as it was) and ``_change_type`` (``insert``, ``update_postimage`` or ``delete``).

    Needs ``delta.enableChangeDataFeed`` on the table from ``start`` on; Delta raises (when the
    rows are read, not here) if it was off, or if those versions' files or log are gone.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", start)
               .option("endingVersion", end).load(uri)).where(F.col("_change_type") != "update_preimage")
    # A MERGE changes a row once a commit, so a key's last commit holds its last change.
    last = Window.partitionBy(*keys).orderBy(F.col("_commit_version").desc())
    return changes.withColumn("_n", F.row_number().over(last)).where("_n = 1").drop(
        "_n", "_commit_version", "_commit_timestamp")


def read_pinned_or_empty(spark: "SparkSession", uri: str, schema: "StructType") -> "DataFrame":
    """The table at ``uri`` pinned to its current version, or an empty DataFrame of ``schema``."""
    if is_delta_table(spark, uri):
        return read_table(spark, uri, table_version(spark, uri))
    return spark.createDataFrame([], schema)


def table_version(spark: "SparkSession", uri: str) -> int:
    """Current version of the Delta table at ``uri``."""
    return last_commit(spark, uri)[0]


def last_commit(spark: "SparkSession", uri: str) -> tuple[int, str]:
    """The Delta table's current version and when it was committed (ISO 8601): together they name
    one state of the table, even across a table dropped and made again (its versions start over).

    Read from the snapshot Delta brings up to date to open the table (``DeltaTable.forPath`` loads
    it as a DataFrame, which lists the log for new commits): 0.01 s. ``history(1)`` gives the same
    two values through a Spark query of its own, 0.2-0.5 s a call and 2 s the first in a JVM (jobs
    ask a few times each); it is the fallback should Delta's classes change.
    """
    from delta.tables import DeltaTable
    from py4j.protocol import Py4JError

    table = DeltaTable.forPath(spark, uri)
    try:
        snapshot = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri) \
            .unsafeVolatileSnapshot()
        version, millis = int(snapshot.version()), int(snapshot.timestamp())
    except (Py4JError, AttributeError, TypeError):
        row = table.history(1).select("version", "timestamp").first()
        return int(row["version"]), row["timestamp"].isoformat()
    # As history's timestamp comes to Python: a naive datetime in this process's time zone.
    return version, datetime.fromtimestamp(millis // 1000).replace(microsecond=millis % 1000 * 1000).isoformat()


def commit_state(spark: "SparkSession", uri: str) -> dict[str, Any] | None:
    """The table's last commit as a run records it (``delta_version``, ``committed_at``: see
    :func:`last_commit`), or None when there is no Delta table at ``uri``."""
    if not is_delta_table(spark, uri):
        return None
    version, committed_at = last_commit(spark, uri)
    return {"delta_version": version, "committed_at": committed_at}


def held(df: "DataFrame", on_disk: bool = False) -> "DataFrame":
    """``df`` computed now and kept on the executors as rows (memory, then local disk; with
    ``on_disk`` on local disk alone), with its plan cut: for a frame that is counted and then
    written by one or more MERGEs. Rows carrying file bytes (image ingestion) are held on disk: in
    the executors' heap, a run of camera photos leaves too little of it to the Parquet writers
    (whose buffers Spark's memory manager does not count) and the JVM runs out of memory.

    Delta's MERGE plans its source anew and does not find it in Spark's cache, so a
    ``persist()``-ed source is computed again inside the MERGE, its whole plan: a score run's
    MERGE of 500 new rows into a 100,000-row gold ran the model over all 100,000 input rows again
    (8.6 s of an 18 s run; held, 1.5 s). The price: an executor lost between this and the writes
    fails the run (Spark's ``CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND``) instead of computing the rows
    again; every write here is an idempotent MERGE, so the next run finishes the work. Free the
    rows with :func:`release`.

    The rows keep the partitions of the plan's shuffles (``spark.sql.shuffle.partitions``): adaptive
    execution would merge a small input's into one, and a UDF after the shuffle (the model scoring
    the pending rows) would then run in one task on one core, as ``persist()`` never made it.
    """
    from pyspark import StorageLevel

    with scoped_conf(df.sparkSession, {"spark.sql.adaptive.coalescePartitions.enabled": "false"}):
        return df.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY if on_disk else None)


def release(df: "DataFrame") -> None:
    """Drop the rows :func:`held` keeps (``df`` cannot be read afterwards); unpersist another frame."""
    plan = df._jdf.logicalPlan()
    # The rows of a local checkpoint are the checkpointed RDD's cached blocks: unpersisting it frees
    # them now rather than when the JVM's garbage collector next runs Spark's cleaner.
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)
    else:
        df.unpersist()


def table_properties(spark: "SparkSession", uri: str) -> dict[str, str]:
    """The Delta table's properties (``TBLPROPERTIES``), without the protocol's entries.

    ``SHOW TBLPROPERTIES`` reads only the table's metadata; ``DeltaTable.detail()`` would
    also total the size of every file, which after each commit costs a Spark job (about 2 s
    on 2 cores, measured: 0.05 s this way).
    """
    rows = spark.sql(f"SHOW TBLPROPERTIES delta.{_q(uri)}").collect()
    return {r.key: r.value for r in rows if r.key not in _PROTOCOL_KEYS and not r.key.startswith("delta.feature.")}


def set_table_properties(spark: "SparkSession", uri: str, properties: dict[str, str]) -> None:
    """Set table properties, only those that differ, so a rerun commits nothing."""
    current = table_properties(spark, uri)
    changed = {k: v for k, v in properties.items() if current.get(k) != v}
    if changed:
        def literal(text: str) -> str:  # a SQL string literal: backslashes and quotes escaped
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        assignments = ", ".join(f"{literal(k)} = {literal(v)}" for k, v in changed.items())
        with _conflicts_named(uri):
            spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ({assignments})")


def unset_table_property(spark: "SparkSession", uri: str, key: str) -> None:
    """Remove a table property (one commit if the table has it, none otherwise)."""
    if key in table_properties(spark, uri):
        spark.sql(f"ALTER TABLE delta.{_q(uri)} UNSET TBLPROPERTIES IF EXISTS ('{key}')")


def _q(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _key_condition(keys: Sequence[str]) -> str:
    # <=> so that a null in a key column matches itself (callers keep null keys out anyway).
    return " AND ".join(f"t.{_q(k)} <=> s.{_q(k)}" for k in keys)


def _metrics(result: "DataFrame | None") -> dict[str, int]:
    if result is None:
        return {}
    row = result.first()
    return {k: int(v) for k, v in row.asDict().items()} if row else {}


def _pending_rows(spark: "SparkSession", df: "DataFrame", uri: str, columns: Sequence[str],
                  where: str | None = None) -> "DataFrame":
    """Rows of ``df`` with no row in the table (only its rows matching ``where``, if given) equal
    on all ``columns`` (null-safe)."""
    from pyspark.sql import functions as F

    target = read_table(spark, uri, table_version(spark, uri))
    target = (target.where(where) if where else target).select(*columns)
    condition = F.expr(" AND ".join(f"s.{_q(c)} <=> t.{_q(c)}" for c in columns))
    return df.alias("s").join(target.alias("t"), on=condition, how="left_anti")


def _last_commit_rows(spark: "SparkSession", uri: str) -> int:
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, uri).history(1).select("operationMetrics").first()[0] or {}
    return int(metrics.get("numOutputRows", 0))


_NOTHING = {"num_affected_rows": 0, "num_updated_rows": 0, "num_deleted_rows": 0, "num_inserted_rows": 0}


def _create_with(spark: "SparkSession", df: "DataFrame", uri: str,
                 properties: dict[str, str] | None = None, txn: Txn | None = None) -> dict[str, int]:
    # No table yet: the first commit creates it with all rows at once, atomically (a crash
    # before it leaves no table; after it, a rerun MERGEs against it). Options named
    # ``delta.*`` become the new table's properties in that same commit.
    options = dict(properties or {})
    if txn is not None:
        options.update(txnAppId=txn.app_id, txnVersion=str(txn.version))
    try:
        with _conflicts_named(uri):
            df.write.format("delta").mode("errorifexists").options(**options).save(uri)
    except Exception as exc:
        # Another run created the table between this run's look and its write: the same race
        # as a lost commit, and the same remedy (a rerun MERGEs against the table now there).
        if "DELTA_PATH_EXISTS" not in _error_condition(exc):
            raise
        raise ConcurrentWriteConflict(
            f"another run committed to {uri} first, creating the table this run was about to create, so Delta "
            f"refused this run's commit (DELTA_PATH_EXISTS); nothing of it was written. Run the job again: it takes only what is "
            f"still missing"
        ) from exc
    return {**_NOTHING, "num_inserted_rows": _last_commit_rows(spark, uri)}


def _error_condition(exc: BaseException) -> str:
    """Spark's error condition of ``exc`` (``DELTA_PATH_EXISTS``, ...), or its text when it has none."""
    for getter in ("getCondition", "getErrorClass"):
        method = getattr(exc, getter, None)
        if method is not None:
            try:
                found = method()
            except Exception:  # noqa: BLE001 - an exception without a JVM side
                found = None
            if found:
                return str(found)
    return str(exc)


def add_missing_columns(spark: "SparkSession", uri: str, schema: "StructType") -> list[str]:
    """Add the columns of ``schema`` the table at ``uri`` lacks (null in its existing rows), so a
    table written by an earlier lakeloop takes rows with columns added since; returns their names."""
    current = {f.name.lower() for f in read_table(spark, uri).schema.fields}
    new = [f for f in schema.fields if f.name.lower() not in current]
    if new:
        columns = ", ".join(f"{_q(f.name)} {f.dataType.simpleString()}" for f in new)
        spark.sql(f"ALTER TABLE delta.{_q(uri)} ADD COLUMNS ({columns})")
    return [f.name for f in new]


def _with_table_columns(spark: "SparkSession", df: "DataFrame", uri: str) -> "DataFrame":
    """``df``'s columns added to the table (:func:`add_missing_columns`), and the table's other columns
    added to ``df`` as nulls: a MERGE of ``*`` then needs no schema evolution either way."""
    from pyspark.sql import functions as F

    add_missing_columns(spark, uri, df.schema)
    present = {c.lower() for c in df.columns}
    return df.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in read_table(spark, uri).schema.fields
                            if f.name.lower() not in present])


def merge_insert_new(spark: "SparkSession", df: "DataFrame", uri: str, keys: Sequence[str],
                     add_columns: bool = False, properties: dict[str, str] | None = None,
                     txn: Txn | None = None) -> dict[str, int]:
    """Insert the rows of ``df`` whose key is not in the table yet; create the table if needed.

    ``df`` must hold at most one row per key. Returns Delta's MERGE metrics. When no row
    is new, nothing is committed (Delta would otherwise record an empty MERGE). With
    ``add_columns`` columns of ``df`` the table lacks are added first, and columns the table
    has but ``df`` lacks are inserted as nulls (rows of a model of another task in one table).
    ``properties`` (``delta.*`` table settings) are set when the table is created, and on an
    existing table that lacks them before its rows are merged.

    With ``txn`` the write is idempotent by Delta's transaction identifiers instead (a streaming
    micro-batch: ``txn`` is the query and the batch): no check for new rows first, and when the
    table has already committed ``txn`` Delta skips the MERGE, commits nothing and this returns
    ``{"skipped_by_txn": 1}``. Column and property changes are made before, outside ``txn``.
    """
    from delta.tables import DeltaTable

    if not is_delta_table(spark, uri):
        return _create_with(spark, df, uri, properties, txn)
    if properties:
        set_table_properties(spark, uri, properties)
    if add_columns:
        df = _with_table_columns(spark, df, uri)
    if txn is None and _pending_rows(spark, df, uri, keys).isEmpty():
        return dict(_NOTHING)
    merge = (
        DeltaTable.forPath(spark, uri)
        .alias("t")
        .merge(df.alias("s"), _key_condition(keys))
        .whenNotMatchedInsertAll()
    )
    with _idempotent(spark, txn), _conflicts_named(uri):
        metrics = _metrics(merge.execute())
    # A MERGE that Delta skips for its transaction identifier returns no metrics row.
    return {**_NOTHING, "skipped_by_txn": 1} if txn is not None and not metrics else metrics


def append_missing(spark: "SparkSession", df: "DataFrame", uri: str, keys: Sequence[str],
                   recent: str) -> dict[str, int]:
    """Append the rows of ``df`` whose key is not among the table's rows matching ``recent``.

    For rows known to be new except for those an interrupted earlier run may have written:
    ``recent`` (e.g. ``source_version > 41``) selects where such rows can be, and Delta skips
    every file whose column statistics rule it out, so the check reads a few recent files
    instead of the whole table the way a MERGE does. Columns are aligned as with
    ``add_columns`` in :func:`merge_insert_new`. Commits nothing when no row is missing.
    """
    if not is_delta_table(spark, uri):
        return _create_with(spark, df, uri)
    missing = _pending_rows(spark, _with_table_columns(spark, df, uri), uri, keys, where=recent)
    if missing.isEmpty():
        return dict(_NOTHING)
    with _conflicts_named(uri):
        missing.write.format("delta").mode("append").save(uri)
    return {**_NOTHING, "num_inserted_rows": _last_commit_rows(spark, uri)}


def _table_keys(spark: "SparkSession", keys_from: "DataFrame", uri: str, keys: Sequence[str],
                how: str, where: "str | Column | None" = None) -> "DataFrame":
    """The table's keys (at its current version; of its rows matching ``where``, if given) that
    ``keys_from`` holds (``how="left_semi"``) or lacks (``"left_anti"``)."""
    from pyspark.sql import functions as F

    target = read_table(spark, uri, table_version(spark, uri)).alias("t")
    target = (target.where(where) if where is not None else target).select(*keys)
    return target.alias("t").join(keys_from.select(*keys).alias("s"), on=F.expr(_key_condition(keys)), how=how)


def table_columns(spark: "SparkSession", uri: str) -> list[str]:
    """The columns of the Delta table at ``uri`` (none when there is no table)."""
    return read_table(spark, uri).columns if is_delta_table(spark, uri) else []


def delete_keys(spark: "SparkSession", keys_from: "DataFrame", uri: str, keys: Sequence[str],
                absent: bool = False, where: "str | Column | None" = None) -> int:
    """Delete the table's rows whose key (``keys``, which may match several of its rows)
    ``keys_from`` holds, or with ``absent`` lacks, in one MERGE; with ``where`` (a condition on the
    table's columns, which it names ``t``: ``F.col("t.model_name") == "m"``) only rows matching it. Commits nothing when there are none (a rerun).
    The rows deleted."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, uri) or \
            _table_keys(spark, keys_from, uri, keys, "left_anti" if absent else "left_semi", where).isEmpty():
        return 0
    merge = DeltaTable.forPath(spark, uri).alias("t").merge(keys_from.select(*keys).distinct().alias("s"),
                                                            _key_condition(keys))
    merge = merge.whenNotMatchedBySourceDelete(where) if absent else merge.whenMatchedDelete(where)
    with _conflicts_named(uri):
        return _metrics(merge.execute()).get("num_deleted_rows", 0)


def delete_where(spark: "SparkSession", uri: str, condition: "Column | str") -> int:
    """Delta DELETE of the table's rows matching ``condition``; commits nothing when none match.
    The rows deleted."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, uri) or read_table(spark, uri, table_version(spark, uri)).where(condition).isEmpty():
        return 0
    with _conflicts_named(uri):
        DeltaTable.forPath(spark, uri).delete(condition)
    metrics = DeltaTable.forPath(spark, uri).history(1).select("operationMetrics").first()[0] or {}
    return int(metrics.get("numDeletedRows", 0))


def merge_upsert(
    spark: "SparkSession",
    df: "DataFrame",
    uri: str,
    keys: Sequence[str],
    compare_columns: Sequence[str],
    evolve_schema: bool = False,
    add_columns: bool = False,
    delete_missing: bool = False,
) -> dict[str, int]:
    """Update rows whose key exists and whose values changed; insert the rest; create the table
    with all rows in one commit if there is none. With ``delete_missing``, the same commit
    deletes the table's rows whose key ``df`` lacks (the table mirrors ``df``).

    Unchanged rows are left alone, and when no row is new, changed (or missing) nothing is
    committed, so a rerun on the same input leaves the table's version as it was.
    With ``evolve_schema`` new source columns are added to the table (Delta's
    ``withSchemaEvolution``); with ``add_columns`` they are added before the MERGE, and the
    table's columns ``df`` lacks are written as nulls in the rows it inserts or updates.
    """
    from delta.tables import DeltaTable

    if not is_delta_table(spark, uri):
        return _create_with(spark, df, uri)
    if add_columns:
        df = _with_table_columns(spark, df, uri)
    table_columns = set(read_table(spark, uri).columns)
    known = [c for c in compare_columns if c in table_columns]
    new_columns = evolve_schema and bool(set(df.columns) - table_columns)
    missing = delete_missing and not _table_keys(spark, df, uri, keys, "left_anti").isEmpty()
    if not new_columns and not missing and _pending_rows(spark, df, uri, [*keys, *known]).isEmpty():
        return dict(_NOTHING)
    # Columns the table gains in this MERGE count as changed for every matched row.
    changed = "true" if new_columns else (" OR ".join(f"NOT (t.{_q(c)} <=> s.{_q(c)})" for c in known) or "false")
    merge = DeltaTable.forPath(spark, uri).alias("t").merge(df.alias("s"), _key_condition(keys))
    if evolve_schema:
        merge = merge.withSchemaEvolution()
    merge = merge.whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll()
    if missing:
        merge = merge.whenNotMatchedBySourceDelete()
    with _conflicts_named(uri):
        return _metrics(merge.execute())


def update_columns(spark: "SparkSession", df: "DataFrame", uri: str, keys: Sequence[str], columns: Sequence[str],
                   delete_missing: bool = False) -> dict[str, int]:
    """Set ``columns`` of the table's rows whose key ``df`` holds (one row per key) to ``df``'s values
    where they differ (null-safe); with ``delete_missing``, delete in the same commit the rows whose
    key ``df`` lacks. Inserts nothing; commits nothing when no row differs or is missing."""
    from delta.tables import DeltaTable

    columns = list(columns)
    differs = _pending_rows(spark, df.select(*keys, *columns), uri, [*keys, *columns]) \
        .join(read_table(spark, uri, table_version(spark, uri)).select(*keys), list(keys), "left_semi")
    missing = delete_missing and not _table_keys(spark, df, uri, keys, "left_anti").isEmpty()
    if differs.isEmpty() and not missing:
        return dict(_NOTHING)
    changed = " OR ".join(f"NOT (t.{_q(c)} <=> s.{_q(c)})" for c in columns)
    merge = DeltaTable.forPath(spark, uri).alias("t").merge(df.select(*keys, *columns).alias("s"),
                                                            _key_condition(keys)) \
        .whenMatchedUpdate(condition=changed, set={_q(c): f"s.{_q(c)}" for c in columns})
    if missing:
        merge = merge.whenNotMatchedBySourceDelete()
    with _conflicts_named(uri):
        return {**_NOTHING, **_metrics(merge.execute())}


def optimize(spark: "SparkSession", uri: str) -> dict[str, int]:
    """Delta OPTIMIZE (bin-packing compaction) of the table at ``uri``; the files it added and removed."""
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, uri).optimize().executeCompaction().select("metrics").first()[0]
    return {"files_added": int(metrics["numFilesAdded"]), "files_removed": int(metrics["numFilesRemoved"])}


def vacuum(spark: "SparkSession", uri: str, retention_hours: float, below_safety_check: bool = False) -> None:
    """Delta VACUUM: delete the files no table version within ``retention_hours`` refers to.

    ``below_safety_check`` lets a retention under Delta's default (7 days) through, by turning
    ``spark.databricks.delta.retentionDurationCheck.enabled`` off for this call only; without it
    Delta refuses such a retention (a concurrent reader or writer could lose its files).
    """
    from delta.tables import DeltaTable

    settings = {"spark.databricks.delta.retentionDurationCheck.enabled": "false"} if below_safety_check else {}
    # VACUUM lists the table's folders in a Spark job of parallelPartitionDiscovery.parallelism
    # tasks (10,000 unless set): on a small cluster that job alone takes 20-40 s per table. The
    # session's own parallelism lists as fast; a value the user set is kept.
    if not spark.sparkContext.getConf().contains(_LISTING_PARALLELISM):
        settings[_LISTING_PARALLELISM] = str(max(1, spark.sparkContext.defaultParallelism))
    with scoped_conf(spark, settings):
        DeltaTable.forPath(spark, uri).vacuum(float(retention_hours))


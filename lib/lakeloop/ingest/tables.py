"""Table ingestion: CSV, JSON lines or Parquet at any Hadoop URI -> Delta ``bronze.<table>`` + ``quarantine.<table>``.

Steps (each a function tests and notebooks can call):

1. :func:`lakeloop.ingest.table_read.read_source` reads the raw records, every one with the
   file it came from and a position that is the same on every read of the same input.
2. :func:`lakeloop.ingest.table_checks.validate_records` types them per the declared schema
   and splits them into good rows (one per key) and bad rows (raw record + reason).
3. :func:`ingest_table` MERGEs the good rows into bronze on the table's keys (unchanged
   rows are not rewritten, so a rerun updates and inserts nothing) and the bad rows into
   quarantine on ``record_hash`` (a rerun adds nothing twice).

Every record read ends in exactly one of bronze or quarantine; the run checks
``inputs == good + quarantined`` and fails loudly if not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from lakeloop.config import Profile, TableSource
from lakeloop.errors import ConfigError, JobFailed, LakeloopError, SchemaMismatchError
from lakeloop.ingest.table_checks import (ERROR_COL, KIND_COL, KIND_DUPLICATE_KEY, KIND_FORGOTTEN, KIND_KEY_EXISTS,
                                          KIND_SUPERSEDED, RAW_COL, check_records, split_checked)
from lakeloop.ingest.table_read import (declared_schema, quote_column, read_source, record_columns, resolve_keys,
                                        setting_name, unique_names)
from lakeloop.io import delta
from lakeloop.io.lakefs import LakeFiles
from lakeloop.io.tombstones import KIND_TABLE_ROW, forgotten_lookup, row_key_text
from lakeloop.layout import LakeLayout
from lakeloop.io.step_state import read_step_state, write_step_state
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JOB = "ingest_tables"

# Bronze bookkeeping columns; left out of the MERGE change test, or every rerun would rewrite every row.
RUN_ID_COL = "_run_id"
INGESTED_AT_COL = "_ingested_at"

QUARANTINE_KEY = "record_hash"


def table_config(profile: Profile, name: str) -> TableSource:
    """The configured table ``name``.

    Raises
    ------
    ConfigError
        no table of that name under ``ingest_tables.tables``; the message lists the known ones.
    """
    tables = profile.ingest_tables.tables
    if name not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise ConfigError(
            f"unknown table {name!r}: profile {profile.name!r} configures these tables under "
            f"ingest_tables.tables: {known}. Pass one of them (--table NAME) or add {name!r} to the profile."
        )
    return tables[name]


# --------------------------------------------------------------------------- rows to write


def bronze_rows(good: "DataFrame", run_id: str) -> "DataFrame":
    """Good rows plus ``_run_id`` and ``_ingested_at`` (of the run that last inserted or changed the row)."""
    from pyspark.sql import functions as F

    return good.select(
        "*", F.lit(run_id).alias(RUN_ID_COL), F.current_timestamp().alias(INGESTED_AT_COL)
    )


def quarantine_rows(bad: "DataFrame", run_id: str, raw_max_chars: int) -> "DataFrame":
    """Bad rows as the quarantine table holds them, keyed by ``record_hash``.

    ``record_hash`` is sha256 of (source, full raw record, occurrence): the same bad record read
    again gets the same hash, so a rerun adds nothing, also when a newer lakeloop words its
    reason differently. The occurrence number (1, 2, ... among identical records of one file)
    keeps a line repeated in a file from collapsing into one row; identical rows are
    interchangeable, so the numbering is stable.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    same = Window.partitionBy("source", "raw").orderBy("source")
    occurrence = F.row_number().over(same)
    record_hash = F.sha2(
        F.concat_ws(
            "\u0000",
            F.coalesce(F.col("source"), F.lit("")),
            F.coalesce(F.col("raw"), F.lit("")),
            occurrence.cast("string"),
        ),
        256,
    )
    return bad.select(
        "source",
        F.substring("raw", 1, raw_max_chars).alias("raw"),
        "error",
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("quarantined_at"),
        record_hash.alias(QUARANTINE_KEY),
    )


def _prepare_bronze(
    spark: "SparkSession", uri: str, rows: "DataFrame", table: TableSource, name: str
) -> list[str]:
    """Add the new columns of ``rows`` to an existing bronze table; return their names.

    New columns are extra source columns (``evolve_schema``) or columns the schema has
    declared since the table was made. Done before the MERGE because its change test
    compares every record column, and a MERGE condition cannot name a column the target
    does not have yet (Delta 4.0: DELTA_MERGE_UNRESOLVED_EXPRESSION, even with schema
    evolution on).

    Raises
    ------
    SchemaMismatchError
        the table has columns the rows lack and ``evolve_schema`` is off (Delta's MERGE
        would refuse the update).
    """
    if not delta.is_delta_table(spark, uri):
        return []
    incoming = {f.name.lower() for f in rows.schema.fields}
    gone = [f.name for f in delta.read_table(spark, uri).schema.fields if f.name.lower() not in incoming]
    if gone and not table.evolve_schema:
        raise SchemaMismatchError(
            f"bronze table {uri} has column(s) {', '.join(gone)} that {setting_name(name, 'schema')} does not "
            f"declare (an earlier run added them). Add them to the schema, or set "
            f"{setting_name(name, 'evolve_schema')}: true to keep them (unchanged) for rows that lack them"
        )
    # With evolve_schema off, new columns can only be ones the schema now declares: add them too.
    return delta.add_missing_columns(spark, uri, rows.schema)


# --------------------------------------------------------------------------- the job


def _raise_read_failure(exc: Exception, table: TableSource, name: str) -> None:
    """Turn Spark's per-file CSV header check failure into a SchemaMismatchError; re-raise anything else."""
    text = str(exc)
    marker = "CSV header does not conform to the schema"
    if marker not in text:
        raise exc
    detail = text[text.index(marker):].splitlines()
    lines = [line.strip() for line in detail[1:5] if line.strip()]
    raise SchemaMismatchError(
        f"a file of {table.source} has a CSV header that differs from the first file's ({'; '.join(lines)}). "
        f"Every file of a table needs the same columns in the same order; fix that file or point "
        f"{setting_name(name, 'source')} at files of one layout"
    ) from exc


def _add_counts(report: RunReport, counts: dict[str, int]) -> None:
    for key, value in counts.items():
        report.counts[key] = report.counts.get(key, 0) + value


@dataclass
class _TableRun:
    """One table's run: its settings, where it goes, and the report its counts land in."""

    name: str
    table: TableSource
    bronze_uri: str
    quarantine_uri: str
    report: RunReport
    details: dict
    files: LakeFiles
    max_nesting: int = 1000
    forgotten_uri: str | None = None  # the lake's tombstones (lakeloop forget)


def _read_and_check(spark: "SparkSession", run: _TableRun) -> tuple["DataFrame", "DataFrame | None", int]:
    """Read the source (persisted: the positions must be the ones counted) and check its records
    (held, :func:`lakeloop.io.delta.held`: counted, then written by two MERGEs, which would otherwise
    read the source again); returns (raw, checked or None when empty, inputs)."""
    from py4j.protocol import Py4JJavaError
    from pyspark import StorageLevel
    from pyspark.errors.exceptions.captured import CapturedException
    from pyspark.sql.types import StructType

    schema = declared_schema(run.table, run.name)
    with run.report.timed(f"{run.name}.read"):
        raw = read_source(spark, run.table, run.name, run.files, run.max_nesting).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n_inputs = raw.count()
        except (Py4JJavaError, CapturedException) as exc:
            _raise_read_failure(exc, run.table, run.name)
    if n_inputs == 0:
        return raw, None, 0
    columns = record_columns(raw)
    record_schema = schema or StructType([f for f in raw.schema.fields if f.name in columns])
    checked = check_records(raw, record_schema, run.table, run.table.format, run.name,
                            existing=_written_rows(spark, run, columns))
    return raw, delta.held(_mark_forgotten(spark, checked, run, columns)), n_inputs


def _mark_forgotten(spark: "SparkSession", checked: "DataFrame", run: _TableRun, columns: Sequence[str]) -> "DataFrame":
    """Records of keys erased with ``lakeloop forget`` (tombstones, :mod:`lakeloop.io.tombstones`)
    become ``forgotten`` whatever else they were (good, a duplicate, superseded): neither written nor
    quarantined, only counted. A record without a typed key (malformed, a type error) is quarantined
    as before."""
    from pyspark.sql import functions as F

    stones = forgotten_lookup(spark, run.forgotten_uri) if run.forgotten_uri else None
    if stones is None or stones.isEmpty():
        return checked
    erased = stones.where((F.col("kind") == KIND_TABLE_ROW) & (F.col("table") == run.name)).select(
        F.col("key").alias("_forgotten_key"), F.lit(True).alias("_forgotten"))
    if erased.isEmpty():
        return checked
    keys = resolve_keys(run.table, columns, run.name, SchemaMismatchError)
    typed = F.col(KIND_COL).isNull() | F.col(KIND_COL).isin(KIND_DUPLICATE_KEY, KIND_KEY_EXISTS, KIND_SUPERSEDED)
    marked = checked.withColumn("_forgotten_key", row_key_text(dict(zip(run.table.keys, keys)))) \
        .join(F.broadcast(erased), "_forgotten_key", "left")
    gone = typed & F.col("_forgotten").isNotNull()
    return marked.withColumn(ERROR_COL, F.when(gone, F.lit(None).cast("string")).otherwise(F.col(ERROR_COL))) \
        .withColumn(RAW_COL, F.when(gone, F.lit(None).cast("string")).otherwise(F.col(RAW_COL))) \
        .withColumn(KIND_COL, F.when(gone, F.lit(KIND_FORGOTTEN)).otherwise(F.col(KIND_COL))) \
        .drop("_forgotten_key", "_forgotten")


def _written_rows(spark: "SparkSession", run: _TableRun, columns: Sequence[str]) -> "DataFrame | None":
    """With ``mode: append``, bronze's rows (pinned) under the records' column names, for the check
    that a written key is never changed; else None."""
    from pyspark.sql import functions as F

    if run.table.mode != "append" or not delta.is_delta_table(spark, run.bronze_uri):
        return None
    bronze = delta.read_table(spark, run.bronze_uri, delta.table_version(spark, run.bronze_uri))
    stored = storable_names(columns)
    return bronze.select(*[F.col(quote_column(stored[c])).alias(c) for c in columns if stored[c] in bronze.columns])


def _count_verdicts(checked: "DataFrame", run: _TableRun, n_inputs: int) -> tuple[int, int]:
    """(good, bad) records, after checking they add up to the inputs with the superseded ones (an
    earlier record of a key the source holds a later one of: kept in ``details["superseded"]``);
    records the reasons."""
    with run.report.timed(f"{run.name}.validate"):
        by_kind = {r[KIND_COL]: r["count"] for r in checked.groupBy(KIND_COL).count().collect()}
    n_good = by_kind.pop(None, 0)
    n_superseded = run.details["superseded"] = by_kind.pop(KIND_SUPERSEDED, 0)
    n_forgotten = by_kind.pop(KIND_FORGOTTEN, 0)
    n_bad = sum(by_kind.values())
    if n_good + n_bad + n_superseded + n_forgotten != n_inputs:
        raise JobFailed(
            f"accounting mismatch for table {run.name} in run {run.report.run_id}: read {n_inputs} records but "
            f"{n_good} are good, {n_superseded} superseded, {n_forgotten} forgotten and {n_bad} quarantined; "
            f"nothing was written"
        )
    if n_forgotten:
        run.details["forgotten"] = n_forgotten
        run.report.warnings.append(f"table {run.name}: {n_forgotten} record(s) of keys erased with lakeloop forget "
                                   f"were neither written nor quarantined; remove them from the source")
    if by_kind:
        run.details["quarantine_reasons"] = by_kind
    return n_good, n_bad


# Characters Delta refuses in a column name unless the table uses column mapping, which Delta
# readers such as delta-rs 0.18 cannot read: such names are stored with "_" instead.
DELTA_INVALID_CHARACTERS = " ,;{}()\n\t="
SOURCE_COLUMNS_PROPERTY = "lakeloop.source_columns"


def storable_names(columns: Sequence[str]) -> dict[str, str]:
    """Each source column -> the name bronze stores it under: every character Delta refuses
    (:data:`DELTA_INVALID_CHARACTERS`) becomes ``_``, and a name equal to an earlier one without
    regard to case gets ``_2``, ``_3`` ... Unchanged names map to themselves."""
    return unique_names(columns, DELTA_INVALID_CHARACTERS)


def _split_deletes(good: "DataFrame", run: _TableRun) -> tuple["DataFrame", "DataFrame | None"]:
    """The good records to write, and those ``delete_when`` marks as deletions (None without it;
    their number in ``run.details["delete_records"]``).

    Raises
    ------
    SchemaMismatchError
        ``delete_when`` is no condition Spark can evaluate on the records.
    """
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    if run.table.delete_when is None:
        return good, None
    try:
        is_delete = F.coalesce(F.expr(run.table.delete_when).cast("boolean"), F.lit(False))
        deletes = good.where(is_delete)
    except (AnalysisException, ParseException) as exc:
        raise SchemaMismatchError(
            f"table {run.name}: ingest_tables.tables.{run.name}.delete_when = {run.table.delete_when!r} is not a "
            f"condition on its records' columns ({', '.join(good.columns)}): {str(exc).splitlines()[0]}; fix it, "
            f"e.g. \"op = 'D'\"") from None
    run.details["delete_records"] = deletes.count()
    return good.where(~is_delete), deletes


def _write_table(spark: "SparkSession", checked: "DataFrame", run: _TableRun, n_bad: int) -> dict:
    """Upsert the good rows into bronze (under names Delta can store, the renames recorded in the
    table's properties), insert the bad ones into quarantine; returns both MERGEs' metrics."""
    from pyspark.sql import functions as F

    good, bad = split_checked(checked)
    stored = storable_names(good.columns)
    keys = [stored[k] for k in resolve_keys(run.table, good.columns, run.name, SchemaMismatchError)]
    good, deletes = _split_deletes(good, run)
    good = good.select(*[F.col(quote_column(source)).alias(name) for source, name in stored.items()])
    rows = bronze_rows(good, run.report.run_id)
    with run.report.timed(f"{run.name}.write_bronze"):
        added = _prepare_bronze(spark, run.bronze_uri, rows, run.table, run.name)
        snapshot = run.table.mode == "snapshot"
        if snapshot and n_bad:
            run.report.warnings.append(
                f"table {run.name}: mode snapshot, but {n_bad} record(s) were quarantined: keys missing from the source "
                f"are not deleted from {run.bronze_uri} this run (a quarantined record may hold one); fix them and rerun")
        if run.table.mode == "append":  # a written key is never changed (its other records were quarantined)
            bronze_metrics = delta.merge_insert_new(spark, rows, run.bronze_uri, keys,
                                                    add_columns=run.table.evolve_schema)
        else:
            bronze_metrics = delta.merge_upsert(spark, rows, run.bronze_uri, keys,
                                                compare_columns=list(stored.values()),
                                                evolve_schema=run.table.evolve_schema,
                                                delete_missing=snapshot and not n_bad)
        if deletes is not None:
            keyed = deletes.select(*[F.col(quote_column(source)).alias(name) for source, name in stored.items()
                                     if name in keys])
            bronze_metrics = {**bronze_metrics, "num_deleted_rows": bronze_metrics.get("num_deleted_rows", 0)
                              + delta.delete_keys(spark, keyed, run.bronze_uri, keys)}
        renamed = {name: source for source, name in stored.items() if source != name}
        if renamed:
            delta.set_table_properties(spark, run.bronze_uri, {SOURCE_COLUMNS_PROPERTY: json.dumps(renamed)})
            run.details["renamed_columns"] = renamed
    quarantine_metrics: dict[str, int] = {}
    if n_bad:
        with run.report.timed(f"{run.name}.write_quarantine"):
            quarantine_metrics = delta.merge_insert_new(
                spark, quarantine_rows(bad, run.report.run_id, run.table.raw_max_chars), run.quarantine_uri,
                [QUARANTINE_KEY])
    return {"bronze": bronze_metrics, "quarantine": quarantine_metrics, "added": added}


def _change_counts(table: TableSource, superseded: int, deleted: int, delete_records: int) -> dict[str, int]:
    """A run's counts beyond inserts and updates, where they can occur: ``superseded`` records (when
    any), keys ``deleted`` (a table that deletes: ``mode: snapshot`` or ``delete_when``) and the change
    feed's ``delete_records`` (``delete_when``)."""
    counts = {"superseded": superseded} if superseded else {}
    if table.mode == "snapshot" or table.delete_when is not None:
        counts["deleted"] = deleted
    if table.delete_when is not None:
        counts["delete_records"] = delete_records
    return counts


def _record_outcome(run: _TableRun, n_inputs: int, n_good: int, n_bad: int, written: dict, elapsed: float) -> None:
    """Counts, warnings and outputs of one table's run, in its details and the job's report."""
    report, name = run.report, run.name
    inserted = written["bronze"].get("num_inserted_rows", 0)
    updated = written["bronze"].get("num_updated_rows", 0)
    unchanged = n_good - run.details.get("delete_records", 0) - inserted - updated
    if unchanged < 0:
        raise JobFailed(
            f"accounting mismatch for table {name} in run {report.run_id}: {n_good} good rows but the MERGE into "
            f"{run.bronze_uri} inserted {inserted} and updated {updated}; see that table's history"
        )
    counts = dict(inputs=n_inputs, inserted=inserted, updated=updated, unchanged=unchanged, quarantined=n_bad,
                  **({"forgotten": run.details["forgotten"]} if run.details.get("forgotten") else {}),
                  **_change_counts(run.table, run.details.get("superseded", 0),
                                   written["bronze"].get("num_deleted_rows", 0), run.details.get("delete_records", 0)))
    run.details.update(counts=counts, bronze_merge=written["bronze"], elapsed_s=round(elapsed, 3),
                       quarantine_new=written["quarantine"].get("num_inserted_rows", 0))
    if written["added"]:
        run.details["added_columns"] = written["added"]
        report.warnings.append(f"table {name}: added column(s) {', '.join(written['added'])} to {run.bronze_uri}")
    _report_counts(run, counts)
    report.throughput[f"{name}.records_per_s"] = round(n_inputs / elapsed, 1) if elapsed > 0 else 0.0


def _report_counts(run: _TableRun, counts: dict[str, int]) -> None:
    """A table's counts added to the job's, its outputs, and where its quarantined records went."""
    if counts["quarantined"]:
        run.report.warnings.append(f"table {run.name}: {counts['quarantined']} record(s) quarantined in "
                                   f"{run.quarantine_uri}")
    _add_counts(run.report, counts)
    run.report.outputs[f"bronze.{run.name}"] = run.bronze_uri
    if counts["quarantined"]:
        run.report.outputs[f"quarantine.{run.name}"] = run.quarantine_uri


def ingest_table(spark: "SparkSession", profile: Profile, name: str, report: RunReport | None = None) -> RunReport:
    """Ingest table ``name`` of the profile into ``bronze.<name>`` and ``quarantine.<name>``.

    Good rows are upserted by the table's keys (Delta MERGE; rows whose declared columns
    are unchanged are not rewritten), bad rows are inserted into quarantine keyed by
    ``record_hash``. Rerunning on the same input changes neither table.

    The run's counts are added to ``report.counts`` (``inputs``, ``inserted``, ``updated``,
    ``unchanged``, ``quarantined``) and the table's own to ``report.details["tables"][name]``.

    Reads settings ``ingest_tables.tables.<name>.*`` and ``lake_root``.

    Raises
    ------
    ConfigError
        unknown table name, invalid schema/keys/options.
    SourceError
        the source does not exist.
    SchemaMismatchError
        the source's columns do not match the schema (and ``evolve_schema`` is off), or a
        value does not convert and ``on_type_error`` is ``fail``.
    JobFailed
        the accounting ``inputs == good + quarantined`` does not add up (a bug; nothing is hidden).
    """
    table = table_config(profile, name)
    report = report or RunReport.start(JOB)
    lake = LakeLayout(profile.lake_root)
    run = _TableRun(name, table, lake.bronze_table(name), lake.quarantine_table(name), report,
                    report.details.setdefault("tables", {}).setdefault(name, {}), LakeFiles(profile.hadoop_conf()),
                    profile.ingest_tables.max_nesting, lake.forgotten)
    run.details.update(source=table.source, format=table.format, bronze=run.bronze_uri, quarantine=run.quarantine_uri)
    started = time.perf_counter()
    # Listed before the read: a file rewritten during the run then differs from what is recorded.
    source_files = None
    if profile.ingest_tables.skip_unchanged:
        with report.timed(f"{name}.check_unchanged"):
            source_files = _source_digest(spark, run)
            if _as_the_last_run_left_it(spark, run, lake, source_files):
                return report
    raw, checked, n_inputs = _read_and_check(spark, run)
    try:
        if checked is None:
            report.warnings.append(f"table {name}: {table.source} holds no records; nothing was written")
            run.details["counts"] = dict(inputs=0, inserted=0, updated=0, unchanged=0, quarantined=0)
            _add_counts(report, run.details["counts"])
            return report
        n_good, n_bad = _count_verdicts(checked, run, n_inputs)
        written = _write_table(spark, checked, run, n_bad)
    finally:
        raw.unpersist()
        if checked is not None:
            delta.release(checked)
    _record_outcome(run, n_inputs, n_good, n_bad, written, time.perf_counter() - started)
    if source_files is not None:
        _record_state(spark, run, lake, source_files)
    return report


def _source_digest(spark: "SparkSession", run: _TableRun) -> dict[str, Any]:
    """How many files the table's source names and a digest of their paths, sizes and times."""
    from lakeloop.io import hadoop

    files = hadoop.file_states(spark, run.table.source)
    return {"files": len(files), "sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest()}


def _source_state(spark: "SparkSession", run: _TableRun, source_files: dict[str, Any]) -> dict[str, Any]:
    """The table's source files, its settings, and the current commits of its bronze and quarantine
    tables (version and time, :func:`lakeloop.io.delta.last_commit`): recorded after a run, it says
    every record of those files is in one of those two tables as they then were."""
    settings = json.loads(json.dumps({**dataclasses.asdict(run.table), "max_nesting": run.max_nesting}))
    return {"source": source_files, "settings": settings, "bronze": delta.commit_state(spark, run.bronze_uri),
            "quarantine": delta.commit_state(spark, run.quarantine_uri)}


def _record_state(spark: "SparkSession", run: _TableRun, lake: LakeLayout, source_files: dict[str, Any]) -> None:
    """Record, in the lake (:mod:`lakeloop.io.step_state`), that every record of the source files is
    in bronze or quarantine as this run left them, and the counts a rerun would report."""
    state = _source_state(spark, run, source_files)
    run.details["source_state"] = state
    write_step_state(spark, lake.step_state(JOB, run.name),
                     {"run_id": run.report.run_id, "source_state": state, "counts": run.details["counts"]})


def _as_the_last_run_left_it(spark: "SparkSession", run: _TableRun, lake: LakeLayout,
                             source_files: dict[str, Any]) -> bool:
    """When the table's last finished run recorded (:func:`_record_state`) its source files, its
    settings, bronze and quarantine as they are now, a run now would read the same records and
    write nothing: count them as that run did (``inserted`` and ``updated`` become ``unchanged``),
    name it in ``skipped_from_run``, and return True; else False (read the source)."""
    recorded = read_step_state(spark, lake.step_state(JOB, run.name))
    counts = recorded.get("counts") or {}
    if not recorded.get("source_state"):
        return False
    state = _source_state(spark, run, source_files)
    if recorded["source_state"] != state or state["bronze"] is None:
        return False
    try:
        good = sum(int(counts[k]) for k in ("inserted", "updated", "unchanged"))
        counts = dict(inputs=int(counts["inputs"]), inserted=0, updated=0, unchanged=good,
                      quarantined=int(counts["quarantined"]),
                      **_change_counts(run.table, int(counts.get("superseded", 0)), 0,
                                       int(counts.get("delete_records", 0))))
    except (KeyError, TypeError, ValueError):  # a record from another lakeloop: read the source
        return False
    run.details.update(counts=counts, source_state=state, skipped_from_run=recorded.get("run_id"))
    _report_counts(run, counts)
    return True


def _failure_text(exc: Exception) -> str:
    """One readable line for a table's failure: lakeloop's own message, or the first line of
    Spark's (whose messages run to pages of plan and stack)."""
    if isinstance(exc, LakeloopError):
        return f"{type(exc).__name__}: {exc}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:1000]}"


def ingest_tables(
    spark: "SparkSession",
    profile: Profile,
    names: Iterable[str] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Ingest the tables ``names`` (default: every table of ``ingest_tables.tables``), one after another.

    A table that fails, for whatever reason, does not stop the others: each table's outcome
    is ``report.details["tables"][name]["status"]`` (``succeeded`` or ``failed``, with
    ``error``), and the job fails at the end naming the tables that failed.

    Raises
    ------
    ConfigError
        no tables configured, or a name that is not configured (checked before any work).
    JobFailed
        one or more tables failed (the others were ingested); the message names each and why.
    """
    configured = profile.ingest_tables.tables
    if not configured:
        raise ConfigError(
            f"profile {profile.name!r} configures no tables; add them under ingest_tables.tables "
            f"(source, format, schema, keys; see conf/local.yaml)"
        )
    selected = list(dict.fromkeys(names)) if names else list(configured)
    for name in selected:
        table_config(profile, name)
    report = report or RunReport.start(JOB)
    for key in ("inputs", "inserted", "updated", "unchanged", "quarantined"):
        report.counts.setdefault(key, 0)
    failures: list[tuple[str, Exception]] = []
    for name in selected:
        details = report.details.setdefault("tables", {}).setdefault(name, {})
        try:
            ingest_table(spark, profile, name, report=report)
            details["status"] = "succeeded"
        except Exception as exc:  # noqa: BLE001 - one table's failure must not stop the others
            details.update(status="failed", error=_failure_text(exc))
            failures.append((name, exc))
    report.counts["tables_failed"] = len(failures)
    if failures:
        done = len(selected) - len(failures)
        raise JobFailed(
            f"{len(failures)} of {len(selected)} tables failed ({done} ingested): "
            + "; ".join(f"table {name}: {_failure_text(exc)}" for name, exc in failures)
        ) from failures[0][1]
    return report

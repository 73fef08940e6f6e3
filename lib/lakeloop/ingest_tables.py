"""Table ingestion: CSV, JSON lines or Parquet at any Hadoop URI -> Delta ``bronze.<table>`` + ``quarantine.<table>``.

Steps (each a function tests and notebooks can call):

1. :func:`read_source` reads the raw records. CSV and JSON columns are read as STRING,
   plus a ``_corrupt_record`` column (Spark's PERMISSIVE mode), so that no value is
   turned into null by the reader; Parquet is read with its own types. Every record gets
   the file it came from and a position that is the same on every read of the same input.
2. :func:`validate_records` (:func:`check_records`, then :func:`split_checked`) casts each
   column to its declared type and splits the records into good rows (typed, one per key)
   and bad rows (``raw`` record + ``error`` reason).
   A record is bad when it is malformed (wrong field count, broken JSON), when a value
   does not convert to its column's type, when a key column is null, or when an earlier
   record of the same batch has the same key.
3. :func:`ingest_table` MERGEs the good rows into bronze on the table's keys (unchanged
   rows are not rewritten, so a rerun updates and inserts nothing) and the bad rows into
   quarantine on ``record_hash`` (a rerun adds nothing twice).

Every record read ends in exactly one of bronze or quarantine; the run checks
``inputs == good + quarantined`` and fails loudly if not.

Facts about Spark 4.0's CSV reader this module relies on (verified with Spark 4.0.1):
in PERMISSIVE mode with a ``columnNameOfCorruptRecord`` column, a line with too few
fields comes back padded with nulls and a line with too many comes back cut to the
schema's width; in both cases the corrupt-record column holds the whole line. Without
that column both kinds would pass silently, so it is always requested. With
``header=true`` and a schema, Spark maps columns by position and skips the header
unchecked unless ``enforceSchema=false``; this module reads the header itself, builds
the schema in the header's order and sets ``enforceSchema=false`` so that every other
file's header is checked against it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, Sequence

from lakeloop import delta_io
from lakeloop.config import Profile, TableSource
from lakeloop.errors import ConfigError, JobFailed, LakeloopError, SchemaMismatchError, SourceError
from lakeloop.report import RunReport, new_run_id

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

JOB = "ingest_tables"

# Helper columns of read_source's output; everything else is a column of the record.
CORRUPT_COL = "_corrupt_record"
INPUT_FILE_COL = "_input_file"
INPUT_POS_COL = "_input_pos"
HELPER_COLS = (CORRUPT_COL, INPUT_FILE_COL, INPUT_POS_COL)

# Bronze bookkeeping columns; left out of the MERGE change test, or every rerun would rewrite every row.
RUN_ID_COL = "_run_id"
INGESTED_AT_COL = "_ingested_at"

QUARANTINE_KEY = "record_hash"

# Verdict columns check_records adds to the typed record columns (with INPUT_FILE_COL).
RAW_COL = "_raw"
ERROR_COL = "_error"
KIND_COL = "_kind"
CHECK_COLS = (INPUT_FILE_COL, RAW_COL, ERROR_COL, KIND_COL)

# Kinds of bad record, in the order they are checked (a record gets the first that applies).
KIND_MALFORMED = "malformed"
KIND_TYPE = "type_error"
KIND_NULL_KEY = "null_key"
KIND_DUPLICATE_KEY = "duplicate_key"

# Reader options lakeloop sets itself: a user value would hide malformed records
# (mode=DROPMALFORMED), crash on them (FAILFAST) or bypass the declared schema.
_RESERVED_OPTIONS = {
    "mode": "lakeloop reads in PERMISSIVE mode so that malformed records reach quarantine",
    "columnnameofcorruptrecord": "lakeloop names the corrupt-record column itself",
    "enforceschema": "lakeloop checks CSV headers against the schema itself",
    "inferschema": "use ingest_tables.tables.<name>.infer_schema instead",
}

_MAX_VALUE_CHARS = 80


# --------------------------------------------------------------------------- config


def bronze_table_uri(profile: Profile, name: str) -> str:
    """URI of ``bronze.<name>``."""
    return profile.table_uri("bronze", name)


def quarantine_table_uri(profile: Profile, name: str) -> str:
    """URI of ``quarantine.<name>``."""
    return profile.table_uri("quarantine", name)


def _setting(name: str | None, key: str) -> str:
    return f"ingest_tables.tables.{name or '<name>'}.{key}"


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


def declared_schema(table: TableSource, name: str | None = None) -> "StructType | None":
    """The table's declared schema (``TableSource.schema`` as DDL), or None when it is inferred.

    Needs an active SparkSession (the DDL is parsed by Spark).

    Raises
    ------
    ConfigError
        the DDL does not parse, names a column twice, or lacks a key column.
    """
    if table.schema is None:
        return None
    from pyspark.errors import ParseException
    from pyspark.sql.types import StructType

    try:
        schema = StructType.fromDDL(table.schema)
    except ParseException as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{_setting(name, 'schema')} = {table.schema!r} is not valid DDL ({first_line}); "
            f"write it like \"sample_id INT, path STRING, ink_fraction DOUBLE\""
        ) from exc
    lowered = [f.name.lower() for f in schema.fields]
    twice = sorted({n for n in lowered if lowered.count(n) > 1})
    if twice:
        raise ConfigError(f"{_setting(name, 'schema')} declares column(s) {', '.join(twice)} more than once")
    _resolve_keys(table, schema.fieldNames(), name, ConfigError)
    return schema


def _resolve_keys(
    table: TableSource, columns: Sequence[str], name: str | None, error: type[LakeloopError]
) -> list[str]:
    """The key columns spelled as in ``columns`` (keys are matched case-insensitively)."""
    by_lower = {c.lower(): c for c in columns}
    missing = [k for k in table.keys if k.lower() not in by_lower]
    if missing:
        raise error(
            f"{_setting(name, 'keys')} names {', '.join(map(repr, missing))}, which the table does not have "
            f"(its columns: {', '.join(columns) or 'none'}); fix the keys or the schema"
        )
    return [by_lower[k.lower()] for k in table.keys]


def _user_options(table: TableSource, name: str | None) -> dict[str, str]:
    for key in table.options:
        reason = _RESERVED_OPTIONS.get(key.lower())
        if reason:
            raise ConfigError(f"{_setting(name, 'options')}.{key} cannot be set: {reason}; remove it")
    return dict(table.options)


def _option(options: dict[str, str], key: str, default: str | None = None) -> str | None:
    # Spark's reader options are case-insensitive; so is this lookup.
    for k, v in options.items():
        if k.lower() == key.lower():
            return v
    return default


# --------------------------------------------------------------------------- reading


def _source_exists(spark: "SparkSession", uri: str) -> bool:
    # globStatus, not exists: a source may be a glob such as s3a://bucket/in/*.csv.
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    matches = fs.globStatus(path)
    return matches is not None and len(matches) > 0


def _q(column: str) -> str:
    """A column name quoted for Spark, so names with dots or spaces are taken literally."""
    return "`" + column.replace("`", "``") + "`"


def _is_no_files(exc: Exception) -> bool:
    condition = getattr(exc, "getCondition", lambda: None)()
    return condition == "UNABLE_TO_INFER_SCHEMA"


def _match_columns(
    source_columns: Sequence[str],
    schema: "StructType",
    table: TableSource,
    name: str | None,
    where: str,
    missing_is_error: bool,
) -> tuple[dict[str, str], list[str]]:
    """Map declared column -> source spelling (case-insensitive); return it and the extra source columns.

    Raises SchemaMismatchError for extra columns unless ``evolve_schema`` is on, and for
    declared columns the source lacks when ``missing_is_error``.
    """
    by_lower: dict[str, str] = {}
    for column in source_columns:
        by_lower.setdefault(column.lower(), column)
    declared_lower = {f.name.lower() for f in schema.fields}
    spelling = {f.name: by_lower[f.name.lower()] for f in schema.fields if f.name.lower() in by_lower}
    missing = [f.name for f in schema.fields if f.name.lower() not in by_lower]
    extra = [c for c in source_columns if c.lower() not in declared_lower]
    if missing and missing_is_error:
        unexpected = f"; undeclared column(s) found instead: {', '.join(extra)}" if extra else ""
        raise SchemaMismatchError(
            f"declared column(s) {', '.join(missing)} missing from {where}{unexpected} (source columns: "
            f"{', '.join(source_columns)}). Fix the source, or change {_setting(name, 'schema')} to match it "
            f"(names are matched case-insensitively)."
        )
    if extra and not table.evolve_schema:
        raise SchemaMismatchError(
            f"undeclared column(s) {', '.join(extra)} in {where}: {_setting(name, 'schema')} does not declare them. "
            f"Set {_setting(name, 'evolve_schema')}: true to add them to the bronze table, or add them to "
            f"the schema (e.g. \"..., {extra[0]} STRING\")."
        )
    return spelling, extra


def _with_helpers(df: "DataFrame", columns: Sequence[tuple[str, str]], corrupt: bool) -> "DataFrame":
    """Select ``(source name, output name)`` columns plus the helper columns, straight off the file scan."""
    from pyspark.sql import functions as F

    return df.select(
        *[F.col(_q(src)).alias(out) for src, out in columns],
        *([F.col(CORRUPT_COL)] if corrupt else []),
        F.col("_metadata.file_path").alias(INPUT_FILE_COL),
        # Position within the input: the split's offset, then an id that grows in read order
        # within a task. One task reads a split from start to end, so sorting by (file, position)
        # is input order, and the same input read with the same settings gives the same positions.
        F.struct(
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("row"),
        ).alias(INPUT_POS_COL),
    )


def _empty_source(spark: "SparkSession", fields: Sequence[tuple[str, "DataType"]], corrupt: bool) -> "DataFrame":
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType(
        [StructField(n, t) for n, t in fields]
        + ([StructField(CORRUPT_COL, StringType())] if corrupt else [])
        + [
            StructField(INPUT_FILE_COL, StringType()),
            StructField(
                INPUT_POS_COL,
                StructType([StructField("block", LongType()), StructField("row", LongType())]),
            ),
        ]
    )
    return spark.createDataFrame([], schema)


def _permissive_reader(spark: "SparkSession", options: dict[str, str], fields: Sequence[tuple[str, str, "DataType"]]):
    """A reader that keeps malformed records whole in ``_corrupt_record`` instead of padding them."""
    from pyspark.sql.types import StringType, StructField, StructType

    read_schema = StructType(
        [StructField(src, dtype) for src, _, dtype in fields] + [StructField(CORRUPT_COL, StringType())]
    )
    return (
        spark.read.options(**options)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_COL)
        .schema(read_schema)
    )


def _read_csv(spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None) -> "DataFrame":
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import StringType

    options = _user_options(table, name)
    header = (_option(options, "header", "false") or "false").strip().lower() == "true"

    def infer() -> "StructType":
        return spark.read.options(**options, inferSchema="true").csv(table.source).schema

    try:
        if schema is None:
            inferred = infer()
            fields = [(f.name, f.name, f.dataType) for f in inferred.fields]
        elif header:
            # Without a schema and without inferSchema Spark reads just the first line: the header.
            header_names = spark.read.options(**options).csv(table.source).schema.fieldNames()
            if not header_names:
                return _empty_source(spark, [(f.name, StringType()) for f in schema.fields], corrupt=True)
            spelling, extra = _match_columns(
                header_names, schema, table, name, f"the CSV header of {table.source}", missing_is_error=True
            )
            back = {v: k for k, v in spelling.items()}
            extra_types = {c: StringType() for c in extra}
            if extra and table.infer_schema:
                extra_types.update({f.name: f.dataType for f in infer().fields if f.name in extra_types})
            fields = [
                (h, back[h], StringType()) if h in back else (h, h, extra_types[h]) for h in header_names
            ]
        else:
            fields = [(f.name, f.name, StringType()) for f in schema.fields]
    except AnalysisException as exc:
        if _is_no_files(exc):
            return _empty_source(spark, [(f.name, StringType()) for f in (schema.fields if schema else [])], True)
        raise
    if not fields:
        return _empty_source(spark, [], corrupt=True)
    df = (
        _permissive_reader(spark, options, fields)
        # Check every file's header against the first one's (by position, case-insensitively).
        .option("enforceSchema", "false" if header else "true")
        .csv(table.source)
    )
    return _with_helpers(df, [(src, out) for src, out, _ in fields], corrupt=True)


def _read_json(spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None) -> "DataFrame":
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import StringType, StructType

    options = _user_options(table, name)
    try:
        # One pass to learn the keys the records use: JSON field matching is case-sensitive,
        # and keys the schema does not declare must be noticed (evolve_schema) or refused.
        inferred = (
            spark.read.options(**options)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COL)
            .json(table.source)
            .schema
        )
    except AnalysisException as exc:
        if getattr(exc, "getCondition", lambda: None)() == "COLUMN_ALREADY_EXISTS":
            # Records spell a key in two ways ("id" and "ID"); Spark cannot read both as one column.
            raise SchemaMismatchError(
                f"the JSON records of {table.source} spell a key in more than one way (upper/lower case): "
                f"{str(exc).splitlines()[0]}. Spark matches JSON keys case-sensitively, so make the records "
                f"use one spelling (the one in {_setting(name, 'schema')})"
            ) from exc
        if not _is_no_files(exc):
            raise
        inferred = StructType([])
    source_fields = [f for f in inferred.fields if f.name != CORRUPT_COL]
    if not inferred.fields:
        return _empty_source(spark, [(f.name, StringType()) for f in (schema.fields if schema else [])], True)
    if schema is None:
        fields = [(f.name, f.name, f.dataType) for f in source_fields]
    else:
        # A declared column no record has is read as null: JSON writers (Spark's own included)
        # leave out null fields, so its absence is not an error.
        spelling, extra = _match_columns(
            [f.name for f in source_fields], schema, table, name, f"the JSON records of {table.source}",
            missing_is_error=False,
        )
        inferred_types = {f.name: f.dataType for f in source_fields}
        fields = [(spelling.get(f.name, f.name), f.name, StringType()) for f in schema.fields] + [
            (c, c, inferred_types[c] if table.infer_schema else StringType()) for c in extra
        ]
    df = (
        _permissive_reader(spark, options, fields)
        .json(table.source)
    )
    return _with_helpers(df, [(src, out) for src, out, _ in fields], corrupt=True)


def _read_parquet(
    spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None
) -> "DataFrame":
    from pyspark.errors import AnalysisException

    options = _user_options(table, name)
    try:
        df = spark.read.options(**options).parquet(table.source)
    except AnalysisException as exc:
        if _is_no_files(exc):
            return _empty_source(spark, [(f.name, f.dataType) for f in (schema.fields if schema else [])], False)
        raise
    source_columns = df.columns
    if schema is None:
        columns = [(c, c) for c in source_columns]
    else:
        spelling, extra = _match_columns(
            source_columns, schema, table, name, f"the Parquet files of {table.source}", missing_is_error=True
        )
        columns = [(spelling[f.name], f.name) for f in schema.fields] + [(c, c) for c in extra]
    return _with_helpers(df, columns, corrupt=False)


def read_source(spark: "SparkSession", table: TableSource, name: str | None = None) -> "DataFrame":
    """Read a table's source as raw records, with the declared column names.

    Columns: the declared columns (STRING for CSV and JSON, the file's own types for
    Parquet; inferred types with ``infer_schema`` and no schema), then any extra source
    columns (only with ``evolve_schema``), then the helpers ``_corrupt_record`` (CSV and
    JSON: the raw line of a malformed record, else null), ``_input_file`` and
    ``_input_pos`` (input order: sort by file, then position).

    ``_input_pos`` comes from ``monotonically_increasing_id``: persist the result before
    using it twice, so that every use sees the same positions.

    Parameters
    ----------
    spark : the session.
    table : the table's settings (``ingest_tables.tables.<name>``).
    name : the table's name, used in error messages to name its settings.

    Raises
    ------
    SourceError
        nothing exists at ``table.source``.
    SchemaMismatchError
        the header / file columns lack declared columns, or have extra ones while
        ``evolve_schema`` is off.
    ConfigError
        the schema DDL or the keys are invalid, or ``options`` sets a reader option
        lakeloop controls (``mode``, ``columnNameOfCorruptRecord``, ...).
    """
    schema = declared_schema(table, name)
    _user_options(table, name)
    if not _source_exists(spark, table.source):
        raise SourceError(
            f"table source {table.source} does not exist; check {_setting(name, 'source')} "
            f"and that the location is reachable from Spark"
        )
    readers = {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}
    if table.format not in readers:
        raise ConfigError(f"{_setting(name, 'format')} = {table.format!r} is not one of csv, json, parquet")
    df = readers[table.format](spark, table, schema, name)
    if schema is None:
        _resolve_keys(table, [c for c in df.columns if c not in HELPER_COLS], name, SchemaMismatchError)
    return df


def record_columns(df: "DataFrame") -> list[str]:
    """The columns of ``df`` that belong to the record (not read_source's helpers)."""
    return [c for c in df.columns if c not in HELPER_COLS]


# --------------------------------------------------------------------------- validation


def _type_name(dtype: "DataType") -> str:
    return dtype.simpleString().upper()


def _is_numeric(dtype: "DataType") -> bool:
    from pyspark.sql.types import NumericType

    return isinstance(dtype, NumericType)


def _convert(
    df: "DataFrame", column: str, src_type: "DataType", target: "DataType", source_format: str, options: dict[str, str]
) -> "Column":
    """``column`` converted to ``target``; null where the value does not convert."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DateType, MapType, StringType, StructType, TimestampType

    src = F.col(_q(column))
    if isinstance(src_type, StringType):
        if isinstance(target, (StructType, ArrayType, MapType)) and source_format == "json":
            converted = F.from_json(src, target)
        elif isinstance(target, DateType) and _option(options, "dateFormat"):
            converted = F.try_to_timestamp(src, F.lit(_option(options, "dateFormat"))).cast("date")
        elif isinstance(target, TimestampType) and _option(options, "timestampFormat"):
            converted = F.try_to_timestamp(src, F.lit(_option(options, "timestampFormat")))
        else:
            converted = src.try_cast(target)
    else:
        converted = src.try_cast(target)
    try:
        df.select(converted).schema  # analysis only, no job: can Spark convert this type at all?
    except AnalysisException:
        # e.g. a Parquet struct where an INT is declared: no value converts.
        converted = F.lit(None).cast(target)
    return converted


def _render_value(src: "Column", src_type: "DataType", quoted: bool) -> "Column":
    from pyspark.sql import functions as F

    text = src.try_cast("string")
    short = F.when(
        F.length(text) > _MAX_VALUE_CHARS, F.concat(F.substring(text, 1, _MAX_VALUE_CHARS), F.lit("..."))
    ).otherwise(text)
    if quoted:
        short = F.concat(F.lit("'"), short, F.lit("'"))
    return F.coalesce(short, F.lit(f"a {_type_name(src_type)} value"))


def _render_record(df: "DataFrame", columns: Sequence[str], source_format: str, options: dict[str, str]) -> "Column":
    """The record as text, for the quarantine ``raw`` column: CSV again for CSV, JSON otherwise."""
    from pyspark.sql import functions as F

    record = F.struct(*[F.col(_q(c)) for c in columns])
    if source_format == "csv":
        csv_options = {k: v for k, v in options.items() if k.lower() in ("sep", "delimiter", "quote", "escape")}
        return F.to_csv(record, csv_options)
    return F.to_json(record)


def _malformed_reason(source_format: str, columns: Sequence[str], name: str | None) -> str:
    if source_format == "csv":
        return (
            f"malformed CSV record (expected {len(columns)} columns: {', '.join(columns)}); "
            f"check the field count, the separator and the quoting of this line"
        )
    return (
        "malformed JSON record (not one JSON object per line); if records span several lines set "
        f"{_setting(name, 'options')}.multiLine: 'true'"
    )


def validate_records(
    df: "DataFrame",
    schema: "StructType",
    table: TableSource,
    source_format: str,
    name: str | None = None,
) -> "tuple[DataFrame, DataFrame]":
    """Split raw records into good rows, typed per ``schema``, and bad rows with their reason.

    :func:`check_records` followed by :func:`split_checked`; see those for the details.

    Parameters
    ----------
    df, schema, table, source_format, name : as for :func:`check_records`.

    Returns
    -------
    good : the record columns, typed, at most one row per key.
    bad : ``source`` (file URI), ``raw`` (the malformed line, or the record re-rendered as
        CSV or JSON; not truncated), ``error`` (the reason), ``kind`` (``malformed``,
        ``type_error``, ``null_key`` or ``duplicate_key``).

    Raises
    ------
    SchemaMismatchError
        ``on_type_error`` is ``fail`` and a value does not convert (this runs a Spark job).
    """
    return split_checked(check_records(df, schema, table, source_format, name))


def split_checked(checked: "DataFrame") -> "tuple[DataFrame, DataFrame]":
    """Good rows (record columns only) and bad rows (``source, raw, error, kind``) of :func:`check_records`."""
    from pyspark.sql import functions as F

    columns = [c for c in checked.columns if c not in CHECK_COLS]
    good = checked.where(F.col(ERROR_COL).isNull()).select(*[F.col(_q(c)) for c in columns])
    bad = checked.where(F.col(ERROR_COL).isNotNull()).select(
        F.col(INPUT_FILE_COL).alias("source"),
        F.col(RAW_COL).alias("raw"),
        F.col(ERROR_COL).alias("error"),
        F.col(KIND_COL).alias("kind"),
    )
    return good, bad


def check_records(
    df: "DataFrame",
    schema: "StructType",
    table: TableSource,
    source_format: str,
    name: str | None = None,
) -> "DataFrame":
    """Type the raw records per ``schema`` and give each its verdict: null, or why it is bad.

    Checks, in order (a bad record gets the first reason that applies): malformed record
    (``_corrupt_record`` set), a value that does not convert to its column's declared type
    (non-null source, null after ``try_cast``, or a numeric value that would lose
    precision), a null key column, and a key an earlier record of the batch already has
    (the first by input order is kept).

    Parameters
    ----------
    df : raw records as :func:`read_source` returns them.
    schema : the declared schema (or the inferred one); columns of ``df`` it does not
        name (extra columns kept by ``evolve_schema``) pass through unconverted.
    table : the table's settings: ``keys``, ``on_type_error``, ``options`` (``dateFormat``,
        ``timestampFormat`` and the CSV ``sep``/``quote`` used to re-render records).
    source_format : ``csv``, ``json`` or ``parquet``: how reasons and raw records are written.
    name : the table's name, used to name its settings in errors.

    Returns
    -------
    DataFrame
        the record columns typed per ``schema``, then ``_input_file``, ``_raw`` (for bad
        records: the malformed line, or the record re-rendered as CSV or JSON, not
        truncated), ``_error`` (null for a good record, else the reason) and ``_kind``
        (``malformed``, ``type_error``, ``null_key`` or ``duplicate_key``). Persist it
        before using it twice: ``_input_pos`` of an unpersisted read is recomputed.

    Raises
    ------
    SchemaMismatchError
        ``on_type_error`` is ``fail`` and a value does not convert (this runs a Spark job).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if INPUT_FILE_COL not in df.columns:
        df = df.withColumn(INPUT_FILE_COL, F.lit(None).cast("string"))
    if INPUT_POS_COL not in df.columns:
        df = df.withColumn(INPUT_POS_COL, F.struct(F.lit(0).cast("long").alias("block"),
                                                   F.monotonically_increasing_id().alias("row")))
    columns = record_columns(df)
    keys = _resolve_keys(table, columns, name, SchemaMismatchError)
    declared = {f.name.lower(): f.dataType for f in schema.fields}
    source_types = {f.name: f.dataType for f in df.schema.fields}
    has_corrupt = CORRUPT_COL in df.columns
    options = dict(table.options)

    typed: dict[str, "Column"] = {}
    type_errors: list["Column"] = []
    for column in columns:
        src, src_type, target = F.col(_q(column)), source_types[column], declared.get(column.lower())
        if target is None or target == src_type:
            typed[column] = src
            continue
        converted = _convert(df, column, src_type, target, source_format, options)
        failed = src.isNotNull() & converted.isNull()
        if _is_numeric(src_type) and _is_numeric(target):
            # try_cast(1.5 AS INT) is 1, not null: a narrowing that changes the value is an error too.
            failed = failed | (converted.isNotNull() & (converted.try_cast(src_type) != src))
        # Strings read from CSV/JSON are shown as they were written; typed Parquet values with their type.
        from_text = source_format in ("csv", "json")
        shown = _render_value(src, src_type, quoted=from_text or src_type.typeName() == "string")
        prefix = "" if from_text else f"{_type_name(src_type)} value "
        type_errors.append(
            F.when(failed, F.concat(F.lit(f"column '{column}': {prefix}"), shown,
                                    F.lit(f" is not a valid {_type_name(target)}")))
        )
        typed[column] = converted

    corrupt_error = F.col(CORRUPT_COL).isNotNull() if has_corrupt else F.lit(False)
    type_error = F.lit(None).cast("string")
    if type_errors:
        joined = F.concat_ws("; ", *type_errors)
        type_error = F.when(~corrupt_error & (joined != ""), joined)
    if type_errors and table.on_type_error == "fail":
        first = df.where(type_error.isNotNull()).select(INPUT_FILE_COL, type_error.alias("e")).first()
        if first is not None:
            raise SchemaMismatchError(
                f"table {name or '?'}: {first['e']} (file {first[INPUT_FILE_COL]}). Fix the source, change the "
                f"column's type in {_setting(name, 'schema')}, or set {_setting(name, 'on_type_error')}: "
                f"quarantine to quarantine such records instead of failing"
            )
    key_error = F.coalesce(
        *[F.when(typed[k].isNull(), F.lit(f"key column '{k}' is null; every row needs a key")) for k in keys]
    )
    malformed = F.lit(_malformed_reason(source_format, columns, name))
    error = (
        F.when(corrupt_error, malformed).when(type_error.isNotNull(), type_error)
        .when(key_error.isNotNull(), key_error)
    )
    # Rendered from the source values, and only for bad records: good ones never need it.
    rendered = _render_record(df, columns, source_format, options)
    raw = F.coalesce(F.col(CORRUPT_COL), rendered) if has_corrupt else rendered
    checked = df.select(
        *[typed[c].alias(c) for c in columns],
        INPUT_FILE_COL,
        INPUT_POS_COL,
        F.when(error.isNotNull(), raw).alias(RAW_COL),
        error.alias(ERROR_COL),
        F.when(corrupt_error, F.lit(KIND_MALFORMED)).when(type_error.isNotNull(), F.lit(KIND_TYPE))
        .when(key_error.isNotNull(), F.lit(KIND_NULL_KEY)).alias(KIND_COL),
    )

    # Duplicates are looked for among the records that passed every other check only.
    in_order = Window.partitionBy(*[F.col(_q(k)) for k in keys], F.col(ERROR_COL).isNull()).orderBy(
        INPUT_FILE_COL, INPUT_POS_COL
    )
    key_text = F.concat_ws(", ", *[F.concat(F.lit(f"{k}="), F.col(_q(k)).cast("string")) for k in keys])
    duplicate_error = F.concat(
        F.lit("duplicate key "), key_text,
        F.lit(": an earlier record of this batch has the same key and is kept (from "),
        F.first(INPUT_FILE_COL).over(in_order), F.lit(")"),
    )
    is_duplicate = F.col(ERROR_COL).isNull() & (F.row_number().over(in_order) > 1)
    # A duplicate passed every check, so its typed values render it faithfully.
    duplicate_raw = _render_record(checked, columns, source_format, options)
    return checked.select(
        *[F.col(_q(c)) for c in columns],
        INPUT_FILE_COL,
        F.when(is_duplicate, duplicate_raw).otherwise(F.col(RAW_COL)).alias(RAW_COL),
        F.when(is_duplicate, duplicate_error).otherwise(F.col(ERROR_COL)).alias(ERROR_COL),
        F.when(is_duplicate, F.lit(KIND_DUPLICATE_KEY)).otherwise(F.col(KIND_COL)).alias(KIND_COL),
    )


# --------------------------------------------------------------------------- rows to write


def bronze_rows(good: "DataFrame", run_id: str) -> "DataFrame":
    """Good rows plus ``_run_id`` and ``_ingested_at`` (of the run that last inserted or changed the row)."""
    from pyspark.sql import functions as F

    return good.select(
        "*", F.lit(run_id).alias(RUN_ID_COL), F.current_timestamp().alias(INGESTED_AT_COL)
    )


def quarantine_rows(bad: "DataFrame", run_id: str, raw_max_chars: int) -> "DataFrame":
    """Bad rows as the quarantine table holds them, keyed by ``record_hash``.

    ``record_hash`` is sha256 of (source, full raw record, error, occurrence): the same bad
    record read again gets the same hash, so a rerun adds nothing. The occurrence number
    (1, 2, ... among identical records of one file) keeps a line repeated in a file from
    collapsing into one row; identical rows are interchangeable, so the numbering is stable.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    same = Window.partitionBy("source", "raw", "error").orderBy("source")
    occurrence = F.row_number().over(same)
    record_hash = F.sha2(
        F.concat_ws(
            "\u0000",
            F.coalesce(F.col("source"), F.lit("")),
            F.coalesce(F.col("raw"), F.lit("")),
            F.col("error"),
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
    if not delta_io.is_delta_table(spark, uri):
        return []
    target = delta_io.read_table(spark, uri).schema.fields
    existing = {f.name.lower() for f in target}
    incoming = {f.name.lower() for f in rows.schema.fields}
    new = [f for f in rows.schema.fields if f.name.lower() not in existing]
    gone = [f.name for f in target if f.name.lower() not in incoming]
    if gone and not table.evolve_schema:
        raise SchemaMismatchError(
            f"bronze table {uri} has column(s) {', '.join(gone)} that {_setting(name, 'schema')} does not "
            f"declare (an earlier run added them). Add them to the schema, or set "
            f"{_setting(name, 'evolve_schema')}: true to keep them (unchanged) for rows that lack them"
        )
    # With evolve_schema off, new columns can only be ones the schema now declares: add them too.
    if new:
        columns = ", ".join(f"{_q(f.name)} {f.dataType.simpleString()}" for f in new)
        spark.sql(f"ALTER TABLE delta.{_q(uri)} ADD COLUMNS ({columns})")
    return [f.name for f in new]


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
        f"{_setting(name, 'source')} at files of one layout"
    ) from exc


def _add_counts(report: RunReport, counts: dict[str, int]) -> None:
    for key, value in counts.items():
        report.counts[key] = report.counts.get(key, 0) + value


def ingest_table(
    spark: "SparkSession",
    profile: Profile,
    name: str,
    run_id: str | None = None,
    report: RunReport | None = None,
) -> RunReport:
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
    from py4j.protocol import Py4JJavaError
    from pyspark import StorageLevel
    from pyspark.errors.exceptions.captured import CapturedException
    from pyspark.sql.types import StructType

    table = table_config(profile, name)
    run_id = run_id or (report.run_id if report else new_run_id(JOB))
    report = report or RunReport(job=JOB, run_id=run_id)
    bronze_uri, quarantine_uri = bronze_table_uri(profile, name), quarantine_table_uri(profile, name)
    details: dict = report.details.setdefault("tables", {}).setdefault(name, {})
    details.update(source=table.source, format=table.format, bronze=bronze_uri, quarantine=quarantine_uri)
    started = time.perf_counter()

    schema = declared_schema(table, name)
    with report.timed(f"{name}.read"):
        # Persisted: the positions (monotonically_increasing_id) must be the ones counted here.
        raw = read_source(spark, table, name).persist(StorageLevel.MEMORY_AND_DISK)
    checked = None
    try:
        with report.timed(f"{name}.read"):
            try:
                n_inputs = raw.count()
            except (Py4JJavaError, CapturedException) as exc:
                _raise_read_failure(exc, table, name)
        counts = dict(inputs=n_inputs, inserted=0, updated=0, unchanged=0, quarantined=0)
        if n_inputs == 0:
            report.warnings.append(f"table {name}: {table.source} holds no records; nothing was written")
            details["counts"] = counts
            _add_counts(report, counts)
            return report

        columns = record_columns(raw)
        record_schema = schema or StructType([f for f in raw.schema.fields if f.name in columns])
        checked = check_records(raw, record_schema, table, table.format, name)
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
        with report.timed(f"{name}.validate"):
            by_kind = {r[KIND_COL]: r["count"] for r in checked.groupBy(KIND_COL).count().collect()}
        n_good = by_kind.pop(None, 0)
        n_bad = sum(by_kind.values())
        if n_good + n_bad != n_inputs:
            raise JobFailed(
                f"accounting mismatch for table {name} in run {run_id}: read {n_inputs} records but "
                f"{n_good} are good and {n_bad} quarantined; nothing was written"
            )
        if by_kind:
            details["quarantine_reasons"] = by_kind

        good, bad = split_checked(checked)
        keys = _resolve_keys(table, columns, name, SchemaMismatchError)
        rows = bronze_rows(good, run_id)
        with report.timed(f"{name}.write_bronze"):
            added = _prepare_bronze(spark, bronze_uri, rows, table, name)
            bronze_metrics = delta_io.merge_upsert(
                spark, rows, bronze_uri, keys, compare_columns=columns, evolve_schema=table.evolve_schema
            )
        quarantine_metrics: dict[str, int] = {}
        if n_bad:
            with report.timed(f"{name}.write_quarantine"):
                quarantine_metrics = delta_io.merge_insert_new(
                    spark, quarantine_rows(bad, run_id, table.raw_max_chars), quarantine_uri, [QUARANTINE_KEY]
                )
    finally:
        for frame in (raw, checked):
            if frame is not None:
                frame.unpersist()

    inserted = bronze_metrics.get("num_inserted_rows", 0)
    updated = bronze_metrics.get("num_updated_rows", 0)
    unchanged = n_good - inserted - updated
    if unchanged < 0:
        raise JobFailed(
            f"accounting mismatch for table {name} in run {run_id}: {n_good} good rows but the MERGE into "
            f"{bronze_uri} inserted {inserted} and updated {updated}; see that table's history"
        )
    counts.update(inserted=inserted, updated=updated, unchanged=unchanged, quarantined=n_bad)
    elapsed = time.perf_counter() - started
    details.update(
        counts=counts,
        bronze_merge=bronze_metrics,
        quarantine_new=quarantine_metrics.get("num_inserted_rows", 0),
        elapsed_s=round(elapsed, 3),
    )
    if added:
        details["added_columns"] = added
        report.warnings.append(f"table {name}: added column(s) {', '.join(added)} to {bronze_uri}")
    if n_bad:
        report.warnings.append(f"table {name}: {n_bad} record(s) quarantined in {quarantine_uri}")
    _add_counts(report, counts)
    report.outputs[f"bronze.{name}"] = bronze_uri
    if n_bad:
        report.outputs[f"quarantine.{name}"] = quarantine_uri
    report.throughput[f"{name}.records_per_s"] = round(n_inputs / elapsed, 1) if elapsed > 0 else 0.0
    return report


def ingest_tables(
    spark: "SparkSession",
    profile: Profile,
    names: Iterable[str] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Ingest the tables ``names`` (default: every table of ``ingest_tables.tables``), one after another.

    A table that fails with a lakeloop error does not stop the others; its error is kept
    in ``report.details["tables"][name]["error"]`` and raised at the end.

    Raises
    ------
    ConfigError
        no tables configured, or a name that is not configured (checked before any work).
    LakeloopError
        the error of the one table that failed; JobFailed naming each when several did.
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
    report = report or RunReport(job=JOB, run_id=new_run_id(JOB))
    for key in ("inputs", "inserted", "updated", "unchanged", "quarantined"):
        report.counts.setdefault(key, 0)
    failures: list[tuple[str, LakeloopError]] = []
    for name in selected:
        try:
            ingest_table(spark, profile, name, run_id=report.run_id, report=report)
        except LakeloopError as exc:
            report.details.setdefault("tables", {}).setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
            failures.append((name, exc))
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        raise JobFailed(
            f"{len(failures)} of {len(selected)} tables failed: "
            + "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures)
        ) from failures[0][1]
    return report

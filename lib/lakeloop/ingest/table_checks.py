"""Validating a table's raw records: typed per the declared schema, each with a verdict.

:func:`validate_records` (:func:`check_records`, then :func:`split_checked`) casts each
column to its declared type and splits the records into good rows (typed, one per key)
and bad rows (``raw`` record + ``error`` reason). A record is bad when it is malformed
(wrong field count, broken JSON), when a value does not convert to its column's type,
when a key column is null, or when an earlier record of the same batch has the same key.
Pure transformations of DataFrames (from :func:`lakeloop.ingest.table_read.read_source`);
only ``on_type_error: fail`` runs a Spark job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.config import TableSource
from lakeloop.errors import SchemaMismatchError, record_failure
from lakeloop.ingest.table_read import (CORRUPT_COL, CORRUPT_REASON_COL, INPUT_FILE_COL, INPUT_POS_COL, csv_options,
                                        quote_column, reader_option, record_columns, resolve_keys, setting_name)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

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
KIND_KEY_EXISTS = "key_exists"  # mode append: the key is in bronze with other values
# Not a bad record: an earlier record of a key the source also holds a later one of (not written).
KIND_SUPERSEDED = "superseded"
# Not a bad record either: a record of a key erased with lakeloop forget (not written, not quarantined).
KIND_FORGOTTEN = "forgotten"

_MAX_VALUE_CHARS = 80


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

    src = F.col(quote_column(column))
    if isinstance(src_type, StringType):
        if isinstance(target, (StructType, ArrayType, MapType)) and source_format == "json":
            converted = F.from_json(src, target)
        elif isinstance(target, DateType) and reader_option(options, "dateFormat"):
            converted = F.try_to_timestamp(src, F.lit(reader_option(options, "dateFormat"))).cast("date")
        elif isinstance(target, TimestampType) and reader_option(options, "timestampFormat"):
            converted = F.try_to_timestamp(src, F.lit(reader_option(options, "timestampFormat")))
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

    record = F.struct(*[F.col(quote_column(c)) for c in columns])
    if source_format == "csv":
        csv_options = {k: v for k, v in options.items() if k.lower() in ("sep", "delimiter", "quote", "escape")}
        return F.to_csv(record, csv_options)
    return F.to_json(record)


def csv_problem(record: str | None, columns: Sequence[str], sep: str = ",", quote: str = '"',
                escape: str = '"') -> str | None:
    """What is wrong with a CSV record Spark could not fit to the header, in terms of its columns."""
    import csv
    import io

    if record is None:
        return None
    try:
        rows = list(csv.reader(io.StringIO(record, newline=""), delimiter=sep, quotechar=quote,
                               doublequote=escape == quote, escapechar=None if escape == quote else escape,
                               strict=True))
    except csv.Error as exc:
        return f"the record does not parse as CSV ({exc}); check its quoting"
    except Exception as exc:  # noqa: BLE001 - any failure a record provokes is its quarantine reason
        return record_failure(exc, "the CSV check")
    fields = rows[0] if rows else []
    expected = len(columns)
    if len(fields) < expected:
        return (f"{len(fields)} field(s) where the header has {expected}: no value for "
                f"{', '.join(columns[len(fields):])}; check the separator and the quoting of this record")
    if len(fields) > expected:
        return (f"{len(fields)} fields where the header has {expected} ({', '.join(columns)}): "
                f"{len(fields) - expected} more than it names; check the separator and the quoting of this record")
    return f"the fields do not fit the {expected} columns ({', '.join(columns)}); check the quoting of this record"


def _csv_problem_udf(columns: Sequence[str], options: dict[str, str]):
    from pyspark.sql.functions import pandas_udf

    sep = reader_option(options, "sep") or reader_option(options, "delimiter") or ","
    quote = reader_option(options, "quote", '"') or '"'
    escape = reader_option(options, "escape", '"') or '"'
    names = list(columns)

    @pandas_udf("string")
    def problems(records: pd.Series) -> pd.Series:
        from lakeloop.ingest.table_checks import csv_problem

        return records.map(lambda r: csv_problem(r, names, sep, quote, escape))

    return problems


def _malformed_reason(df: "DataFrame", source_format: str, columns: Sequence[str], options: dict[str, str],
                      name: str | None) -> "Column":
    """Why a malformed record was refused, as specifically as the reader lets us say."""
    from pyspark.sql import functions as F

    if source_format == "csv":
        return F.concat(F.lit("malformed CSV record: "), _csv_problem_udf(columns, options)(F.col(CORRUPT_COL)))
    generic = F.lit(
        "malformed JSON record (not one JSON object per line); if records span several lines set "
        f"{setting_name(name, 'options')}.multiLine: 'true'"
    )
    if CORRUPT_REASON_COL not in df.columns:
        return generic
    return F.coalesce(F.concat(F.lit("malformed JSON record: "), F.col(CORRUPT_REASON_COL)), generic)


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
    good = checked.where(F.col(ERROR_COL).isNull() & F.col(KIND_COL).isNull()).select(
        *[F.col(quote_column(c)) for c in columns])
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
    existing: "DataFrame | None" = None,
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
    existing : with ``mode: append``, bronze's rows in the records' column names: a good record whose
        key it holds with other values becomes ``key_exists``.

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
    from pyspark.sql import functions as F

    if INPUT_FILE_COL not in df.columns:
        df = df.withColumn(INPUT_FILE_COL, F.lit(None).cast("string"))
    if INPUT_POS_COL not in df.columns:
        df = df.withColumn(INPUT_POS_COL, F.struct(F.lit(0).cast("long").alias("block"),
                                                   F.monotonically_increasing_id().alias("row"),
                                                   F.lit(None).cast("timestamp").alias("modified")))
    columns = record_columns(df)
    keys = resolve_keys(table, columns, name, SchemaMismatchError)
    options = csv_options(table) if source_format == "csv" else dict(table.options)
    typed, type_errors = _typed_columns(df, columns, schema, source_format, options)
    type_errors += _undecodable_text(df, columns, source_format, options, name)
    corrupt_error = F.col(CORRUPT_COL).isNotNull() if CORRUPT_COL in df.columns else F.lit(False)
    type_error = F.lit(None).cast("string")
    if type_errors:
        joined = F.concat_ws("; ", *type_errors)
        type_error = F.when(~corrupt_error & (joined != ""), joined)
        if table.on_type_error == "fail":
            _fail_on_type_error(df, type_error, name)
    checked = _with_verdict(df, columns, typed, keys, corrupt_error, type_error, options, source_format, name)
    checked = _mark_duplicate_keys(checked, columns, keys, source_format, options, _order_column(table, columns, name),
                                   table.mode == "append")
    if existing is None:
        return checked
    return _mark_existing_keys(checked, existing, columns, keys, source_format, options, name)


def _mark_existing_keys(checked: "DataFrame", existing: "DataFrame", columns: Sequence[str], keys: Sequence[str],
                        source_format: str, options: dict[str, str], name: str | None) -> "DataFrame":
    """Good records whose key ``existing`` (bronze, in the records' column names) holds with other
    values become ``key_exists``: ``mode: append`` never changes a written record."""
    from pyspark.sql import functions as F

    shared = [c for c in columns if c in existing.columns]
    values = [c for c in shared if c not in keys]
    theirs = existing.select(*[F.col(quote_column(c)).alias(f"_b_{c}") for c in shared],
                             F.lit(True).alias("_b_found"))
    on = [F.col(quote_column(k)).eqNullSafe(F.col(f"_b_{k}")) for k in keys]
    condition = on[0]
    for part in on[1:]:
        condition = condition & part
    joined = checked.join(theirs, condition, "left")
    differs = F.lit(False)
    for c in values:
        differs = differs | ~F.col(quote_column(c)).eqNullSafe(F.col(f"_b_{c}"))
    conflict = F.col(ERROR_COL).isNull() & F.col(KIND_COL).isNull() & F.col("_b_found").isNotNull() & differs
    key_text = F.concat_ws(", ", *[F.concat(F.lit(f"{k}="), F.col(quote_column(k)).cast("string")) for k in keys])
    error = F.concat(F.lit("key "), key_text, F.lit(
        f" is already in bronze with other values, and {setting_name(name, 'mode')} is append, which never changes a "
        f"written record: correct the record at its source, or set mode to upsert to take corrections"))
    return joined.select(
        *[F.col(quote_column(c)) for c in columns], INPUT_FILE_COL,
        F.when(conflict, _render_record(joined, columns, source_format, options)).otherwise(F.col(RAW_COL))
        .alias(RAW_COL),
        F.when(conflict, error).otherwise(F.col(ERROR_COL)).alias(ERROR_COL),
        F.when(conflict, F.lit(KIND_KEY_EXISTS)).otherwise(F.col(KIND_COL)).alias(KIND_COL))


def _typed_columns(
    df: "DataFrame", columns: Sequence[str], schema: "StructType", source_format: str, options: dict[str, str]
) -> tuple[dict[str, "Column"], list["Column"]]:
    """Each record column converted to its declared type, and per converted column the reason
    (null when the value converted) a value does not fit."""
    from pyspark.sql import functions as F

    declared = {f.name.lower(): f.dataType for f in schema.fields}
    source_types = {f.name: f.dataType for f in df.schema.fields}
    typed: dict[str, "Column"] = {}
    type_errors: list["Column"] = []
    for column in columns:
        src, src_type, target = F.col(quote_column(column)), source_types[column], declared.get(column.lower())
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
    return typed, type_errors


def _undecodable_text(df: "DataFrame", columns: Sequence[str], source_format: str, options: dict[str, str],
                      name: str | None) -> list["Column"]:
    """Per text column of a CSV or JSON source, the reason a value holds bytes its encoding could
    not decode: Spark reads them as U+FFFD, which would reach bronze silently as changed text."""
    from pyspark.sql import functions as F

    if source_format not in ("csv", "json"):
        return []
    encoding = options.get("encoding", options.get("charset", "UTF-8"))
    hint = (f" is not valid {encoding} (Spark read its bytes as U+FFFD); if the file is in another encoding, set "
            f"{setting_name(name, 'options.encoding')} (e.g. ISO-8859-1 or windows-1252)")
    return [F.when(F.col(quote_column(c)).contains("\ufffd"),
                   F.concat(F.lit(f"column '{c}': "), _render_value(F.col(quote_column(c)), t, quoted=True),
                            F.lit(hint)))
            for c, t in ((f.name, f.dataType) for f in df.schema.fields if f.name in columns)
            if t.typeName() == "string"]


def _fail_on_type_error(df: "DataFrame", type_error: "Column", name: str | None) -> None:
    """``on_type_error: fail``: raise with the first value that does not fit (runs a Spark job)."""
    first = df.where(type_error.isNotNull()).select(INPUT_FILE_COL, type_error.alias("e")).first()
    if first is not None:
        raise SchemaMismatchError(
            f"table {name or '?'}: {first['e']} (file {first[INPUT_FILE_COL]}). Fix the source, change the "
            f"column's type in {setting_name(name, 'schema')}, or set {setting_name(name, 'on_type_error')}: "
            f"quarantine to quarantine such records instead of failing"
        )


def _with_verdict(
    df: "DataFrame", columns: Sequence[str], typed: dict[str, "Column"], keys: Sequence[str],
    corrupt_error: "Column", type_error: "Column", options: dict[str, str], source_format: str, name: str | None,
) -> "DataFrame":
    """The typed record columns plus ``_raw``, ``_error`` and ``_kind``: malformed, then type
    error, then null key (the first that applies)."""
    from pyspark.sql import functions as F

    key_error = F.coalesce(
        *[F.when(typed[k].isNull(), F.lit(f"key column '{k}' is null; every row needs a key")) for k in keys]
    )
    malformed = F.when(corrupt_error, _malformed_reason(df, source_format, columns, options, name))
    error = (
        F.when(corrupt_error, malformed).when(type_error.isNotNull(), type_error)
        .when(key_error.isNotNull(), key_error)
    )
    # Rendered from the source values, and only for bad records: good ones never need it.
    rendered = _render_record(df, columns, source_format, options)
    raw = F.coalesce(F.col(CORRUPT_COL), rendered) if CORRUPT_COL in df.columns else rendered
    return df.select(
        *[typed[c].alias(c) for c in columns],
        INPUT_FILE_COL,
        INPUT_POS_COL,
        F.when(error.isNotNull(), raw).alias(RAW_COL),
        error.alias(ERROR_COL),
        F.when(corrupt_error, F.lit(KIND_MALFORMED)).when(type_error.isNotNull(), F.lit(KIND_TYPE))
        .when(key_error.isNotNull(), F.lit(KIND_NULL_KEY)).alias(KIND_COL),
    )


def _order_column(table: TableSource, columns: Sequence[str], name: str | None) -> "Column":
    """What makes one record of a key later than another: ``order_by``'s column (typed), or the
    record's file's modification time.

    Raises
    ------
    SchemaMismatchError
        ``order_by`` names no column of the records.
    """
    from pyspark.sql import functions as F

    if table.mode == "append":
        return F.lit(0)  # every record of a key ties: the first in input order is kept
    if table.order_by is None:
        return F.col(f"{INPUT_POS_COL}.modified")
    match = [c for c in columns if c.lower() == table.order_by.lower()]
    if not match:
        raise SchemaMismatchError(
            f"table {name or '?'}: {setting_name(name, 'order_by')} = {table.order_by!r} is not a column of its "
            f"records ({', '.join(columns)}); name one of them, or leave it unset to let the newest file win")
    return F.col(quote_column(match[0]))


def _mark_duplicate_keys(
    checked: "DataFrame", columns: Sequence[str], keys: Sequence[str], source_format: str, options: dict[str, str],
    order: "Column", append: bool = False,
) -> "DataFrame":
    """Among the good records of a key, the latest by ``order`` wins: earlier ones become
    ``superseded`` (no error: not written, not quarantined); of several tying for the latest, the
    first in input order is kept and the rest become ``duplicate_key``. Drops ``_input_pos``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # Duplicates are looked for among the records that passed every other check only.
    key_cols = [F.col(quote_column(k)) for k in keys]
    good = F.col(ERROR_COL).isNull()
    latest = F.max(order).over(Window.partitionBy(*key_cols, good))
    marked = checked.withColumn("_superseded", good & latest.isNotNull() & (order.isNull() | (order < latest)))
    in_order = Window.partitionBy(*key_cols, good, F.col("_superseded")).orderBy(INPUT_FILE_COL, INPUT_POS_COL)
    key_text = F.concat_ws(", ", *[F.concat(F.lit(f"{k}="), F.col(quote_column(k)).cast("string")) for k in keys])
    duplicate_error = F.concat(
        F.lit("duplicate key "), key_text,
        F.lit(": an earlier record of this batch has the same key and is kept (mode append keeps a key's first "
              "record; from " if append else ": an earlier record of this batch has the same key, is as recent, "
                                             "and is kept (from "),
        F.first(INPUT_FILE_COL).over(in_order), F.lit(")"),
    )
    is_duplicate = good & ~F.col("_superseded") & (F.row_number().over(in_order) > 1)
    # A duplicate passed every check, so its typed values render it faithfully.
    duplicate_raw = _render_record(marked, columns, source_format, options)
    return marked.select(
        *[F.col(quote_column(c)) for c in columns],
        INPUT_FILE_COL,
        F.when(is_duplicate, duplicate_raw).otherwise(F.col(RAW_COL)).alias(RAW_COL),
        F.when(is_duplicate, duplicate_error).otherwise(F.col(ERROR_COL)).alias(ERROR_COL),
        F.when(is_duplicate, F.lit(KIND_DUPLICATE_KEY)).when(F.col("_superseded"), F.lit(KIND_SUPERSEDED))
        .otherwise(F.col(KIND_COL)).alias(KIND_COL),
    )

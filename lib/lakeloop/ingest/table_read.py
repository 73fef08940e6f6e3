"""Reading a table's source as raw records: CSV, JSON lines or Parquet at any Hadoop URI.

:func:`read_source` reads the raw records. CSV and JSON columns are read as STRING, plus a
``_corrupt_record`` column (Spark's PERMISSIVE mode), so that no value is turned into null
by the reader; Parquet is read with its own types. Every record gets the file it came from
and a position that is the same on every read of the same input. Validation is
:mod:`lakeloop.ingest.table_checks`; the job is :mod:`lakeloop.ingest.tables`.

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

import json
from typing import TYPE_CHECKING, Sequence

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.config import TableSource, check_table_source
from lakeloop.errors import ConfigError, LakeloopError, SchemaMismatchError, SourceError, record_failure
from lakeloop.io import hadoop
from lakeloop.io.lakefs import LakeFiles

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

# Helper columns of read_source's output; everything else is a column of the record.
CORRUPT_COL = "_corrupt_record"
# Why a record is malformed, where the reader can tell (strict JSON); else null.
CORRUPT_REASON_COL = "_corrupt_reason"
INPUT_FILE_COL = "_input_file"
INPUT_POS_COL = "_input_pos"
HELPER_COLS = (CORRUPT_COL, CORRUPT_REASON_COL, INPUT_FILE_COL, INPUT_POS_COL)


# CSV as RFC 4180 unless a table says otherwise: a doubled quote inside a quoted field is one
# quote (Spark's default escape is a backslash), and a quoted field may hold line breaks, kept
# as they are (Spark reads line by line by default, splitting such a record in two).
CSV_DEFAULTS = {"quote": '"', "escape": '"', "multiLine": "true"}


# --------------------------------------------------------------------------- settings


def setting_name(name: str | None, key: str) -> str:
    """The full name of a table's setting, for messages: ``ingest_tables.tables.<name>.<key>``."""
    return f"ingest_tables.tables.{name or '<name>'}.{key}"


def unique_names(columns: Sequence[str], replace: str = "") -> dict[str, str]:
    """Each column -> a name unique without regard to case (a repeat gets ``_2``, ``_3`` ...),
    with every character of ``replace`` turned into ``_``. Unchanged names map to themselves."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        base = "".join("_" if ch in replace else ch for ch in column) or "_"
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.lower())
        names[column] = name
    return names


def quote_column(column: str) -> str:
    """A column name quoted for Spark, so names with dots or spaces are taken literally."""
    return "`" + column.replace("`", "``") + "`"


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
            f"{setting_name(name, 'schema')} = {table.schema!r} is not valid DDL ({first_line}); "
            f"write it like \"sample_id INT, path STRING, ink_fraction DOUBLE\""
        ) from exc
    lowered = [f.name.lower() for f in schema.fields]
    twice = sorted({n for n in lowered if lowered.count(n) > 1})
    if twice:
        raise ConfigError(f"{setting_name(name, 'schema')} declares column(s) {', '.join(twice)} more than once")
    resolve_keys(table, schema.fieldNames(), name, ConfigError)
    return schema


def resolve_keys(
    table: TableSource, columns: Sequence[str], name: str | None, error: type[LakeloopError]
) -> list[str]:
    """The key columns spelled as in ``columns`` (keys are matched case-insensitively)."""
    by_lower = {c.lower(): c for c in columns}
    missing = [k for k in table.keys if k.lower() not in by_lower]
    if missing:
        raise error(
            f"{setting_name(name, 'keys')} names {', '.join(map(repr, missing))}, which the table does not have "
            f"(its columns: {', '.join(columns) or 'none'}); fix the keys or the schema"
        )
    return [by_lower[k.lower()] for k in table.keys]


def reader_option(options: dict[str, str], key: str, default: str | None = None) -> str | None:
    """A reader option by name, case-insensitively (Spark's reader options are)."""
    for k, v in options.items():
        if k.lower() == key.lower():
            return v
    return default


# --------------------------------------------------------------------------- reading


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
            f"{', '.join(source_columns)}). Fix the source, or change {setting_name(name, 'schema')} to match it "
            f"(names are matched case-insensitively)."
        )
    if extra and not table.evolve_schema:
        raise SchemaMismatchError(
            f"undeclared column(s) {', '.join(extra)} in {where}: {setting_name(name, 'schema')} does not declare them. "
            f"Set {setting_name(name, 'evolve_schema')}: true to add them to the bronze table, or add them to "
            f"the schema (e.g. \"..., {extra[0]} STRING\")."
        )
    return spelling, extra


def _with_helpers(df: "DataFrame", columns: Sequence[tuple[str, str]], corrupt: bool) -> "DataFrame":
    """Select ``(source name, output name)`` columns plus the helper columns, straight off the file scan."""
    from pyspark.sql import functions as F

    return df.select(
        *[F.col(quote_column(src)).alias(out) for src, out in columns],
        *([F.col(CORRUPT_COL)] if corrupt else []),
        *_position_columns(),
    )


def _position_columns() -> list["Column"]:
    """The file a record came from, and its position: the split's offset, then an id that grows in
    read order within a task (one task reads a split from start to end, so sorting by (file,
    position) is input order, and the same input read with the same settings gives the same
    positions); and the file's modification time (which record of a key is the latest)."""
    from pyspark.sql import functions as F

    return [
        F.col("_metadata.file_path").alias(INPUT_FILE_COL),
        F.struct(F.col("_metadata.file_block_start").alias("block"),
                 F.monotonically_increasing_id().alias("row"),
                 F.col("_metadata.file_modification_time").alias("modified")).alias(INPUT_POS_COL),
    ]


def _empty_source(spark: "SparkSession", fields: Sequence[tuple[str, "DataType"]], corrupt: bool) -> "DataFrame":
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    schema = StructType(
        [StructField(n, t) for n, t in fields]
        + ([StructField(CORRUPT_COL, StringType())] if corrupt else [])
        + [
            StructField(INPUT_FILE_COL, StringType()),
            StructField(
                INPUT_POS_COL,
                StructType([StructField("block", LongType()), StructField("row", LongType()),
                            StructField("modified", TimestampType())]),
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


def csv_options(table: TableSource) -> dict[str, str]:
    """The CSV reader options: RFC 4180 (:data:`CSV_DEFAULTS`) under the table's own options."""
    given = {k.lower() for k in table.options}
    return {**{k: v for k, v in CSV_DEFAULTS.items() if k.lower() not in given}, **table.options}


def _read_csv(spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None,
              files: LakeFiles | None = None) -> "DataFrame":
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import StringType

    options = csv_options(table)
    header = (reader_option(options, "header", "false") or "false").strip().lower() == "true"

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
    frames = []
    for line_sep, paths in _csv_files_by_line_ending(spark, table, options, files).items():
        reader = _permissive_reader(spark, {**options, **({"lineSep": line_sep} if line_sep else {})}, fields)
        # Check every file's header against the first one's (by position, case-insensitively).
        frame = reader.option("enforceSchema", "false" if header else "true").csv(paths)
        # The helpers come off each file scan: a union has no _metadata.
        frames.append(_with_helpers(frame, [(src, out) for src, out, _ in fields], corrupt=True))
    df = frames[0]
    for frame in frames[1:]:
        df = df.unionByName(frame)
    return df


def _csv_files_by_line_ending(spark: "SparkSession", table: TableSource, options: dict[str, str],
                              files: LakeFiles | None) -> dict[str | None, str | list[str]]:
    """The source's files grouped by the line ending their records use (``"\r\n"`` or ``"\n"``).

    Spark's multi-line CSV reader keeps a line break inside a quoted field as it is only when told
    the record separator (otherwise it turns CRLF into LF); one read takes one separator, so
    files of each kind are read apart. A table that sets ``lineSep`` or ``multiLine: false``
    itself is read as it says, in one go (key None).
    """
    multi_line = (reader_option(options, "multiLine", "true") or "").strip().lower() == "true"
    if reader_option(options, "lineSep") is not None or not multi_line:
        return {None: table.source}
    files = files or LakeFiles()
    groups: dict[str | None, list[str]] = {}
    for uri in spark.read.text(table.source).inputFiles():
        path = hadoop.path_from_index(uri)
        fs, inner = files.filesystem(path)
        with fs.open_input_stream(inner) as stream:
            head = stream.read(1 << 16)
        at = head.find(b"\n")
        groups.setdefault("\r\n" if at > 0 and head[at - 1:at] == b"\r" else "\n", []).append(hadoop.literal_glob(path))
    return groups or {None: table.source}


def _read_json_lenient(spark: "SparkSession", table: TableSource, schema: "StructType | None",
                       name: str | None) -> "DataFrame":
    """JSON through Spark's own reader (``strict_json: false``, or ``multiLine``): it accepts what
    Jackson's lenient defaults accept and drops what follows a complete object on a line."""
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import StringType, StructType

    options = dict(table.options)
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
            raise _two_spellings(table, name, str(exc).splitlines()[0]) from exc
        if not _is_no_files(exc):
            raise
        inferred = StructType([])
    source_fields = [f for f in inferred.fields if f.name != CORRUPT_COL]
    if not inferred.fields:
        return _empty_source(spark, [(f.name, StringType()) for f in (schema.fields if schema else [])], True)
    fields = _json_fields(table, schema, name, [f.name for f in source_fields],
                          {f.name: f.dataType for f in source_fields})
    df = (
        _permissive_reader(spark, options, fields)
        .json(table.source)
    )
    return _with_helpers(df, [(src, out) for src, out, _ in fields], corrupt=True)


def _two_spellings(table: TableSource, name: str | None, detail: str) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"the JSON records of {table.source} spell a key in more than one way (upper/lower case): {detail}. "
        f"Spark matches JSON keys case-sensitively, so make the records use one spelling (the one in "
        f"{setting_name(name, 'schema')})"
    )


def _json_fields(table: TableSource, schema: "StructType | None", name: str | None, keys: Sequence[str],
                 inferred_types: dict) -> list[tuple[str, str, "DataType"]]:
    """(key in the records, column name, type to read it as) for the keys the records use."""
    from pyspark.sql.types import StringType

    if schema is None:
        # Keys spelled alike but for case ("id", "ID") are two columns: the later one gets "_2".
        names = unique_names(keys)
        return [(k, names[k], inferred_types.get(k, StringType())) for k in keys]
    # A declared column no record has is read as null: JSON writers (Spark's own included)
    # leave out null fields, so its absence is not an error.
    spelling, extra = _match_columns(keys, schema, table, name, f"the JSON records of {table.source}",
                                     missing_is_error=False)
    return [(spelling.get(f.name, f.name), f.name, StringType()) for f in schema.fields] + [
        (c, c, inferred_types.get(c, StringType()) if table.infer_schema else StringType()) for c in extra
    ]


def json_nesting(line: str) -> int:
    """How deeply the arrays and objects of a JSON text nest, counted without parsing it (brackets
    inside strings left out), so a hostile record is measured before any recursive parser sees it."""
    import re

    import numpy as np

    brackets = re.sub(r"[^\[\]{}]+", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", line))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def json_problem(line: str, max_nesting: int = 1000) -> str | None:
    """Why ``line`` is not a record of a JSON-lines file (None when it is one): nesting deeper than
    ``max_nesting`` (``ingest_tables.max_nesting``), what Python's json module rejects, or a JSON
    value that is not an object. Whatever else the line provokes is its reason too, never an error."""
    try:
        depth = json_nesting(line)
        if depth > max_nesting:
            return (f"nested {depth:,} levels deep, more than ingest_tables.max_nesting = {max_nesting:,}: have its "
                    f"producer flatten it, or raise the setting if such records are genuine")
        value = json.loads(line)
    except ValueError as exc:
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return f"not valid JSON: {message}{where}"
    except Exception as exc:  # noqa: BLE001 - any failure a record provokes is its quarantine reason
        return record_failure(exc, "the JSON check")
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        return f"a JSON value that is {kind}, not an object: each line must hold one record {{...}}"
    return None


def _json_problems_udf(max_nesting: int):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def problems(lines: pd.Series) -> pd.Series:
        from lakeloop.ingest.table_read import json_problem

        return lines.map(lambda line: json_problem(line, max_nesting))

    return problems


def _read_json(spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None,
               max_nesting: int = 1000) -> "DataFrame":
    """JSON lines read strictly: each non-blank line is checked with Python's json module; lines it
    rejects (or that hold no object) are malformed records with that reason, the rest are parsed
    by Spark with the declared columns read as text."""
    from pyspark.sql import functions as F

    options = dict(table.options)
    if not table.strict_json or (reader_option(options, "multiLine", "false") or "").lower() == "true":
        return _read_json_lenient(spark, table, schema, name)
    text_options = {k: v for k, v in options.items() if k.lower() in ("linesep", "encoding")}
    lines = spark.read.options(**text_options).text(table.source).where(F.trim("value") != "")
    # Bytes that are no UTF-8 are refused here: Arrow could not hand such a line to the check.
    utf8 = F.is_valid_utf8("value")
    lines = lines.withColumn(CORRUPT_REASON_COL, F.when(~utf8, F.lit(
        f"not valid UTF-8 (strict JSON lines are read as UTF-8): convert the file at its origin, or set "
        f"{setting_name(name, 'strict_json')}: false and {setting_name(name, 'options')}.encoding to read it as "
        f"another encoding")).otherwise(_json_problems_udf(max_nesting)(F.when(utf8, F.col("value")))))
    good = F.col(CORRUPT_REASON_COL).isNull()
    keys = sorted({r["key"] for r in lines.where(good).select(
        F.explode(F.map_keys(F.from_json("value", "map<string,string>"))).alias("key")).distinct().collect()})
    folded = [k.lower() for k in keys]
    twice = sorted({k for k in keys if folded.count(k.lower()) > 1})
    if twice and schema is not None:
        raise _two_spellings(table, name, f"keys {', '.join(twice)}")
    inferred_types: dict = {}
    if table.infer_schema and keys:
        inferred_types = {f.name: f.dataType for f in spark.read.options(**options).json(table.source).schema.fields}
    fields = _json_fields(table, schema, name, keys, inferred_types)
    from pyspark.sql.types import StructField, StructType

    struct = StructType([StructField(src, dtype) for src, _, dtype in fields])
    parsed = lines.select(
        "*", F.when(good, F.from_json("value", struct, {k: v for k, v in options.items() if k.lower() != "mode"}))
        .alias("_record"))
    columns = [(f"_record.{quote_column(src)}", out) for src, out, _ in fields]
    return parsed.select(
        *[F.col(src).alias(out) for src, out in columns],
        F.when(~good, F.col("value")).alias(CORRUPT_COL),
        CORRUPT_REASON_COL,
        *_position_columns(),
    )


def _read_parquet(
    spark: "SparkSession", table: TableSource, schema: "StructType | None", name: str | None
) -> "DataFrame":
    from pyspark.errors import AnalysisException

    options = dict(table.options)
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


def read_source(spark: "SparkSession", table: TableSource, name: str | None = None,
                files: LakeFiles | None = None, max_nesting: int = 1000) -> "DataFrame":
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
    files : how to reach the source without Spark (the profile's storage settings; default none,
        enough for ``file:``): a CSV source's first bytes are read to learn its line endings.
    max_nesting : JSON lines nested more deeply are malformed records, refused before parsing
        (``ingest_tables.max_nesting``).

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
    check_table_source(name or "<name>", table)
    # globStatus, not exists: a source may be a glob such as s3a://bucket/in/*.csv.
    if not hadoop.glob_exists(spark, table.source):
        raise SourceError(
            f"table source {table.source} does not exist; check {setting_name(name, 'source')} "
            f"and that the location is reachable from Spark"
        )
    readers = {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}
    if table.format not in readers:
        raise ConfigError(f"{setting_name(name, 'format')} = {table.format!r} is not one of csv, json, parquet")
    if table.format == "csv":
        df = _read_csv(spark, table, schema, name, files)
    elif table.format == "json":
        df = _read_json(spark, table, schema, name, max_nesting)
    else:
        df = readers[table.format](spark, table, schema, name)
    if schema is None:
        resolve_keys(table, [c for c in df.columns if c not in HELPER_COLS], name, SchemaMismatchError)
    return df


def record_columns(df: "DataFrame") -> list[str]:
    """The columns of ``df`` that belong to the record (not read_source's helpers)."""
    return [c for c in df.columns if c not in HELPER_COLS]

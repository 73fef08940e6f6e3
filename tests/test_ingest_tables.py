"""Table ingestion against the real local Spark + Delta session: quarantine, MERGE upserts, reruns."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from lakeloop.errors import ConfigError, SchemaMismatchError, SourceError
from lakeloop.ingest.table_checks import validate_records
from lakeloop.ingest.table_read import declared_schema, read_source, record_columns
from lakeloop.ingest.tables import ingest_table, ingest_tables, table_config
from lakeloop.io import delta
from lakeloop.report import RunReport
from support.lakes import layout, make_profile

SCHEMA = "sample_id INT, path STRING, label INT, ink_fraction DOUBLE, scan_batch STRING"
HEADER = "sample_id,path,label,ink_fraction,scan_batch"
GOOD_LINES = ["1,a.png,3,0.5,b1", "2,b.png,4,0.25,b1", "3,c.png,5,0.125,b2"]


def write_file(tmp_path: Path, name: str, lines: list[str]) -> str:
    path = tmp_path / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"file:{path}"


def csv_table(source: str, **settings) -> dict:
    table = {"source": source, "format": "csv", "keys": ["sample_id"], "schema": SCHEMA,
             "options": {"header": "true"}}
    table.update(settings)
    return table


def profile_with(lake: str, **tables: dict):
    return make_profile(lake, ("ingest_tables.tables", tables))


def validate(spark, profile, name: str):
    """read_source + validate_records, collected: (good rows, bad rows, number of records read)."""
    from pyspark.sql.types import StructType

    table = table_config(profile, name)
    raw = read_source(spark, table, name).cache()
    inferred = StructType([f for f in raw.schema.fields if f.name in record_columns(raw)])
    good, bad = validate_records(raw, declared_schema(table, name) or inferred, table, table.format, name)
    result = good.collect(), bad.collect(), raw.count()
    raw.unpersist()
    return result


def assert_accounting(report) -> None:
    c = report.counts
    assert c["inputs"] == (c["inserted"] + c["updated"] + c["unchanged"] + c["quarantined"] + c.get("superseded", 0)
                           + c.get("delete_records", 0) + c.get("forgotten", 0)), c


def rows_by_key(spark, uri: str) -> dict:
    return {r["sample_id"]: r.asDict() for r in delta.read_table(spark, uri).collect()}


# --------------------------------------------------------------------------- CSV records


@pytest.mark.parametrize(
    "line, reason",
    [
        ("4,d.png,6", "malformed CSV record: 3 field(s) where the header has 5: no value for ink_fraction, scan_batch"),
        ("4,d.png,6,0.2,b2,surplus", "malformed CSV record: 6 fields where the header has 5 (sample_id, path, label, "
                                     "ink_fraction, scan_batch): 1 more than it names"),
        ("abc,d.png,6,0.2,b2", "column 'sample_id': 'abc' is not a valid INT"),
        ("4,d.png,6,x0.2,b2", "column 'ink_fraction': 'x0.2' is not a valid DOUBLE"),
        ("4,d.png,1.5,0.2,b2", "column 'label': '1.5' is not a valid INT"),
    ],
    ids=["too-few-fields", "too-many-fields", "non-numeric-int", "bad-double", "fraction-for-int"],
)
def test_malformed_csv_record_is_quarantined_with_its_raw_line(spark, lake, tmp_path, line, reason):
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, line])
    profile = profile_with(lake, meta=csv_table(source))

    good, bad, n_read = validate(spark, profile, "meta")

    assert n_read == len(good) + len(bad) == 4
    assert sorted(r["sample_id"] for r in good) == [1, 2, 3]
    assert isinstance(good[0]["ink_fraction"], float)
    assert len(bad) == 1
    assert bad[0]["raw"] == line
    assert bad[0]["error"].startswith(reason), bad[0]["error"]
    assert bad[0]["source"].endswith("/raw/meta.csv")


def test_null_and_duplicate_keys_are_quarantined_and_the_first_record_is_kept(spark, lake, tmp_path):
    lines = [HEADER, "1,first.png,3,0.5,b1", ",nokey.png,4,0.5,b1", "2,b.png,4,0.5,b1",
             "1,second.png,3,0.5,b1", "1,third.png,3,0.5,b1"]
    profile = profile_with(lake, meta=csv_table(write_file(tmp_path, "meta.csv", lines)))

    good, bad, n_read = validate(spark, profile, "meta")

    assert n_read == len(good) + len(bad) == 5
    assert {r["sample_id"]: r["path"] for r in good} == {1: "first.png", 2: "b.png"}
    errors = {r["raw"]: r["error"] for r in bad}
    assert errors[",nokey.png,4,0.5,b1"] == "key column 'sample_id' is null; every row needs a key"
    for raw in ("1,second.png,3,0.5,b1", "1,third.png,3,0.5,b1"):
        assert errors[raw].startswith("duplicate key sample_id=1"), errors[raw]


def test_infer_schema_types_columns_and_still_quarantines_malformed_lines(spark, lake, tmp_path):
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "4,d.png"])
    profile = profile_with(lake, meta=csv_table(source, schema=None, infer_schema=True))

    good, bad, n_read = validate(spark, profile, "meta")

    assert n_read == 4 and len(good) == 3
    assert {type(r["sample_id"]) for r in good} == {int} and {type(r["ink_fraction"]) for r in good} == {float}
    assert [r["raw"] for r in bad] == ["4,d.png"]
    assert bad[0]["error"].startswith("malformed CSV record")


# --------------------------------------------------------------------------- MERGE upserts and reruns


def test_rerun_changes_nothing_and_a_changed_input_updates_one_and_inserts_one(spark, lake, tmp_path):
    bad_lines = ["4,d.png,6", "abc,e.png,6,0.2,b2", ",f.png,1,0.1,b1", "1,dup.png,3,0.5,b1"]
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, *bad_lines])
    profile = profile_with(lake, meta=csv_table(source))
    bronze, quarantine = layout(profile).bronze_table("meta"), layout(profile).quarantine_table("meta")

    first = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))
    assert first.counts == dict(inputs=7, inserted=3, updated=0, unchanged=0, quarantined=4)
    assert_accounting(first)
    assert delta.read_table(spark, quarantine).count() == 4
    assert set(delta.read_table(spark, bronze).columns) == {
        "sample_id", "path", "label", "ink_fraction", "scan_batch", "_run_id", "_ingested_at"}
    before = rows_by_key(spark, bronze)

    again = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-2"))
    assert again.counts == dict(inputs=7, inserted=0, updated=0, unchanged=3, quarantined=4)
    assert delta.read_table(spark, quarantine).count() == 4
    assert rows_by_key(spark, bronze) == before

    # Row 2 changes, row 9 is new, rows 1 and 3 are as before.
    lines = [HEADER, GOOD_LINES[0], "2,b.png,4,0.75,b1", GOOD_LINES[2], "9,z.png,1,0.5,b3", *bad_lines]
    write_file(tmp_path, "meta.csv", lines)
    changed = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-3"))
    assert changed.counts == dict(inputs=8, inserted=1, updated=1, unchanged=2, quarantined=4)
    assert_accounting(changed)
    after = rows_by_key(spark, bronze)
    assert after[2]["ink_fraction"] == 0.75 and after[2]["_run_id"] == "run-3"
    assert after[9]["_run_id"] == "run-3"
    for key in (1, 3):  # not rewritten: same run id and ingestion time as the first run
        assert after[key] == before[key]
    assert delta.read_table(spark, quarantine).count() == 4


def _aged(source: str, hours_ago: float) -> None:
    """Set a source file's modification time ``hours_ago`` hours back."""
    path = source.removeprefix("file:")
    then = time.time() - hours_ago * 3600
    os.utime(path, (then, then))


def test_a_day_file_updating_a_key_wins_over_yesterdays_file_and_a_later_file_updates_bronze_again(
        spark, lake, tmp_path):
    day1 = write_file(tmp_path, "day1.csv", [HEADER, "1,a.png,3,0.5,b1", "2,b.png,4,0.25,b1"])
    day2 = write_file(tmp_path, "day2.csv", [HEADER, "1,a2.png,3,0.75,b2"])
    _aged(day1, 48)
    _aged(day2, 24)
    profile = profile_with(lake, meta=csv_table(f"file:{tmp_path}/raw"))
    bronze = layout(profile).bronze_table("meta")

    first = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))

    assert first.counts == dict(inputs=3, inserted=2, updated=0, unchanged=0, quarantined=0, superseded=1)
    assert_accounting(first)
    rows = rows_by_key(spark, bronze)
    assert (rows[1]["path"], rows[1]["ink_fraction"], rows[2]["path"]) == ("a2.png", 0.75, "b.png")
    assert not delta.is_delta_table(spark, layout(profile).quarantine_table("meta"))  # superseded is no error

    again = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-2"))
    assert again.counts["inserted"] == again.counts["updated"] == 0 and rows_by_key(spark, bronze) == rows

    write_file(tmp_path, "day3.csv", [HEADER, "2,b3.png,4,0.5,b3"])  # today's: key 2 changes
    third = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-3"))
    assert third.counts == dict(inputs=4, inserted=0, updated=1, unchanged=1, quarantined=0, superseded=2)
    after = rows_by_key(spark, bronze)
    assert (after[1]["path"], after[2]["path"], after[2]["_run_id"]) == ("a2.png", "b3.png", "run-3")


def test_order_by_a_column_lets_the_latest_record_win_whatever_its_file_and_ties_stay_duplicates(
        spark, lake, tmp_path):
    header = "sample_id,path,label,ink_fraction,scan_batch,updated_at"
    schema = SCHEMA + ", updated_at TIMESTAMP"
    newer_in_old_file = write_file(tmp_path, "a.csv", [header, "1,new.png,3,0.5,b1,2026-12-02 10:00:00",
                                                       "2,x.png,4,0.5,b1,2026-12-01 09:00:00"])
    write_file(tmp_path, "b.csv", [header, "1,old.png,3,0.5,b1,2026-12-01 10:00:00",
                                   "2,y.png,4,0.5,b1,2026-12-01 09:00:00"])
    _aged(newer_in_old_file, 24)
    profile = profile_with(lake, meta=csv_table(f"file:{tmp_path}/raw", schema=schema, order_by="updated_at"))

    good, bad, n_read = validate(spark, profile, "meta")

    assert n_read == 4 and {r["sample_id"]: r["path"] for r in good} == {1: "new.png", 2: "x.png"}
    (tie,) = bad  # key 2: the same updated_at in both files, the first in input order (a.csv) is kept
    assert tie["error"].startswith("duplicate key sample_id=2") and "y.png" in tie["raw"]


def test_a_change_feeds_deletion_record_removes_its_key_and_a_rerun_deletes_nothing(spark, lake, tmp_path):
    header = f"{HEADER},op"
    schema = SCHEMA + ", op STRING"
    day1 = write_file(tmp_path, "day1.csv", [header, "1,a.png,3,0.5,b1,U", "2,b.png,4,0.5,b1,U", "3,c.png,5,0.5,b1,U"])
    _aged(day1, 24)
    profile = profile_with(lake, meta=csv_table(f"file:{tmp_path}/raw", schema=schema, delete_when="op = 'D'"))
    bronze = layout(profile).bronze_table("meta")
    first = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))
    assert first.counts["inserted"] == 3 and first.counts["deleted"] == first.counts["delete_records"] == 0

    write_file(tmp_path, "day2.csv", [header, "2,b.png,4,0.5,b1,D", "3,c3.png,5,0.5,b1,U"])
    second = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-2"))

    assert second.counts == dict(inputs=5, inserted=0, updated=1, unchanged=1, quarantined=0, superseded=2,
                                 deleted=1, delete_records=1)
    assert_accounting(second)
    rows = rows_by_key(spark, bronze)
    assert sorted(rows) == [1, 3] and rows[3]["path"] == "c3.png"
    version = delta.table_version(spark, bronze)
    third = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-3"))
    assert third.counts["deleted"] == 0 and delta.table_version(spark, bronze) == version


def test_append_keeps_a_keys_first_record_and_quarantines_a_later_one_with_other_values(spark, lake, tmp_path):
    source = write_file(tmp_path, "events.csv", [HEADER, "1,a.png,3,0.5,b1", "2,b.png,4,0.5,b1"])
    profile = profile_with(lake, events=csv_table(source, mode="append"))
    bronze = layout(profile).bronze_table("events")
    first = ingest_table(spark, profile, "events", report=RunReport("ingest_tables", "run-1"))
    assert first.counts["inserted"] == 2

    # the next delivery repeats key 1 as it was, changes key 2, and brings key 3 twice
    write_file(tmp_path, "events.csv", [HEADER, "1,a.png,3,0.5,b1", "2,b2.png,4,0.5,b1", "3,c.png,5,0.5,b2",
                                        "3,c2.png,5,0.5,b2"])
    second = ingest_table(spark, profile, "events", report=RunReport("ingest_tables", "run-2"))

    assert second.counts == dict(inputs=4, inserted=1, updated=0, unchanged=1, quarantined=2)
    assert_accounting(second)
    rows = rows_by_key(spark, bronze)
    assert {k: r["path"] for k, r in rows.items()} == {1: "a.png", 2: "b.png", 3: "c.png"}
    errors = {r["raw"]: r["error"] for r in delta.read_table(spark, layout(profile).quarantine_table("events"))
              .collect()}
    changed = next(e for raw, e in errors.items() if "b2.png" in raw)
    assert changed.startswith("key sample_id=2 is already in bronze with other values") and "mode is append" in changed
    repeated = next(e for raw, e in errors.items() if "c2.png" in raw)
    assert repeated.startswith("duplicate key sample_id=3") and "keeps a key's first record" in repeated
    version = delta.table_version(spark, bronze)
    ingest_table(spark, profile, "events", report=RunReport("ingest_tables", "run-3"))
    assert delta.table_version(spark, bronze) == version


def test_append_with_order_by_is_refused_when_the_profile_loads(lake, tmp_path):
    with pytest.raises(ConfigError, match=r"ingest_tables.tables.meta.order_by is set but "
                                          r"ingest_tables.tables.meta.mode is append"):
        profile_with(lake, meta=csv_table(write_file(tmp_path, "m.csv", [HEADER]), mode="append",
                                          order_by="label"))


def test_a_forgotten_row_leaves_bronze_and_is_not_taken_in_again(spark, lake, tmp_path):
    from lakeloop.ops.forget import forget_table_row

    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "2,b.png,4,0.25,b1"])  # key 2 twice
    profile = profile_with(lake, meta=csv_table(source))
    ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))
    bronze = layout(profile).bronze_table("meta")

    dry = forget_table_row(spark, profile, "meta", "2", dry_run=True)
    assert sorted(rows_by_key(spark, bronze)) == [1, 2, 3] and "would delete: bronze.meta: 1 row(s)" in dry.text()
    done = forget_table_row(spark, profile, "meta", "sample_id=2")
    assert done.deleted == {"bronze.meta": 1, "quarantine.meta (raw text holds the key)": 1}
    assert sorted(rows_by_key(spark, bronze)) == [1, 3]

    again = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-2"))
    # both records of key 2 (the second a duplicate) are forgotten: neither written nor quarantined
    assert again.counts["forgotten"] == 2 and any("lakeloop forget" in w for w in again.warnings)
    assert_accounting(again)
    assert sorted(rows_by_key(spark, bronze)) == [1, 3]


def test_a_delete_when_spark_cannot_evaluate_names_the_setting_and_the_columns(spark, lake, tmp_path):
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES])
    profile = profile_with(lake, meta=csv_table(source, delete_when="operation = 'D'"))
    with pytest.raises(SchemaMismatchError, match=r"ingest_tables.tables.meta.delete_when = \"operation = 'D'\" is "
                                                  r"not a condition on its records' columns \(sample_id, path"):
        ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))


def test_an_order_by_naming_no_column_is_refused_when_the_profile_loads(lake, tmp_path):
    with pytest.raises(ConfigError, match=r"ingest_tables.tables.meta.order_by = 'changed' is not a column of its "
                                          r"schema \(sample_id, path, label, ink_fraction, scan_batch\)"):
        profile_with(lake, meta=csv_table(write_file(tmp_path, "m.csv", [HEADER]), order_by="changed"))


# --------------------------------------------------------------------------- JSON and Parquet


def test_json_lines_with_a_broken_line(spark, lake, tmp_path):
    broken = '{"sample_id": 2, "path": "b.png", "label": '
    lines = [
        '{"sample_id": 1, "path": "a.png", "label": 3, "ink_fraction": 0.5, "scan_batch": "b1"}',
        broken,
        '{"sample_id": "x", "path": "c.png", "label": 5}',
        '{"sample_id": 4, "path": "d.png", "label": 6, "ink_fraction": 1}',
    ]
    source = write_file(tmp_path, "meta.jsonl", lines)
    profile = profile_with(lake, meta={"source": source, "format": "json", "keys": ["sample_id"], "schema": SCHEMA})

    report = ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-json"))

    assert report.counts == dict(inputs=4, inserted=2, updated=0, unchanged=0, quarantined=2)
    assert_accounting(report)
    assert {r["sample_id"]: r["ink_fraction"] for r in delta.read_table(spark, layout(profile).bronze_table("meta"))
            .collect()} == {1: 0.5, 4: 1.0}
    errors = {r["raw"]: r["error"] for r in delta.read_table(spark, layout(profile).quarantine_table("meta")).collect()}
    assert errors[broken].startswith("malformed JSON record")
    [type_error] = [e for raw, e in errors.items() if raw != broken]
    assert type_error == "column 'sample_id': 'x' is not a valid INT"


def _write_parquet(spark, tmp_path: Path) -> str:
    # label is STRING and sample_id BIGINT in the files, INT in the declared schema.
    rows = [(1, "a.png", "3", 0.5, "b1"), (2, "b.png", "x", 0.5, "b1"), (3, "c.png", "5", 0.5, "b1"),
            (2**40, "d.png", "6", 0.5, "b1")]
    path = tmp_path / "raw" / "meta.parquet"
    spark.createDataFrame(rows, "sample_id BIGINT, path STRING, label STRING, ink_fraction DOUBLE, scan_batch STRING") \
        .coalesce(1).write.parquet(str(path))
    return f"file:{path}"


def test_parquet_wrong_typed_values_are_quarantined(spark, lake, tmp_path):
    source = _write_parquet(spark, tmp_path)
    profile = profile_with(lake, meta={"source": source, "format": "parquet", "keys": ["sample_id"],
                                       "schema": SCHEMA, "on_type_error": "quarantine"})

    report = ingest_table(spark, profile, "meta")

    assert report.counts == dict(inputs=4, inserted=2, updated=0, unchanged=0, quarantined=2)
    assert_accounting(report)
    errors = sorted(r["error"] for r in delta.read_table(spark, layout(profile).quarantine_table("meta")).collect())
    assert errors == ["column 'label': STRING value 'x' is not a valid INT",
                      f"column 'sample_id': BIGINT value {2**40} is not a valid INT"]


def test_parquet_wrong_typed_value_fails_when_on_type_error_is_fail(spark, lake, tmp_path):
    source = _write_parquet(spark, tmp_path)
    profile = profile_with(lake, meta={"source": source, "format": "parquet", "keys": ["sample_id"],
                                       "schema": SCHEMA, "on_type_error": "fail"})

    with pytest.raises(SchemaMismatchError) as info:
        ingest_table(spark, profile, "meta")

    message = str(info.value)
    assert "is not a valid INT" in message and ("'label'" in message or "'sample_id'" in message)
    assert "ingest_tables.tables.meta.on_type_error" in message
    assert not delta.is_delta_table(spark, layout(profile).bronze_table("meta"))


# --------------------------------------------------------------------------- schema evolution and errors


def test_extra_csv_column_is_refused_unless_evolve_schema_then_added(spark, lake, tmp_path):
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES])
    profile = profile_with(lake, meta=csv_table(source))
    ingest_table(spark, profile, "meta", report=RunReport("ingest_tables", "run-1"))
    write_file(tmp_path, "meta.csv", [HEADER + ",operator", *(line + ",ann" for line in GOOD_LINES)])

    with pytest.raises(SchemaMismatchError) as info:
        ingest_table(spark, profile, "meta")
    assert "operator" in str(info.value)
    assert "ingest_tables.tables.meta.evolve_schema: true" in str(info.value)

    evolving = profile_with(lake, meta=csv_table(source, evolve_schema=True))
    report = ingest_table(spark, evolving, "meta", report=RunReport("ingest_tables", "run-2"))
    assert report.counts == dict(inputs=3, inserted=0, updated=3, unchanged=0, quarantined=0)
    assert_accounting(report)
    assert report.details["tables"]["meta"]["added_columns"] == ["operator"]
    rows = rows_by_key(spark, layout(profile).bronze_table("meta"))
    assert {k: r["operator"] for k, r in rows.items()} == {1: "ann", 2: "ann", 3: "ann"}


def test_csv_header_missing_a_declared_column_names_it(spark, lake, tmp_path):
    renamed = HEADER.replace("label", "digit")
    profile = profile_with(lake, meta=csv_table(write_file(tmp_path, "meta.csv", [renamed, *GOOD_LINES])))

    with pytest.raises(SchemaMismatchError) as info:
        ingest_table(spark, profile, "meta")
    message = str(info.value)
    assert "declared column(s) label missing from the CSV header" in message
    assert "found instead: digit" in message and "ingest_tables.tables.meta.schema" in message


def test_csv_files_with_different_headers_are_a_schema_mismatch(spark, lake, tmp_path):
    write_file(tmp_path, "in/a.csv", [HEADER, *GOOD_LINES])
    swapped = "path,sample_id,label,ink_fraction,scan_batch"
    write_file(tmp_path, "in/b.csv", [swapped, "d.png,4,6,0.2,b2"])
    profile = profile_with(lake, meta=csv_table(f"file:{tmp_path}/raw/in"))

    with pytest.raises(SchemaMismatchError, match="differs from the first file's"):
        ingest_table(spark, profile, "meta")
    assert not delta.is_delta_table(spark, layout(profile).bronze_table("meta"))


def test_json_keys_spelled_two_ways_are_a_schema_mismatch(spark, lake, tmp_path):
    source = write_file(tmp_path, "meta.jsonl", ['{"sample_id": 1, "path": "a"}', '{"Sample_ID": 2, "path": "b"}'])
    profile = profile_with(lake, meta={"source": source, "format": "json", "keys": ["sample_id"], "schema": SCHEMA})

    with pytest.raises(SchemaMismatchError, match="more than one way"):
        read_source(spark, table_config(profile, "meta"), "meta")


def test_unknown_table_and_missing_source_are_named(spark, lake, tmp_path):
    profile = profile_with(lake, meta=csv_table(f"file:{tmp_path}/nowhere/meta.csv"),
                           other=csv_table(f"file:{tmp_path}/nowhere/other.csv"))

    with pytest.raises(ConfigError, match=r"unknown table 'nope'.*meta, other"):
        ingest_tables(spark, profile, ["nope"])
    with pytest.raises(SourceError) as info:
        ingest_table(spark, profile, "meta")
    assert f"{tmp_path}/nowhere/meta.csv" in str(info.value)
    assert "ingest_tables.tables.meta.source" in str(info.value)


def _load_job(name: str):
    """A ``jobs/<name>.py`` module (jobs/ is a folder of scripts, not a package)."""
    import importlib.util

    from lakeloop.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO_ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_ingests_every_configured_table_and_writes_its_report(spark, lake, tmp_path):
    main = _load_job("ingest_tables").main

    csv_source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "4,bad"])
    json_source = write_file(tmp_path, "extra.jsonl", ['{"sample_id": 7, "path": "g.png"}', "{"])
    tables = {
        "meta": csv_table(csv_source),
        "extra": {"source": json_source, "format": "json", "keys": ["sample_id"],
                  "schema": "sample_id INT, path STRING"},
    }
    # --set values are YAML, and JSON is YAML.
    code = main(["--profile", "test", "--set", f"lake_root={lake}",
                 "--set", f"ingest_tables.tables={json.dumps(tables)}"])

    assert code == 0
    report = json.loads((Path(lake.removeprefix("file:")) / "_reports" / "ingest_tables" / "latest.json").read_text())
    assert report["status"] == "succeeded"
    assert report["counts"] == dict(inputs=6, inserted=4, updated=0, unchanged=0, quarantined=2, tables_failed=0)
    assert set(report["details"]["tables"]) == {"meta", "extra"}


def test_a_rerun_with_every_source_file_and_table_as_the_last_run_left_them_reads_nothing_and_counts_the_same(
        spark, lake, tmp_path):
    """A skipped table reports what a planned rerun would, commits nothing, and any change to its
    source, its settings or its tables makes the next run read it again."""
    import os

    main = _load_job("ingest_tables").main
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "4,bad"])
    bronze = layout(make_profile(lake)).bronze_table("meta")
    latest = Path(lake.removeprefix("file:")) / "_reports" / "ingest_tables" / "latest.json"

    def run(*sets: str) -> dict:
        tables = json.dumps({"meta": csv_table(source)})
        assert main(["--profile", "test", "--set", f"lake_root={lake}", "--set", f"ingest_tables.tables={tables}",
                     *[arg for s in sets for arg in ("--set", s)]]) == 0
        report = json.loads(latest.read_text())
        return {**report["counts"], **report["details"]["tables"]["meta"], "version": delta.table_version(spark, bronze)}

    first = run()
    planned = dict(inputs=4, inserted=0, updated=0, unchanged=3, quarantined=1, tables_failed=0)
    skipped = run()
    assert skipped["skipped_from_run"] and {k: skipped[k] for k in planned} == planned
    assert skipped["version"] == first["version"]
    again = run("ingest_tables.skip_unchanged=false")  # read, and found what the skipped run reported
    assert "skipped_from_run" not in again and {k: again[k] for k in planned} == planned

    spark.sql(f"DELETE FROM delta.`{bronze}` WHERE sample_id = 2")  # a row deleted by hand comes back
    restored = run()
    assert "skipped_from_run" not in restored and restored["inserted"] == 1
    assert run()["skipped_from_run"]  # the restoring run recorded the tables as it left them

    path = Path(source.removeprefix("file:"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))  # touched: read again
    assert "skipped_from_run" not in run()
    write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "9,z.png,1,0.5,b3", "4,bad"])  # a new record
    changed = run()
    assert "skipped_from_run" not in changed and changed["inserted"] == 1 and changed["inputs"] == 5



@pytest.mark.quick
def test_deleting_every_run_report_changes_no_jobs_outcome_and_a_library_call_skips_as_the_job_does(
        spark, lake, tmp_path):
    """What a rerun may skip is recorded by the step in the lake (``_state/``), never read back from
    a run report: with every report deleted the job skips the same way, and so does a call of the
    library function from a notebook, which writes no report at all."""
    import shutil

    main = _load_job("ingest_tables").main
    source = write_file(tmp_path, "meta.csv", [HEADER, *GOOD_LINES, "4,bad"])
    tables = {"meta": csv_table(source)}
    root = Path(lake.removeprefix("file:"))
    bronze = layout(make_profile(lake)).bronze_table("meta")

    def job() -> dict:
        assert main(["--profile", "test", "--set", f"lake_root={lake}",
                     "--set", f"ingest_tables.tables={json.dumps(tables)}"]) == 0
        report = json.loads((root / "_reports" / "ingest_tables" / "latest.json").read_text())
        shutil.rmtree(root / "_reports")  # every report gone before the next run
        return {**report["counts"], **report["details"]["tables"]["meta"], "run": report["run_id"]}

    first = job()
    second = job()
    assert "skipped_from_run" not in first and second["skipped_from_run"] == first["run"]
    assert {k: second[k] for k in ("inputs", "quarantined")} == {k: first[k] for k in ("inputs", "quarantined")}
    version = delta.table_version(spark, bronze)
    library = ingest_tables(spark, make_profile(lake, ("ingest_tables.tables", tables))).details["tables"]["meta"]
    assert library["skipped_from_run"] and library["counts"] == second["counts"]
    assert delta.table_version(spark, bronze) == version and not (root / "_reports").exists()
    assert list((root / "_state" / "ingest_tables").glob("*.json")), "the step recorded no state in the lake"


# --------------------------------------------------------------------------- real-world files

HEADER_WITH_PUNCTUATION = ["id", "Contact Phone Number", "note (free text)", "a;b", "été"]
RFC_SCHEMA = "id INT, `Contact Phone Number` STRING, `note (free text)` STRING, `a;b` STRING, `été` STRING"
RFC_RECORDS = [
    ["1", "+41 44 123", 'he said "ha ""ha"" ha"', "x,y", "café"],
    ["2", "", "line one\nline two", "", "naïve"],
    ["3", "555", "crlf one\r\ncrlf two", 'quote " inside', ""],
    ["4", "  spaced  ", "", "tab\there", "日本語"],
]


def _csv_text(rows: list[list[str]], terminator: str) -> str:
    import csv
    import io

    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator=terminator, quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return buffer.getvalue()


def test_csv_is_read_as_rfc_4180_every_field_as_pythons_csv_module_reads_it(spark, lake, tmp_path):
    """Quoted commas, quoted line breaks (LF and CRLF, kept as they were), doubled quotes, empty
    fields, CRLF and LF files, UTF-8 with and without BOM, a header-only and an empty file, a
    header with spaces and punctuation: every record lands in bronze exact, compared field by
    field with Python's csv module; a record with a missing field is quarantined with the column named."""
    import csv
    import io

    folder = tmp_path / "raw" / "contacts"
    folder.mkdir(parents=True)
    (folder / "lf.csv").write_bytes(_csv_text([HEADER_WITH_PUNCTUATION, *RFC_RECORDS[:2]], "\n").encode())
    (folder / "crlf-bom.csv").write_bytes(
        b"\xef\xbb\xbf" + _csv_text([HEADER_WITH_PUNCTUATION, *RFC_RECORDS[2:]], "\r\n").encode())
    (folder / "header-only.csv").write_bytes(_csv_text([HEADER_WITH_PUNCTUATION], "\n").encode())
    (folder / "empty.csv").write_bytes(b"")
    (folder / "short.csv").write_bytes(_csv_text([HEADER_WITH_PUNCTUATION, ["9", "only two"]], "\n").encode())
    profile = profile_with(lake, contacts={"source": f"file:{folder}", "format": "csv", "keys": ["id"],
                                           "schema": RFC_SCHEMA, "options": {"header": "true"}})

    report = ingest_table(spark, profile, "contacts")

    expected = {}
    for path in sorted(folder.glob("*.csv")):
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
        for row in rows[1:]:
            if len(row) == len(HEADER_WITH_PUNCTUATION):
                expected[int(row[0])] = row
    assert sorted(expected) == [1, 2, 3, 4]
    stored = ["id", "Contact_Phone_Number", "note__free_text_", "a_b", "été"]
    bronze = {r["id"]: r for r in delta.read_table(spark, layout(profile).bronze_table("contacts")).collect()}
    assert sorted(bronze) == [1, 2, 3, 4]
    for key, row in expected.items():
        # CSV cannot tell an empty field from a missing value: Spark reads an unquoted empty field as null.
        assert [str(bronze[key][c]) if bronze[key][c] is not None else "" for c in stored] == row, key
    assert bronze[3]["note__free_text_"] == "crlf one\r\ncrlf two"
    assert bronze[2]["note__free_text_"] == "line one\nline two"
    properties = delta.table_properties(spark, layout(profile).bronze_table("contacts"))
    assert json.loads(properties["lakeloop.source_columns"]) == {
        "Contact_Phone_Number": "Contact Phone Number", "note__free_text_": "note (free text)", "a_b": "a;b"}
    (bad,) = delta.read_table(spark, layout(profile).quarantine_table("contacts")).collect()
    assert bad["error"].startswith("malformed CSV record: 2 field(s) where the header has 5: no value for "
                                   "note (free text), a;b, été")
    assert report.counts["inputs"] == 5 and report.counts["quarantined"] == 1
    from deltalake import DeltaTable  # another Delta reader sees the same rows, under the stored names

    theirs = DeltaTable(layout(profile).bronze_table("contacts").removeprefix("file:")).to_pyarrow_table()
    assert sorted(theirs.column("id").to_pylist()) == [1, 2, 3, 4]
    assert "Contact_Phone_Number" in theirs.column_names


JSON_LINES = [
    ('{"sample_id": 1, "path": "a.png"}', True),
    ("{'sample_id': 2, 'path': 'b.png'}", False),  # single quotes
    ('{"sample_id": 3, "path": "c.png"} }', False),  # a stray brace after the object
    ('{"sample_id": 4, "path": "d.png",}', False),  # trailing comma
    ('{sample_id: 5, "path": "e.png"}', False),  # unquoted key
    ('{"sample_id": 6, "path": "f.png"', False),  # cut short
    ('[{"sample_id": 7}]', False),  # an array, not an object
    ("42", False),
    ('"just text"', False),
    ("null", False),
    ('{"sample_id": 8, "path": "tab\there"}', False),  # a raw control character in a string
    ('{"sample_id": 9, "path": "g.png", "extra": {"nested": [1, 2]}}', True),
    ('{"sample_id": 10, "path": "h.png", "score": NaN}', True),  # Python's json reads NaN
    ('  {"sample_id": 11, "path": "i.png"}  ', True),
]


def test_json_lines_quarantine_exactly_the_records_pythons_json_module_rejects(spark, lake, tmp_path):
    rejected = set()
    for line, _ in JSON_LINES:
        try:
            if not isinstance(json.loads(line), dict):
                rejected.add(line)
        except ValueError:
            rejected.add(line)
    assert rejected == {line for line, ok in JSON_LINES if not ok}
    source = write_file(tmp_path, "meta.jsonl", [line for line, _ in JSON_LINES] + ["", "   "])
    profile = profile_with(lake, meta={"source": source, "format": "json", "keys": ["sample_id"],
                                       "schema": "sample_id INT, path STRING", "evolve_schema": True})

    report = ingest_table(spark, profile, "meta")

    quarantine = {r["raw"]: r["error"] for r in delta.read_table(spark, layout(profile).quarantine_table("meta")).collect()}
    assert set(quarantine) == rejected
    assert quarantine["{'sample_id': 2, 'path': 'b.png'}"].startswith(
        "malformed JSON record: not valid JSON: Expecting property name enclosed in double quotes at column 2")
    assert "an array, not an object" in quarantine['[{"sample_id": 7}]']
    bronze = sorted(r["sample_id"] for r in delta.read_table(spark, layout(profile).bronze_table("meta")).collect())
    assert bronze == [1, 9, 10, 11]
    assert report.counts["inputs"] == len(JSON_LINES)  # blank lines are no records
    lenient = profile_with(f"file:{tmp_path / 'lenient'}", meta={
        "source": source, "format": "json", "keys": ["sample_id"], "schema": "sample_id INT, path STRING",
        "evolve_schema": True, "strict_json": False})
    assert ingest_table(spark, lenient, "meta").counts["quarantined"] < len(rejected)  # what leniency lets through


def test_a_table_that_fails_for_a_reason_no_setting_fixes_does_not_stop_the_others(spark, lake, tmp_path):
    main = _load_job("ingest_tables").main
    garbage = tmp_path / "raw" / "broken.parquet"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"PAR1 this is not a parquet file at all PAR1")
    tables = {
        "first": csv_table(write_file(tmp_path, "first.csv", [HEADER, *GOOD_LINES])),
        "broken": {"source": f"file:{garbage}", "format": "parquet", "keys": ["sample_id"], "infer_schema": True},
        "last": {"source": write_file(tmp_path, "last.jsonl", ['{"sample_id": 7, "path": "g.png"}']),
                 "format": "json", "keys": ["sample_id"], "schema": "sample_id INT, path STRING"},
    }
    code = main(["--profile", "test", "--set", f"lake_root={lake}", "--set", f"ingest_tables.tables={json.dumps(tables)}"])

    assert code == 1
    report = json.loads((Path(lake.removeprefix("file:")) / "_reports" / "ingest_tables" / "latest.json").read_text())
    assert report["status"] == "failed" and "1 of 3 tables failed (2 ingested): table broken:" in report["error"]
    statuses = {name: t["status"] for name, t in report["details"]["tables"].items()}
    assert statuses == {"first": "succeeded", "broken": "failed", "last": "succeeded"}
    assert report["details"]["tables"]["broken"]["error"]
    assert report["counts"]["tables_failed"] == 1 and report["counts"]["inserted"] == 4
    profile = profile_with(lake)
    assert delta.read_table(spark, layout(profile).bronze_table("first")).count() == 3
    assert delta.read_table(spark, layout(profile).bronze_table("last")).count() == 1

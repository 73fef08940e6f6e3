"""Concurrent writers: a lakeloop write that loses Delta's commit race fails with a clear conflict
message (Delta's conflict exceptions recognised by class) and commits nothing; run again, it adds
only what is still missing. Whole jobs run at once are in tests/test_killed_drivers.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lakeloop.errors import ConcurrentWriteConflict
from lakeloop.io import delta

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def _held_until(folder: Path):
    """A column function that, from its second evaluation on (the MERGE, after the check for new
    rows), says so in ``folder/merging`` and waits for ``folder/go``: the test commits in between."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("int")
    def held(values):
        import time as clock

        evaluations = folder / "evaluations"
        with open(evaluations, "a") as out:
            out.write("x")
        if len(evaluations.read_text()) >= 2:
            (folder / "merging").touch()
            deadline = clock.monotonic() + 120
            while not (folder / "go").exists() and clock.monotonic() < deadline:
                clock.sleep(0.05)
        return values

    return held


def _while_held(folder: Path, write, other_run) -> list[BaseException]:
    """Run ``write`` in a thread; once its rows are held (see :func:`_held_until`), run
    ``other_run``, then let ``write`` go on. Returns what ``write`` raised."""
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            write()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    writer = threading.Thread(target=guarded)
    writer.start()
    deadline = time.monotonic() + 120
    while not (folder / "merging").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (folder / "merging").exists(), "the write never started"
    other_run()
    (folder / "go").touch()
    writer.join(timeout=180)
    return failures


def test_a_write_that_loses_the_commit_race_names_the_table_and_a_rerun_adds_only_what_is_missing(
        spark, tmp_path, reliability):
    from pyspark.sql import functions as F

    uri = f"file:{tmp_path}/table"
    spark.createDataFrame([(i, "before") for i in range(10)], "id INT, v STRING").coalesce(1) \
        .write.format("delta").save(uri)
    new = spark.createDataFrame([(i, "new") for i in range(10, 20)], "id INT, v STRING").coalesce(1)
    held = new.withColumn("id", _held_until(tmp_path)(F.col("id")))  # the key: the check for new rows reads it too
    # Another run commits while the MERGE holds its snapshot.
    failures = _while_held(tmp_path, lambda: delta.merge_insert_new(spark, held, uri, ["id"]),
                           lambda: spark.createDataFrame([(100, "other run")], "id INT, v STRING")
                           .write.format("delta").mode("append").save(uri))

    assert len(failures) == 1 and isinstance(failures[0], ConcurrentWriteConflict), failures
    message = str(failures[0])
    assert f"another run committed to {uri} while this run wrote to it" in message
    assert "ConcurrentAppendException" in message and "Run the job again" in message
    assert delta.read_table(spark, uri).count() == 11  # nothing of the refused MERGE

    delta.merge_insert_new(spark, new, uri, ["id"])
    ids = [r.id for r in delta.read_table(spark, uri).collect()]
    assert sorted(ids) == [*range(20), 100]
    reliability.record("a MERGE loses Delta's commit race to another run's append; rerun", "io.delta (every job)",
                       "after the rerun vs both runs' rows", 21, 21 - len(set(ids)), len(ids) - len(set(ids)))
    reliability.bad_input("every Delta write", "another run commits to the same table first",
                          "ConcurrentWriteConflict naming the table; nothing committed; a rerun completes it")


def test_a_run_that_finds_the_table_created_by_another_run_after_it_looked_names_the_conflict(spark, tmp_path):
    from pyspark.sql import functions as F

    uri = f"file:{tmp_path}/table"
    new = spark.createDataFrame([(i, "new") for i in range(10)], "id INT, v STRING").coalesce(1)
    # The first evaluation of the rows is the write that creates the table: hold it there.
    (tmp_path / "evaluations").write_text("x")
    held = new.withColumn("id", _held_until(tmp_path)(F.col("id")))
    failures = _while_held(tmp_path, lambda: delta.merge_insert_new(spark, held, uri, ["id"]),
                           lambda: spark.createDataFrame([(100, "other run")], "id INT, v STRING")
                           .write.format("delta").save(uri))

    assert len(failures) == 1 and isinstance(failures[0], ConcurrentWriteConflict), failures
    assert f"another run committed to {uri}" in str(failures[0]) and "Run the job again" in str(failures[0])
    # The narrower window: the other run's table is already there when this run's write starts
    # (after this run looked and found none). Delta says DELTA_PATH_EXISTS; the user reads the same.
    with pytest.raises(ConcurrentWriteConflict, match=r"another run committed to .* first.*Run the job again"):
        delta._create_with(spark, new, uri)
    delta.merge_insert_new(spark, new, uri, ["id"])
    assert sorted(r.id for r in delta.read_table(spark, uri).collect()) == [*range(10), 100]

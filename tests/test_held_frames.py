"""Frames held for MERGEs (lakeloop.io.delta.held): the scored rows, checked files and checked
records a job counts and then writes. Delta's MERGE plans its source anew and misses Spark's
cache, so a held frame must not be computed again by the MERGE, and must keep the partitions
that let the work before it (the model, the decoder) run on every core."""

from __future__ import annotations

from pathlib import Path

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd
import pytest

from lakeloop.io import delta


def _counting(folder: Path):
    """A column function shaped like the scoring UDF (a struct with ``error``) that adds one ``x`` to
    ``folder/evaluations`` per batch it evaluates."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("error string, value int")
    def counted(values: pd.Series) -> pd.DataFrame:
        with open(folder / "evaluations", "a") as out:
            out.write("x")
        return pd.DataFrame({"error": [None] * len(values), "value": values})

    return counted


def test_rows_held_for_a_merge_are_computed_once_and_not_again_by_the_merge(spark, tmp_path):
    from pyspark.sql import functions as F

    uri = f"file:{tmp_path}/table"
    spark.createDataFrame([(i, "before") for i in range(10)], "id INT, v STRING").coalesce(1) \
        .write.format("delta").save(uri)
    # As a score run makes them: the candidates less the keys the table (pinned) holds, then the UDF
    # and the time. A persist()-ed frame of this shape is evaluated again inside the MERGE.
    target = delta.read_table(spark, uri, delta.table_version(spark, uri)).select("id")
    new = spark.createDataFrame([(i, "new") for i in range(5, 20)], "id INT, v STRING").coalesce(1) \
        .join(target, "id", "left_anti") \
        .select("id", "v", _counting(tmp_path)(F.col("id")).alias("p"), F.current_timestamp().alias("at"))

    held = delta.held(new)
    computed = (tmp_path / "evaluations").read_text()
    metrics = delta.merge_insert_new(spark, held.where(F.col("p.error").isNull()).select("id", "v"), uri, ["id"],
                                     add_columns=True)

    assert (tmp_path / "evaluations").read_text() == computed  # the MERGE read the held rows
    assert metrics["num_inserted_rows"] == 10 and held.count() == 10
    assert sorted(r.id for r in delta.read_table(spark, uri).collect()) == list(range(20))
    delta.release(held)
    with pytest.raises(Exception, match="CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND"):
        held.count()  # released: the rows are gone, not computed again behind the caller's back


def test_held_rows_keep_their_shuffle_partitions_so_the_work_after_the_shuffle_runs_on_every_core(spark, tmp_path):
    """The score job's shape on a first run: a small table anti-joined with empty key sets, the model
    after it. Adaptive execution would merge the join's two small partitions into one, and one task
    on one core would score every row."""
    uri = f"file:{tmp_path}/rows"
    spark.range(1797).selectExpr("cast(id AS string) AS image_id", "unhex(repeat('ab', 1024)) AS pixels") \
        .coalesce(2).write.format("delta").save(uri)
    none = spark.createDataFrame([], "image_id string")
    rows = delta.read_table(spark, uri).join(none.unionByName(none), "image_id", "left_anti")

    held = delta.held(rows)
    try:
        partitions = held.rdd.getNumPartitions()
        assert held.count() == 1797
    finally:
        delta.release(held)

    assert partitions == int(spark.conf.get("spark.sql.shuffle.partitions")) == 2
    assert spark.conf.get("spark.sql.adaptive.coalescePartitions.enabled") == "true"  # put back

"""What a job reads about a Delta table's state: its version and the time of its last commit."""

from __future__ import annotations

from lakeloop.io import delta


def test_a_tables_last_commit_is_what_deltas_history_says_after_its_own_commits_and_another_writers(
        spark, tmp_path):
    from delta.tables import DeltaTable
    from deltalake import write_deltalake
    import pandas as pd

    uri = f"file:{tmp_path / 'state'}"

    def history() -> tuple[int, str]:
        row = DeltaTable.forPath(spark, uri).history(1).select("version", "timestamp").first()
        return int(row["version"]), row["timestamp"].isoformat()

    spark.createDataFrame([(1, "a")], "id long, v string").write.format("delta").save(uri)
    assert delta.last_commit(spark, uri) == history() and history()[0] == 0
    spark.createDataFrame([(2, "b")], "id long, v string").write.format("delta").mode("append").save(uri)
    assert delta.last_commit(spark, uri) == history() and history()[0] == 1
    # Another writer (delta-rs, outside this JVM) commits: the next read sees its commit, not the
    # state this session last loaded.
    write_deltalake(str(tmp_path / "state"), pd.DataFrame({"id": [3], "v": ["c"]}), mode="append")
    assert delta.last_commit(spark, uri)[0] == 2
    assert delta.last_commit(spark, uri) == history()
    assert delta.table_version(spark, uri) == 2

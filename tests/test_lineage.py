"""``lakeloop lineage``: where one record is in the lake and which model versions saw it, on the
demo pipeline's lake (both ingestions, features, training, scoring, evaluation)."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.ops.lineage import image_lineage, table_lineage

pytestmark = pytest.mark.slow


def _features(spark, observed_lake):
    return delta.read_table(spark, LakeLayout(observed_lake.profile.lake_root).features)


def _one(spark, observed_lake, split: str):
    return _features(spark, observed_lake).where(F.col("split") == split).orderBy("image_id").first()


def test_an_image_trained_on_is_found_in_every_table_its_training_set_and_the_model_version_that_learned_it(
        spark, observed_lake):
    row = _one(spark, observed_lake, "train")

    found = image_lineage(spark, observed_lake.profile, image_id=row["image_id"])

    places = {p.name.split(" ")[0] if p.name.startswith("training") else p.name: p for p in found.places}
    assert {"bronze.images", "_ledger.images", "silver.features", "gold.predictions", "training"} <= set(places)
    assert "quarantine.images" not in places
    assert places["bronze.images"].rows == 1 and places["bronze.images"].shown[0]["path"] == row["path"]
    assert places["silver.features"].shown[0]["split"] == "train"
    trained_sets = [p for p in found.places if p.name.startswith("training set")]
    assert trained_sets and all(p.name.endswith("/train") for p in trained_sets)
    assert {p.shown[0]["model_version"] for p in [places["gold.predictions"]]} == {1}
    (model,) = found.models
    assert (model["model"], model["version"], model["splits"]) == (observed_lake.profile.train.model_name, 1,
                                                                     ["train"])
    assert "gold.predictions: 1 row(s)" in found.text() and f"{model['model']}:1 (train;" in found.text()


def test_an_image_found_by_its_path_is_the_one_found_by_its_id(spark, observed_lake):
    row = _one(spark, observed_lake, "test")

    by_id = image_lineage(spark, observed_lake.profile, image_id=row["image_id"])
    by_path = image_lineage(spark, observed_lake.profile, path=row["path"])

    assert [(p.name, p.rows) for p in by_path.places] == [(p.name, p.rows) for p in by_id.places]
    assert [m["splits"] for m in by_id.models] == [["test"]]  # tested on, never trained on


def test_a_quarantined_file_is_found_in_quarantine_and_the_ledger_only(spark, observed_lake):
    broken = f"{observed_lake.profile.ingest_images.source}/3/scan_truncated.png"

    found = image_lineage(spark, observed_lake.profile, path=broken)

    assert sorted(p.name for p in found.places) == ["_ledger.images", "quarantine.images"]
    assert found.models == []
    reason = next(p for p in found.places if p.name == "quarantine.images").shown[0]["reason"]
    assert reason


def test_an_unknown_image_is_nowhere_and_the_command_says_so_with_exit_1(spark, observed_lake, capsys):
    from lakeloop.cli.lake import lineage

    unknown = "0" * 64
    assert image_lineage(spark, observed_lake.profile, image_id=unknown).places == []
    overrides = ["--set", f"lake_root={observed_lake.profile.lake_root}"]

    assert lineage(["--profile", "test", *overrides, "--image-id", unknown]) == 1
    assert "nowhere: no table or training set of this lake holds it" in capsys.readouterr().out
    row = _one(spark, observed_lake, "train")
    assert lineage(["--profile", "test", *overrides, "--image-id", row["image_id"], "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert "bronze.images" in {p["name"] for p in answer["places"]} and answer["models"][0]["splits"] == ["train"]


def test_a_table_row_is_found_by_its_key_and_a_quarantined_record_by_the_key_its_raw_text_holds(
        spark, observed_lake):
    profile = observed_lake.profile
    (table,) = profile.ingest_tables.tables

    found = table_lineage(spark, profile, table, "42")
    assert [(p.name, p.rows) for p in found.places] == [(f"bronze.{table}", 1)]

    # Key 0 has a second record in the demo file, refused as a duplicate: both are found.
    both = table_lineage(spark, profile, table, "sample_id=0")
    assert [(p.name, p.rows) for p in both.places] == [(f"bronze.{table}", 1),
                                                      (f"quarantine.{table} (raw text holds the key)", 1)]
    assert both.places[1].shown[0]["error"].startswith("duplicate key sample_id=0")

    bad = table_lineage(spark, profile, table, "x17")  # the demo's record whose key is not a number
    assert [p.name for p in bad.places] == [f"quarantine.{table} (raw text holds the key)"]
    assert "x17" not in table_lineage(spark, profile, table, "17").text()  # a whole field, not a part


def test_a_key_that_does_not_fit_the_table_and_an_unknown_table_are_refused_naming_what_to_give(spark, observed_lake):
    profile = observed_lake.profile
    (table,) = profile.ingest_tables.tables
    with pytest.raises(ConfigError, match=r"names other; table .* key columns are sample_id"):
        table_lineage(spark, profile, table, "other=1")
    with pytest.raises(ConfigError, match=r"'nope' is not in ingest_tables.tables .*\(it has: " + table):
        table_lineage(spark, profile, "nope", "1")
    with pytest.raises(ConfigError, match="give its id .* or the path"):
        image_lineage(spark, profile)

"""Tables as training data: a CSV -> bronze -> silver.<table>_features -> an MLP trained through
TorchDistributor -> gold.<table>_predictions, for regression and multilabel targets with known
answers; and the encoding and batch scoring on their own, without Spark."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from support.lakes import make_profile

ROWS = 400
SCHEMA = "id INT, x1 DOUBLE, x2 DOUBLE, colour STRING, y DOUBLE, tags STRING"


def generated_rows(seed: int = 11) -> pd.DataFrame:
    """Rows whose answers are known: y = 3 x1 - 2 x2 + 1.5 [colour = blue]; tags name the signs."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "blue", "green"], size=ROWS)
    y = 3 * x1 - 2 * x2 + 1.5 * (colour == "blue") + rng.normal(scale=0.05, size=ROWS)
    tags = ["|".join(t for t, on in (("hot", a > 0), ("wet", b > 0), ("blue", c == "blue")) if on)
            for a, b, c in zip(x1, x2, colour)]
    return pd.DataFrame({"id": np.arange(ROWS), "x1": x1, "x2": x2, "colour": colour, "y": y, "tags": tags})


def write_csv(folder: Path, frame: pd.DataFrame) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "measurements.csv"
    text = frame.to_csv(index=False, float_format="%.6f")
    lines = text.splitlines()
    lines[8] = ",".join(["7", "", *lines[8].split(",")[2:]])  # row 7: x1 missing (filled, flagged)
    lines.append("oops,1.0,2.0,red,1.0,hot")  # a key that is not a number: quarantined at ingest
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"file:{path}"


def table_profile(lake: str, source: str, task: str, target: str, *overrides):
    return make_profile(
        lake,
        ("ingest_tables.tables", {"measurements": {"source": source, "format": "csv", "keys": ["id"],
                                                   "schema": SCHEMA, "options": {"header": "true"}}}),
        ("features.table", {"source": "bronze.measurements", "key": "id", "target": target,
                            "numeric": ["x1", "x2"], "categorical": ["colour"], "label_delimiter": "|"}),
        ("features.training_set_files", 4),
        ("train.task", task), ("train.model", "mlp"), ("train.model_name", f"measure_{task}"),
        ("train.model_options", {"hidden": [32], "dropout": 0.0}), ("train.epochs", 40),
        ("train.batch_size", 32), ("train.learning_rate", 0.01), ("train.augment", False),
        ("score.model", f"measure_{task}"), *overrides)


def run_pipeline(spark, profile) -> dict:
    from lakeloop.features import build_features
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    reports = {"ingest": ingest_tables(spark, profile), "features": build_features(spark, profile)}
    reports["version"] = train(spark, profile, report=RunReport("train", f"train-{profile.train.task}"))
    reports["score"] = score_table(spark, profile)
    return reports


@pytest.fixture(scope="module")
def regression(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    profile = table_profile(f"file:{root}/lake", write_csv(root / "raw", generated_rows()), "regression", "y")
    return profile, run_pipeline(spark, profile)


@pytest.fixture(scope="module")
def multilabel(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel")
    profile = table_profile(f"file:{root}/lake", write_csv(root / "raw", generated_rows()), "multilabel", "tags")
    return profile, run_pipeline(spark, profile)


def metadata_of(profile, version) -> dict:
    return Registry.for_profile(profile).read_metadata(version)


def predictions(spark, profile, name: str = "measurements") -> pd.DataFrame:
    from lakeloop.layout import LakeLayout

    return delta.read_table(spark, LakeLayout(profile.lake_root).table_predictions(name)).toPandas()


def test_every_csv_row_ends_in_bronze_or_quarantine_and_every_bronze_row_in_the_features(spark, regression):
    profile, reports = regression
    ingest = reports["ingest"].counts
    assert ingest["inputs"] == ROWS + 1 and ingest["inserted"] == ROWS and ingest["quarantined"] == 1
    features = reports["features"].counts
    assert features["rows"] == ROWS
    assert sum(features[f"split_{s}"] for s in ("train", "validation", "test")) == ROWS


@pytest.mark.quick
def test_regression_learns_a_known_linear_target_and_records_mae_rmse_and_r2(spark, regression):
    profile, reports = regression
    metadata = metadata_of(profile, reports["version"])
    test = metadata["metrics"]["test"]
    assert metadata["task"] == "regression" and metadata["input_kind"] == "table"
    assert test["r2"] > 0.95 and test["rmse"] < 1.0 and test["mae"] <= test["rmse"]
    assert metadata["metrics"]["per_epoch"][-1]["val_r2"] > 0.9
    encoding = metadata["table"]["encoding"]
    assert [c["name"] for c in encoding["numeric"]] == ["x1", "x2"]
    assert encoding["categorical"][0]["vocabulary"] == ["blue", "green", "red"]
    assert metadata["model"]["spec"]["table_features"][-1]["width"] == 4  # three colours + unknown


@pytest.mark.quick
def test_regression_predictions_carry_the_value_in_the_targets_units(spark, regression):
    profile, reports = regression
    rows = predictions(spark, profile)
    assert len(rows) == ROWS and reports["score"].counts["scored"] == ROWS
    assert {"id", "value", "true_value", "split", "model_version"} <= set(rows.columns)
    test = rows[rows["split"] == "test"]
    assert np.abs(test["value"] - test["true_value"]).mean() < 0.5  # y spans about +-8


def test_a_second_score_run_scores_nothing_and_commits_nothing(spark, regression):
    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table

    profile, _ = regression
    uri = LakeLayout(profile.lake_root).table_predictions("measurements")
    before = delta.table_version(spark, uri)
    report = score_table(spark, profile)
    assert report.counts["scored"] == 0 and report.counts["already_scored"] == ROWS
    assert delta.table_version(spark, uri) == before


def test_a_row_updated_at_its_source_flows_to_bronze_and_features_and_only_its_prediction_is_scored_again(
        spark, regression, tmp_path):
    from pyspark.sql import functions as F

    from lakeloop.features import build_features
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table
    from support.lakes import copy_lake

    profile, _ = regression
    frame = generated_rows()
    frame.loc[frame["id"] == 3, "x1"] += 10.0  # a correction at the source
    copied = copy_lake(profile, tmp_path / "lake")
    updated = table_profile(copied.lake_root, write_csv(tmp_path / "raw", frame), "regression", "y")
    uri = LakeLayout(updated.lake_root).table_predictions("measurements")
    before = delta.read_table(spark, uri).where("id = 3").first()

    ingest = ingest_tables(spark, updated)
    features = build_features(spark, updated)
    score = score_table(spark, updated)

    assert ingest.counts["updated"] == 1 and features.counts["updated"] == 1
    assert score.counts["scored"] == score.counts["rescored"] == 1 and score.counts["already_scored"] == ROWS - 1
    gold = delta.read_table(spark, uri)
    assert gold.count() == ROWS and gold.where("id = 3").count() == 1  # updated, not added
    after = gold.where("id = 3").first()
    assert after["value"] != before["value"] and after["run_id"] == score.run_id
    assert after["input_digest"] != before["input_digest"]
    assert gold.where((F.col("run_id") == score.run_id) & (F.col("id") != 3)).count() == 0
    committed = delta.table_version(spark, uri)
    again = score_table(spark, updated)
    assert again.counts["scored"] == again.counts["rescored"] == 0 and delta.table_version(spark, uri) == committed


def test_day_files_updating_and_deleting_keys_leave_the_latest_values_and_rescore_exactly_the_changed_rows(
        spark, regression, tmp_path):
    import os
    import time

    from lakeloop.features import build_features
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table
    from support.lakes import copy_lake

    profile, _ = regression
    frame = generated_rows()
    copied = copy_lake(profile, tmp_path / "lake")
    day1 = write_csv(tmp_path / "days", frame).removeprefix("file:")  # yesterday's file: every row
    then = time.time() - 24 * 3600
    os.utime(day1, (then, then))
    day2 = frame[frame["id"].isin([3, 4])].copy()
    day2.loc[day2["id"] == 3, "x1"] += 10.0  # today's file: key 3 corrected, key 4 deleted
    day2.loc[day2["id"] == 4, "colour"] = "deleted"
    (tmp_path / "days" / "day2.csv").write_text(day2.to_csv(index=False, float_format="%.6f"))
    days = table_profile(copied.lake_root, f"file:{tmp_path}/days", "regression", "y",
                         ("ingest_tables.tables.measurements.delete_when", "colour = 'deleted'"))
    lake = LakeLayout(days.lake_root)
    gold = lake.table_predictions("measurements")
    before = {r["id"]: r["value"] for r in delta.read_table(spark, gold).collect()}

    ingest, features, score = ingest_tables(spark, days), build_features(spark, days), score_table(spark, days)

    assert (ingest.counts["updated"], ingest.counts["deleted"], ingest.counts["delete_records"]) == (1, 1, 1)
    assert (features.counts["updated"], features.counts["deleted"]) == (1, 1)
    assert (score.counts["rescored"], score.counts["removed"], score.counts["scored"]) == (1, 1, 1)
    bronze = {r["id"]: r for r in delta.read_table(spark, lake.bronze_table("measurements")).collect()}
    assert 4 not in bronze and bronze[3]["x1"] == pytest.approx(frame.loc[3, "x1"] + 10.0, abs=1e-5)
    after = {r["id"]: r["value"] for r in delta.read_table(spark, gold).collect()}
    assert sorted(after) == sorted(set(before) - {4})
    assert [k for k in after if after[k] != before[k]] == [3]  # exactly the changed row was scored again


def test_a_key_gone_from_a_snapshot_source_leaves_bronze_features_and_predictions_and_a_rerun_commits_nothing(
        spark, regression, tmp_path):
    from lakeloop.features import build_features
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table
    from support.lakes import copy_lake

    profile, _ = regression
    frame = generated_rows()
    copied = copy_lake(profile, tmp_path / "lake")
    lake = LakeLayout(copied.lake_root)
    tables = (lake.bronze_table("measurements"), lake.table_features("measurements"),
              lake.table_predictions("measurements"))

    def snapshot(rows, broken: bool = False) -> object:
        if broken:  # write_csv adds a record whose key is not a number
            source = write_csv(tmp_path / "raw-broken", rows)
        else:
            path = tmp_path / f"raw-{len(rows)}" / "measurements.csv"
            path.parent.mkdir(parents=True)
            path.write_text(rows.to_csv(index=False, float_format="%.6f"))
            source = f"file:{path}"
        return table_profile(copied.lake_root, source, "regression", "y",
                             ("ingest_tables.tables.measurements.mode", "snapshot"))

    gone = snapshot(frame[~frame["id"].isin([5, 6])])  # today's full export lacks keys 5 and 6
    ingest, features, score = ingest_tables(spark, gone), build_features(spark, gone), score_table(spark, gone)

    assert ingest.counts["deleted"] == 2 and features.counts["deleted"] == 2 and score.counts["removed"] == 2
    for uri in tables:
        ids = {r["id"] for r in delta.read_table(spark, uri).select("id").collect()}
        assert len(ids) == ROWS - 2 and not ids & {5, 6}, uri
    versions = [delta.table_version(spark, uri) for uri in tables]
    assert ingest_tables(spark, gone).counts["deleted"] == 0 and build_features(spark, gone).counts["deleted"] == 0
    assert score_table(spark, gone).counts["removed"] == 0
    assert [delta.table_version(spark, uri) for uri in tables] == versions  # nothing committed

    # A snapshot with a quarantined record deletes nothing: that record may be the missing key's.
    broken = snapshot(frame[frame["id"] != 9], broken=True)
    held = ingest_tables(spark, broken)
    assert held.counts["deleted"] == 0 and held.counts["quarantined"] == 1
    assert any("are not deleted" in w for w in held.warnings)
    assert delta.read_table(spark, tables[0]).where("id = 9").count() == 1


def test_multilabel_predicts_the_labels_over_the_threshold_with_micro_and_macro_f1(spark, multilabel):
    profile, reports = multilabel
    metadata = metadata_of(profile, reports["version"])
    assert metadata["classes"] == ["blue", "hot", "wet"]
    test = metadata["metrics"]["test"]
    assert test["micro_f1"] > 0.9 and test["macro_f1"] > 0.85
    rows = predictions(spark, profile)
    assert {"labels", "scores", "true_labels"} <= set(rows.columns) and len(rows) == ROWS
    # A CSV row with no tags reads as null: unlabelled, so scored but neither trained on nor measured.
    labelled = rows[rows["true_labels"].notna()]
    assert 0.7 * ROWS < len(labelled) < ROWS
    exact = np.mean([sorted(a) == sorted(b) for a, b in zip(labelled["labels"], labelled["true_labels"])])
    assert exact > 0.8, exact
    assert reports["score"].metrics["exact_match_this_run"] == pytest.approx(exact, abs=1e-6)


def test_encoding_standardises_fills_flags_and_buckets_unknown_values():
    from lakeloop.tabular import encode_inputs, input_width

    encoding = {"numeric": [{"name": "x", "mean": 2.0, "std": 4.0, "fill": 2.0}],
                "categorical": [{"name": "c", "vocabulary": ["a", "b"]}], "missing_indicators": True}
    frame = pd.DataFrame({"x": [6.0, None, "n/a"], "c": ["b", "zzz", None]})
    x = encode_inputs(frame, encoding)
    assert x.dtype == np.float32 and x.shape == (3, input_width(encoding)) == (3, 5)
    assert x.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 1.0]]


def test_a_table_model_scores_a_pandas_batch_without_spark(regression):
    from lakeloop.models import load_model
    from lakeloop.scoring.batch import score_rows

    profile, reports = regression
    model, metadata = load_model(Registry.for_profile(profile), reports["version"])
    rows = generated_rows(seed=99).head(50)
    out = score_rows(model, metadata, rows)
    assert list(out.columns) == ["value"] and len(out) == 50
    assert np.abs(out["value"] - rows["y"]).mean() < 0.5
    with pytest.raises(ValueError, match=r"reads column\(s\) \['colour'\]"):
        score_rows(model, metadata, rows.drop(columns=["colour"]))


def test_a_regression_target_that_is_text_is_refused_with_the_fix(spark, regression):
    from lakeloop.features import build_features

    profile, _ = regression
    bad = make_profile(profile.lake_root, ("features.table", {"source": "bronze.measurements", "key": "id",
                                                              "target": "colour", "numeric": ["x1"]}),
                       ("train.task", "regression"))
    with pytest.raises(ConfigError, match=r"target 'colour' is string; give it a numeric type"):
        build_features(spark, bad)


def test_table_features_name_columns_the_source_lacks(spark, regression):
    from lakeloop.features import build_features

    profile, _ = regression
    bad = make_profile(profile.lake_root, ("features.table", {"source": "bronze.measurements", "key": "id",
                                                              "target": "y", "numeric": ["x1", "x9"]}),
                       ("train.task", "regression"))
    with pytest.raises(ConfigError, match=r"names column\(s\) \['x9'\] that .*measurements does not have"):
        build_features(spark, bad)
    properties = json.loads(delta.table_properties(
        spark, profile.lake_root + "/silver/measurements_features")["lakeloop.table_features"])
    assert properties["task"] == "regression" and properties["numeric"] == ["x1", "x2"]


def test_a_second_training_run_reuses_the_table_training_set_and_the_encoding_fitted_for_it(spark, regression):
    from lakeloop.training.dataset import FITTED_FILE, materialize_table_training_set

    profile, reports = regression
    first = materialize_table_training_set(spark, profile)
    again = materialize_table_training_set(spark, profile)
    assert again.reused and again.root == first.root
    assert again.encoding == first.encoding == metadata_of(profile, reports["version"])["table"]["encoding"]
    assert again.target == first.target and again.rows == first.rows
    assert Path(first.root.removeprefix("file:"), FITTED_FILE).is_file()


def test_scoring_a_table_with_a_repeated_key_and_a_missing_key_counts_each_and_scores_a_key_once(
        spark, regression, tmp_path):
    from pyspark.sql import functions as F

    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table

    profile, _ = regression
    bronze = delta.read_table(spark, LakeLayout(profile.lake_root).table("bronze", "measurements")).orderBy("id")
    first = bronze.limit(5)
    uri = f"file:{tmp_path}/new_rows"
    first.unionByName(first.limit(1)).unionByName(first.limit(1).withColumn("id", F.lit(None).cast("int"))) \
        .write.format("delta").save(uri)
    report = score_table(spark, dataclasses.replace(profile, score=dataclasses.replace(profile.score, input=uri)))
    assert report.counts["inputs"] == 7
    assert report.counts["skipped_null_key"] == 1 and report.counts["skipped_duplicate_key"] == 1
    assert report.counts["already_scored"] == 5 and report.counts["scored"] == 0
    assert any("1 input row(s) have no id" in w for w in report.warnings)


def test_a_bounded_table_backfill_commits_in_chunks_and_leaves_the_rest_for_the_next_run(spark, regression, tmp_path):
    from pyspark.sql import functions as F

    from lakeloop.layout import LakeLayout
    from lakeloop.scoring import score_table

    profile, _ = regression
    lake = LakeLayout(profile.lake_root)
    uri = f"file:{tmp_path}/new_ids"
    delta.read_table(spark, lake.table("bronze", "measurements")).orderBy("id").limit(50) \
        .withColumn("id", F.col("id") + 100_000).write.format("delta").save(uri)
    bounded = dataclasses.replace(profile, score=dataclasses.replace(
        profile.score, input=uri, max_rows_per_run=30, commit_every_rows=10))
    gold = lake.table_predictions("measurements")
    before = delta.table_version(spark, gold)
    first = score_table(spark, bounded)
    assert first.counts["scored"] == 30 and first.counts["remaining"] == 20
    assert any("20 row(s) left for the next run" in w for w in first.warnings)
    assert delta.table_version(spark, gold) >= before + 2  # one MERGE per chunk of about 10 rows
    second = score_table(spark, bounded)
    assert second.counts["scored"] == 20 and second.counts["remaining"] == 0
    assert second.counts["already_scored"] == 30
    new = delta.read_table(spark, gold).where(F.col("id") >= 100_000)
    assert new.count() == new.select("id").distinct().count() == 50
    assert score_table(spark, bounded).counts["scored"] == 0

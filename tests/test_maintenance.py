"""lakeloop maintain: OPTIMIZE and VACUUM every lake table after many small runs (fewer files,
the same rows), and retention for training sets, checkpoints and crashed publishes."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from lakeloop.config import load_profile
from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.ops.maintenance import maintain_lake
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.training.dataset import materialize
from support.lakes import copy_lake, layout

SAFETY_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


def _small_runs(spark, profile, runs: int) -> None:
    """``runs`` MERGEs of a few predictions each into gold.predictions, as scoring commits them."""
    from pyspark.sql import functions as F

    features = delta.read_table(spark, layout(profile).features).select("image_id", "label", "split").limit(runs * 20)
    rows = features.select(
        "image_id", F.lit("m").alias("model_name"), F.lit(1).alias("model_version"), "label",
        F.lit(0).alias("label_index"), F.lit(0.5).alias("score"), F.array(F.lit(0.5)).alias("scores"),
        F.col("label").alias("true_label"), F.current_timestamp().alias("scored_at"), F.lit("run").alias("run_id"),
        "split", F.pmod(F.xxhash64("image_id"), F.lit(runs)).alias("chunk")).cache()
    for chunk in range(runs):
        part = rows.where(F.col("chunk") == chunk).drop("chunk").repartition(2)
        delta.merge_insert_new(spark, part, layout(profile).predictions, ["image_id", "model_name", "model_version"])
    rows.unpersist()


def _age(folder: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


def _leftovers(spark, profile) -> dict[str, Path]:
    """Training sets of two models: the digits' (the one a training run took up now, as train does,
    and three newer ones of the same recipe two days old) and a table model's only set, older than
    all of them; a checkpoint folder a week old and a fresh one, a crashed publish."""
    root = Path(profile.lake_root.removeprefix("file:"))
    held = Path(materialize(spark, profile).root.removeprefix("file:"))
    _age(held, 48)
    (held / "_LEASE").touch()  # the lease materialize wrote, as a run that took up an old set leaves it
    version, recipe = re.fullmatch(r"v(\d+)-(.+)", held.name).groups()
    made = {"held": held}
    for newer in (1, 2, 3):
        made[f"newer{newer}"] = root / "_training_sets" / f"v{int(version) + newer}-{recipe}"
        shutil.copytree(held / "train", made[f"newer{newer}"] / "train")
        (made[f"newer{newer}"] / "train" / "_SUCCESS").touch()
        _age(made[f"newer{newer}"], 48)
    made["other_model"] = root / "_training_sets" / "v0-t5e1f0c2a9b3d-8"
    (made["other_model"] / "train").mkdir(parents=True)
    (made["other_model"] / "train" / "part-0.parquet").write_bytes(b"x")
    _age(made["other_model"], 72)
    for name, age_h in (("stale", 200), ("fresh", 1)):
        folder = made[name] = root / "_checkpoints" / "digits_lenet" / f"key-{name}"
        folder.mkdir(parents=True)
        (folder / "epoch-0000.pt").write_bytes(b"x")
        then = time.time() - age_h * 3600
        os.utime(folder / "epoch-0000.pt", (then, then))
    registry = Registry.for_profile(profile)
    for n in (1, 2, 3):
        registry.publish("crashy", f"W{n}".encode(), {})
    (root / "models" / "crashy" / "2" / "_COMMITTED").unlink()  # as if the publish of 2 had crashed
    made["crashed"] = root / "models" / "crashy" / "2"
    return made


@pytest.fixture(scope="module")
def maintained(spark, digits_lake, tmp_path_factory):
    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("maintain") / "lake",
                        ("maintain.vacuum_retention_hours", 0), ("maintain.allow_short_retention", True))
    _small_runs(spark, profile, runs=6)
    made = _leftovers(spark, profile)
    tables = {f"{layer}.{name}": layout(profile).table(layer, name)
              for layer, name in layout(profile).tables(ledger=True)
              if delta.is_delta_table(spark, layout(profile).table(layer, name))}
    before = {name: delta.read_table(spark, uri).toPandas() for name, uri in tables.items()}
    check_before = spark.conf.get(SAFETY_CHECK, None)
    report = maintain_lake(spark, profile, RunReport("maintain", "maintain-1"))
    return profile, report, tables, before, made, check_before


def test_after_many_small_runs_maintain_leaves_fewer_files_and_the_same_rows(spark, maintained):
    profile, report, tables, before, _, _ = maintained
    gold = report.details["tables"]["gold.predictions"]
    assert gold["files_before"] >= 12 and gold["files_after"] == 1, gold  # 6 MERGEs of 2 files -> 1 file
    assert report.counts["files_after"] < report.counts["files_before"]
    assert set(report.details["tables"]) == set(tables) and "_ledger.images" in tables
    for name, uri in tables.items():
        after = delta.read_table(spark, uri).toPandas()
        # Compared on every scalar column (arrays aside), rows sorted by all of them.
        columns = [c for c in after.columns if after[c].map(lambda v: not hasattr(v, "__len__") or
                                                              isinstance(v, (str, bytes))).all()]
        assert len(after) == len(before[name]), name
        assert after[columns].sort_values(columns).reset_index(drop=True).equals(
            before[name][columns].sort_values(columns).reset_index(drop=True)), name


@pytest.mark.fault
def test_maintain_keeps_each_models_newest_training_sets_and_any_set_a_training_run_holds(maintained, reliability):
    """maintain once kept the newest sets across every model in the folder: it deleted another
    model's only set, and a set a running training had taken up."""
    _, report, _, _, made, _ = maintained
    kept = {name: path.exists() for name, path in made.items() if name in ("held", "newer1", "newer2", "newer3",
                                                                          "other_model")}
    assert kept == {"held": True, "newer1": False, "newer2": True, "newer3": True, "other_model": True}
    assert report.details["dropped_training_sets"] == [f"file:{made['newer1']}"]
    assert (made["held"] / "train" / "_SUCCESS").exists() and list((made["held"] / "train").glob("*.parquet"))
    reliability.bad_input("maintain", "keep_training_sets=2 over two models' sets, one taken up by a running "
                          "training 2 versions back", "kept each model's newest 2 and the leased set; dropped 1")


def test_maintain_keeps_fresh_checkpoints(maintained):
    _, report, _, _, made, _ = maintained
    assert not made["stale"].exists() and made["fresh"].exists()
    assert report.counts["checkpoints_dropped"] == 1


def test_maintain_drops_a_crashed_publish_and_never_a_committed_version(maintained):
    profile, report, _, _, made, _ = maintained
    assert not made["crashed"].exists() and report.counts["registry_leftovers_dropped"] == 1
    assert Registry.for_profile(profile).list_versions("crashy") == [1, 3]


def test_deltas_retention_safety_check_is_back_on_after_a_short_retention(spark, maintained):
    *_, check_before = maintained
    assert spark.conf.get(SAFETY_CHECK, None) == check_before


def test_a_retention_under_seven_days_needs_an_explicit_override():
    with pytest.raises(ConfigError, match=r"maintain\.vacuum_retention_hours = 24 is under Delta's safety limit "
                                          r"of 168 hours.*maintain\.allow_short_retention: true"):
        load_profile("local", ["maintain.vacuum_retention_hours=24"])
    assert load_profile("local", ["maintain.vacuum_retention_hours=24",
                                  "maintain.allow_short_retention=true"]).maintain.vacuum_retention_hours == 24


def test_lakeloop_maintain_prints_what_it_did_and_a_rerun_finds_little_to_do(maintained, capsys):
    from lakeloop.cli import main

    profile, *_ = maintained
    assert main(["maintain", "--profile", "test", "--set", f"lake_root={profile.lake_root}",
                 "--set", "maintain.vacuum_retention_hours=0", "--set", "maintain.allow_short_retention=true"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{"):])
    assert printed["counts"]["files_after"] <= printed["counts"]["files_before"]
    assert printed["tables"]["gold.predictions"]["files_before"] == 1  # compacted by the first run already
    assert printed["counts"]["training_sets_dropped"] == 0


def test_a_training_set_whose_lease_ran_out_is_dropped_like_any_older_set(spark, maintained):
    from datetime import datetime, timedelta, timezone

    from lakeloop.ops.maintenance import drop_old_training_sets

    profile, _, _, _, made, _ = maintained
    hours = profile.maintain.training_set_lease_hours
    assert hours == 24  # the default
    assert drop_old_training_sets(spark, profile, datetime.now(timezone.utc) + timedelta(hours=hours - 1)) == []
    assert drop_old_training_sets(spark, profile, datetime.now(timezone.utc) + timedelta(hours=hours + 1)) == \
        [f"file:{made['held']}"]
    assert made["newer2"].exists() and made["newer3"].exists() and made["other_model"].exists()

"""Streaming scoring (score --stream) over a Delta table on local[2]: each row scored once as the
table grows, a replayed micro-batch commits nothing, and a driver killed mid-stream and restarted
leaves exactly one prediction or quarantine row per input row."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lakeloop.config import REPO_ROOT
from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.scoring.stream import score_stream
from support.lakes import copy_lake, layout
from support.reliability import lost_and_duplicated
from support.kills import kill_after_first_commit
from test_scoring import GARBAGE, append_garbage_images, expected_scores, publish_lenet

FRAMES = "bronze.frames"
KEY = ["image_id", "model_name", "model_version"]


@pytest.fixture(scope="module")
def stream_lake(spark, digits_lake, tmp_path_factory):
    """The digits lake plus a published LeNet and a table of frames: bronze.images (with four
    undecodable rows) written as four appends of one file each, the way frames arrive."""
    from pyspark.sql import functions as F

    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("stream") / "lake")
    publish_lenet(spark, profile, seed=0, train_steps=60)
    append_garbage_images(spark, profile)
    frames = delta.read_table(spark, layout(profile).bronze_images).select("image_id", "content", "label")
    frames = frames.withColumn("part", F.pmod(F.xxhash64("image_id"), F.lit(6))).cache()
    for part in range(4):
        frames.where(F.col("part") == part).drop("part").coalesce(1) \
            .write.format("delta").mode("append").save(layout(profile).resolve_table(FRAMES))
    # Parts 4 and 5 arrive later (append_frames).
    frames.where(F.col("part") >= 4).drop("part").write.format("parquet").save(str(_later(profile)))
    frames.unpersist()
    return profile


def _later(profile) -> Path:
    # Inside the lake folder, so that each test's copy of the lake has its own.
    return Path(profile.lake_root.removeprefix("file:")) / "later-frames"


def append_frames(spark, profile, part: int) -> set[str]:
    """Append one part of the frames that arrive later; the ids it added."""
    from pyspark.sql import functions as F

    rows = spark.read.parquet(str(_later(profile))).where(F.pmod(F.xxhash64("image_id"), F.lit(6)) == part)
    rows.coalesce(1).write.format("delta").mode("append").save(layout(profile).resolve_table(FRAMES))
    return {r["image_id"] for r in rows.select("image_id").collect()}


def frames_of(spark, profile):
    return delta.read_table(spark, layout(profile).resolve_table(FRAMES)).toPandas()


def outcome(spark, profile):
    """(predictions, quarantine rows) of the model's version 1, as pandas."""
    gold = delta.read_table(spark, layout(profile).predictions).toPandas()
    uri = layout(profile).quarantine_predictions
    quarantine = delta.read_table(spark, uri).toPandas() if delta.is_delta_table(spark, uri) else None
    return gold, quarantine


def assert_exactly_once(spark, profile) -> str:
    """Every frame has exactly one prediction or one quarantine row, and nothing else is there."""
    frames = frames_of(spark, profile)
    gold, quarantine = outcome(spark, profile)
    assert not gold.duplicated(KEY).any() and not quarantine.duplicated(KEY).any()
    assert set(gold["image_id"]).isdisjoint(quarantine["image_id"])
    assert sorted([*gold["image_id"], *quarantine["image_id"]]) == sorted(frames["image_id"])
    assert sorted(quarantine["image_id"]) == sorted(GARBAGE)
    return (f"inputs {len(frames)}, predictions {len(gold)}, quarantined {len(quarantine)}, "
            f"duplicates {int(gold.duplicated(KEY).sum() + quarantine.duplicated(KEY).sum())}")


def stream_profile(stream_lake, target: Path, *overrides):
    return copy_lake(stream_lake, target, ("score.input", FRAMES), ("score.stream.max_files_per_trigger", 1),
                     *overrides)


def test_a_stream_scores_each_frame_once_and_the_next_run_only_the_frames_that_arrived(spark, stream_lake,
                                                                                         tmp_path):
    profile = stream_profile(stream_lake, tmp_path / "lake")

    first = score_stream(spark, profile, report=RunReport("score", "stream-1"))

    n_first = len(frames_of(spark, profile))
    assert first.counts["batches"] == 4  # one input file per micro-batch
    assert first.counts["inputs"] == n_first
    assert first.counts["scored"] + first.counts["quarantined"] == n_first
    assert first.counts["quarantined"] == len(GARBAGE)
    # Once per worker, not per micro-batch (the session's pool may hold more workers than cores,
    # after earlier tests: each one that scored loaded the model once).
    assert first.counts["model_loads"] == first.counts["python_workers"] < first.counts["batches"] * 2
    assert_exactly_once(spark, profile)

    added = append_frames(spark, profile, 4)
    second = score_stream(spark, profile, report=RunReport("score", "stream-2"))

    assert second.counts["batches"] == 1 and second.counts["inputs"] == len(added) == second.counts["scored"]
    assert_exactly_once(spark, profile)
    gold, _ = outcome(spark, profile)
    assert set(gold.loc[gold["run_id"] == "stream-2", "image_id"]) == added

    # The scores are the model's: a direct forward pass outside Spark on some of the frames.
    sample = gold.sort_values("image_id").head(16)
    contents = frames_of(spark, profile).set_index("image_id").loc[sample["image_id"], "content"].tolist()
    version = Registry.for_profile(profile).resolve("digits_lenet")
    expected, _ = expected_scores(version, contents, "images")
    np.testing.assert_allclose(np.stack(sample["scores"].to_numpy()), expected, rtol=0, atol=1e-6)

    third = score_stream(spark, profile, report=RunReport("score", "stream-3"))
    assert third.counts["batches"] == 0 and third.counts["inputs"] == 0


def test_a_replayed_micro_batch_commits_nothing(spark, stream_lake, tmp_path):
    """Spark replays a micro-batch whose end it had not recorded (a driver killed after the MERGEs,
    before the checkpoint's commit file): Delta's transaction identifier makes both MERGEs skip it."""
    profile = stream_profile(stream_lake, tmp_path / "lake")
    score_stream(spark, profile, report=RunReport("score", "stream-1"))
    lake = layout(profile)
    versions = delta.table_version(spark, lake.predictions), delta.table_version(spark, lake.quarantine_predictions)
    commits = Path(f"{lake.stream_checkpoint('score', FRAMES, 'digits_lenet', 1)}/commits".removeprefix("file:"))
    last = max(commits.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    last.unlink()  # the batch ran and committed to Delta; the checkpoint does not know it
    (commits / f".{last.name}.crc").unlink(missing_ok=True)  # the local filesystem's checksum of it

    replay = score_stream(spark, profile, report=RunReport("score", "replay"))

    assert replay.counts["batches"] == 1 and replay.counts["replayed_batches"] == 1
    assert replay.counts["scored"] == 0 and replay.counts["already_scored"] > 0
    assert (delta.table_version(spark, lake.predictions),
            delta.table_version(spark, lake.quarantine_predictions)) == versions
    assert_exactly_once(spark, profile)


@pytest.mark.parametrize("trigger", ["every minute", "30", "0 seconds", "once"])
def test_a_trigger_that_is_neither_available_now_nor_an_interval_is_refused_when_the_profile_loads(lake, trigger):
    from lakeloop.config import load_profile

    with pytest.raises(ConfigError, match="score.stream.trigger .* available_now .* '30 seconds'"):
        load_profile("test", [("lake_root", lake), ("score.stream.trigger", trigger)])


@pytest.mark.slow
@pytest.mark.fault
def test_a_stream_killed_mid_way_and_restarted_leaves_one_prediction_per_frame(spark, stream_lake, tmp_path,
                                                                                reliability):
    """A real kill: the score --stream job under spark-submit is SIGKILLed once its first micro-batch is
    committed; the restarted stream goes on from the checkpoint, and every frame ends exactly once."""
    profile = stream_profile(stream_lake, tmp_path / "lake")
    lake = Path(profile.lake_root.removeprefix("file:"))
    cmd = [str(REPO_ROOT / "spark-submit.sh"), "--profile", "test", "--set", f"lake_root=file:{lake}",
           "--set", "features.join_table=null", "--set", f"score.input={FRAMES}",
           "--set", "score.stream.max_files_per_trigger=1", "score", "--stream"]
    commits = lake / "_streams" / "score" / FRAMES / "digits_lenet" / "v1" / "commits"
    done = kill_after_first_commit(cmd, commits)
    assert done < 4, "the stream finished before the kill"
    gold, quarantine = outcome(spark, profile)
    written_before = len(gold) + (0 if quarantine is None else len(quarantine))
    added = append_frames(spark, profile, 5)  # and frames keep arriving while it is down

    report = score_stream(spark, profile, report=RunReport("score", "after-kill"))

    assert report.counts["batches"] >= 4 - done + 1
    gold, quarantine = outcome(spark, profile)
    frames = list(frames_of(spark, profile)["image_id"])
    reliability.record("SIGKILL of the spark-submit'ed driver after its first micro-batch; frames arrive while it "
                       "is down; restart", "score --stream (Delta)", "killed + restarted vs every input row",
                       len(frames), *lost_and_duplicated(frames, [*gold["image_id"], *quarantine["image_id"]]))
    summary = assert_exactly_once(spark, profile)
    # What the restart wrote is what was missing: a batch the kill cut after its MERGEs is a replay.
    assert report.counts["scored"] + report.counts["quarantined"] == len(frames_of(spark, profile)) - written_before
    assert added
    print(f"\nstream kill after {done} committed micro-batch(es): {summary}")


def test_a_stream_without_its_input_table_says_what_to_run(spark, stream_lake, tmp_path):
    from lakeloop.errors import SourceError

    profile = stream_profile(stream_lake, tmp_path / "lake", ("score.input", "bronze.nothing_here"))
    shutil.rmtree(tmp_path / "lake" / "bronze" / "nothing_here", ignore_errors=True)
    with pytest.raises(SourceError, match="bronze.nothing_here.* is not a Delta table; check score.input"):
        score_stream(spark, profile, report=RunReport("score", "no-input"))

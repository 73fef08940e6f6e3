"""Batch scoring on local[2]: predictions equal a direct forward pass for both input forms,
reruns commit nothing, new rows and new model versions are scored incrementally, broken
rows go to quarantine, and the model is loaded once per Python worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lakeloop.errors import ConfigError, ModelNotFound, SourceError
from lakeloop.io import delta
from lakeloop.preprocess import CLASSES_PROPERTY, SPEC_PROPERTY, PreprocessSpec, image_to_pixels, pixels_to_tensor
from lakeloop.registry import ModelVersion, Registry
from lakeloop.report import RunReport
from lakeloop.scoring import score_table
from lakeloop.scoring.udf import arrow_batch_settings, register_udf, score, scoped_conf
from support.kills import kill_tree
from support.lakes import copy_lake, layout

MODEL = "digits_lenet"
# Tests marked stacks exercise what differs between the stacks (the UDF's Arrow path, Delta's MERGE):
# CI runs them on spark40 too; the kill and backfill tests run on the current stack only.
# Bytes that are no image, each a different way: text, nothing, a PNG cut short, no value.
GARBAGE = {
    "garbage-text": b"this is not an image",
    "garbage-empty": b"",
    "garbage-truncated": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x08",
    "garbage-null": None,
}


def _job_main():
    import importlib.util

    from lakeloop.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("job_score", REPO_ROOT / "jobs" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def publish_lenet(spark, profile, seed: int, train_steps: int) -> ModelVersion:
    """A LeNet-5 trained for a few steps on the driver (no TorchDistributor), published with the
    metadata keys lakeloop.training writes."""
    import torch

    from lakeloop.models import ModelSpec, build_model, state_dict_bytes

    properties = delta.table_properties(spark, layout(profile).features)
    spec = PreprocessSpec.from_json(properties[SPEC_PROPERTY])
    classes = json.loads(properties[CLASSES_PROPERTY])
    torch.manual_seed(seed)
    model = build_model("lenet5", ModelSpec(num_outputs=len(classes), input_shape=(spec.channels, spec.height,
                                                                                 spec.width)))
    if train_steps:
        rows = delta.read_table(spark, layout(profile).features).where("split = 'train'") \
            .select("pixels", "label_index").toPandas()
        x = torch.from_numpy(pixels_to_tensor(rows["pixels"].tolist(), spec))
        y = torch.tensor(rows["label_index"].to_numpy(), dtype=torch.long)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(train_steps):
            batch = torch.randint(0, len(y), (64,), generator=generator)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    metadata = {
        "architecture": "lenet5",  # the metadata of versions published before model factories: still loads
        "classes": classes,
        "preprocess": json.loads(spec.to_json()),
        "input_shape": [spec.channels, spec.height, spec.width],
        "metrics": {},
        "features": {"table": layout(profile).features},
        "training": {"seed": seed, "steps": train_steps, "run_id": f"test-{seed}"},
        "code_version": "test",
        "torch_version": torch.__version__,
    }
    return Registry.for_profile(profile).publish(MODEL, state_dict_bytes(model), metadata)


def append_garbage_images(spark, profile) -> None:
    """Rows in bronze.images whose ``content`` cannot be decoded (bronze itself never holds
    such rows; another writer's table might)."""
    from pyspark.sql import functions as F

    uri = layout(profile).bronze_images
    bronze = delta.read_table(spark, uri)
    template = bronze.limit(1).drop("image_id", "path", "content")
    garbage = spark.createDataFrame([(k, f"file:/garbage/{k}.png", v) for k, v in GARBAGE.items()],
                                    "image_id string, path string, content binary")
    rows = garbage.crossJoin(template).withColumn("label", F.lit("3")).select(*bronze.columns)
    rows.write.format("delta").mode("append").save(uri)


def expected_scores(version: ModelVersion, inputs: list[bytes], kind: str) -> tuple[np.ndarray, dict]:
    """Softmax of a direct forward pass, outside Spark, with the model's own preprocessing."""
    import torch

    from lakeloop.models import load_model

    # Test lakes are local: the registry is the version folder's grandparent.
    model, metadata = load_model(Registry(version.uri.rsplit("/", 2)[0]), version)
    spec = PreprocessSpec.from_json(metadata["preprocess"])
    pixels = inputs if kind == "pixels" else [image_to_pixels(c, spec) for c in inputs]
    with torch.inference_mode():
        logits = model(torch.from_numpy(pixels_to_tensor(pixels, spec)))
    return torch.softmax(logits.double(), dim=1).numpy(), metadata


def gold_rows(spark, profile, version: int | None = None):
    return delta.read_table(spark, layout(profile).predictions).where(
        "true" if version is None else f"model_version = {version}").toPandas()


def table_version_or_none(spark, uri: str) -> int | None:
    return delta.table_version(spark, uri) if delta.is_delta_table(spark, uri) else None


@pytest.fixture(scope="module")
def model_lake(spark, digits_lake, tmp_path_factory):
    """The digits lake plus a published LeNet (version 1) and four undecodable bronze rows."""
    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("scoring") / "lake")
    publish_lenet(spark, profile, seed=0, train_steps=150)
    append_garbage_images(spark, profile)
    return profile


@pytest.fixture(scope="module")
def scored(spark, model_lake, tmp_path_factory):
    """A copy of model_lake after one score run over silver.features."""
    profile = copy_lake(model_lake, tmp_path_factory.mktemp("scored") / "lake")
    report = score_table(spark, profile, report=RunReport("score", "score-1"))
    return profile, report


@pytest.mark.quick
@pytest.mark.stacks
def test_features_predictions_equal_a_direct_forward_pass(spark, scored):
    profile, report = scored
    features = delta.read_table(spark, layout(profile).features).select("image_id", "label", "pixels").toPandas()
    gold = gold_rows(spark, profile).set_index("image_id").loc[features["image_id"]]
    version = Registry.for_profile(profile).resolve(MODEL)
    expected, metadata = expected_scores(version, features["pixels"].tolist(), "pixels")

    np.testing.assert_allclose(np.stack(gold["scores"].to_numpy()), expected, rtol=0, atol=1e-5)
    top = expected.argmax(axis=1)
    assert gold["label_index"].tolist() == top.tolist()
    assert gold["label"].tolist() == [metadata["classes"][i] for i in top]
    np.testing.assert_allclose(gold["score"].to_numpy(), expected.max(axis=1), rtol=0, atol=1e-5)
    assert gold["true_label"].tolist() == features["label"].tolist()
    assert set(gold["model_name"]) == {MODEL} and set(gold["model_version"]) == {1}
    assert set(gold["run_id"]) == {"score-1"}

    n = len(features)
    assert report.counts["inputs"] == report.counts["scored"] == n
    assert report.counts["already_scored"] == report.counts["quarantined"] == 0
    accuracy = float(np.mean(np.asarray(gold["label"]) == np.asarray(gold["true_label"])))
    assert accuracy > 0.5  # a few steps of training: far above chance (0.1)
    assert report.details["accuracy_this_run"] == round(accuracy, 6)  # of this run's rows, from its own counts
    assert report.details["python_worker_peak_rss_mb"] > 50  # a Python worker with torch loaded
    assert report.throughput["rows_per_s"] > 0
    assert report.details["python_worker_devices"] == ["cpu"]


@pytest.mark.stacks
def test_rerun_with_nothing_new_commits_nothing_and_loads_no_model(spark, scored):
    profile, first = scored
    gold_before = delta.table_version(spark, layout(profile).predictions)
    quarantine_before = table_version_or_none(spark, layout(profile).quarantine_predictions)

    report = score_table(spark, profile, report=RunReport("score", "score-rerun"))

    assert delta.table_version(spark, layout(profile).predictions) == gold_before
    assert table_version_or_none(spark, layout(profile).quarantine_predictions) == quarantine_before
    assert report.counts["scored"] == report.counts["quarantined"] == 0
    assert report.counts["already_scored"] == report.counts["inputs"] == first.counts["inputs"]
    assert report.details["accuracy_this_run"] is None
    assert report.counts["python_workers"] == report.counts["model_loads"] == 0 and "score" not in report.durations_s
    assert report.counts["already_quarantined"] == first.counts["quarantined"]


@pytest.mark.quick
def test_the_score_job_does_not_read_gold_for_the_versions_accuracy_and_evaluation_gives_the_one_figure(
        spark, scored, tmp_path, monkeypatch):
    """The version's accuracy is computed once, by evaluate (gold.model_evaluations); the score
    report keeps the run's own counts, accuracy and drift, and reads gold for nothing else."""
    from pyspark.sql import functions as F

    from lakeloop.evaluation import evaluate_model

    profile = copy_lake(scored[0], tmp_path / "lake")
    lake = layout(profile)
    new = delta.read_table(spark, lake.features).orderBy("image_id").limit(3).withColumn(
        "image_id", F.concat(F.lit("new-"), "image_id"))
    new.write.format("delta").mode("append").save(lake.features)
    reads, read_table = [], delta.read_table

    def recorded(spark_, uri, *args, **kwargs):  # who reads which table
        caller = sys._getframe(1).f_code
        reads.append((uri, Path(caller.co_filename).name, caller.co_name))
        return read_table(spark_, uri, *args, **kwargs)

    monkeypatch.setattr(delta, "read_table", recorded)

    report = score_table(spark, profile, report=RunReport("score", "score-new"))

    assert report.counts["scored"] == 3 and report.details["labelled_this_run"] == 3
    assert report.details["accuracy_this_run"] in (0.0, round(1 / 3, 6), round(2 / 3, 6), 1.0)
    # gold.predictions is read by the plan's anti-join and the MERGE (lakeloop.io.delta) and for its columns;
    # the score job itself reads none of its predictions.
    assert {fn for uri, file, fn in reads if uri == lake.predictions and file == "job.py"} <= {"_nothing_to_do"}
    assert {file for uri, file, fn in reads if uri == lake.predictions} <= {"job.py", "delta.py"}
    removed = {"accuracy_model_version", "accuracy_by_split", "version_counts", "version_counts_from_run",
               "predictions_for_version", "predictions_delta_version"}
    assert removed & (set(report.details) | set(report.metrics)) == set()
    assert not {m for m in report.metrics if m.startswith("accuracy_") and m != "accuracy_this_run"}
    assert report.details["model_evaluations"] == lake.model_evaluations

    monkeypatch.setattr(delta, "read_table", read_table)
    evaluated = evaluate_model(spark, profile, report=RunReport("evaluate", "evaluate-1"))
    gold = delta.read_table(spark, lake.predictions).where("split = 'test'").toPandas()
    test_accuracy = float(np.mean(gold["label"] == gold["true_label"]))
    [row] = delta.read_table(spark, lake.model_evaluations).where("split = 'test'").collect()
    assert row["accuracy"] == pytest.approx(test_accuracy) == evaluated.metrics["test_accuracy"]
    assert row["rows"] == len(gold) and row["run_id"] == "evaluate-1"


def test_a_run_with_nothing_new_since_the_last_run_skips_the_plan_and_reports_what_a_planned_run_would(
        spark, scored, tmp_path):
    from pyspark.sql import functions as F

    from lakeloop.io import hadoop

    profile = copy_lake(scored[0], tmp_path / "lake")
    lake = layout(profile)
    uri = lake.features
    # One row that cannot be scored, so the quarantine's count is carried over too.
    short = delta.read_table(spark, uri).orderBy("image_id").limit(1).withColumn("image_id", F.lit("short-1")) \
        .withColumn("pixels", F.substring("pixels", 1, 100))
    short.write.format("delta").mode("append").save(uri)
    first = score_table(spark, profile, report=RunReport("score", "score-first")).finish()
    assert first.counts["quarantined"] == 1 and "plan_from_run" not in first.details

    again = score_table(spark, profile, report=RunReport("score", "score-again")).finish()
    hadoop.delete(spark, f"{lake.root}/_state/score")  # the step's record gone: the next run plans
    planned = score_table(spark, profile, report=RunReport("score", "score-planned"))

    assert again.details["plan_from_run"] == "score-first" and "plan_from_run" not in planned.details
    assert again.counts == planned.counts
    assert again.counts["already_scored"] == first.counts["already_scored"] + first.counts["scored"]
    assert again.counts["already_quarantined"] == first.counts["already_quarantined"] + 1

    # Predictions deleted from gold (to score them again) change gold's state: the run plans again.
    two = [r.image_id for r in delta.read_table(spark, lake.predictions).orderBy("image_id").limit(2).collect()]
    spark.sql(f"DELETE FROM delta.`{lake.predictions}` WHERE image_id IN ('{two[0]}', '{two[1]}')")
    rescored = score_table(spark, profile, report=RunReport("score", "score-rescored")).finish()
    assert "plan_from_run" not in rescored.details and rescored.counts["scored"] == 2

    # A record cut short (a disk that filled, a copy stopped half-way) is not trusted: the run plans.
    records = list(Path(lake.root.removeprefix("file:"), "_state", "score").glob("*.json"))
    assert len(records) == 1, records
    records[0].write_text(records[0].read_text()[:100])
    after_cut = score_table(spark, profile, report=RunReport("score", "score-after-cut"))
    assert "plan_from_run" not in after_cut.details
    assert after_cut.counts["already_scored"] == again.counts["already_scored"]


@pytest.mark.stacks
def test_only_new_rows_are_scored_and_wrong_sized_pixels_are_quarantined(spark, scored, tmp_path):
    from pyspark.sql import functions as F

    profile = copy_lake(scored[0], tmp_path / "lake")
    uri = layout(profile).features
    before = gold_rows(spark, profile)
    sample = delta.read_table(spark, uri).orderBy("image_id").limit(3)
    new = sample.withColumn("image_id", F.concat(F.lit("new-"), "image_id"))
    short = sample.limit(1).withColumn("image_id", F.lit("short-1")).withColumn("pixels", F.substring("pixels", 1, 100))
    new.unionByName(short).write.format("delta").mode("append").save(uri)

    report = score_table(spark, profile, report=RunReport("score", "score-2"))

    assert report.counts["scored"] == 3 and report.counts["quarantined"] == 1
    assert report.counts["already_scored"] == len(before)
    after = gold_rows(spark, profile).set_index("image_id")
    assert len(after) == len(before) + 3
    old = after.loc[before["image_id"]]
    assert old["run_id"].tolist() == before["run_id"].tolist()
    assert old["scored_at"].tolist() == before["scored_at"].tolist()
    fresh = after[after.index.str.startswith("new-")]
    assert set(fresh["run_id"]) == {"score-2"}
    # Same pixels as the rows they were copied from, so the same scores.
    twins = after.loc[[i.removeprefix("new-") for i in fresh.index]]
    np.testing.assert_allclose(np.stack(fresh["scores"]), np.stack(twins["scores"]), rtol=0, atol=1e-5)
    quarantine = delta.read_table(spark, layout(profile).quarantine_predictions).toPandas()
    assert quarantine["image_id"].tolist() == ["short-1"]
    error = quarantine["error"][0]
    assert "pixels hold 100 bytes" in error and "32x32x1 = 1024 bytes" in error and "--input images" in error

    # The quarantined row is not retried: a third run commits nothing anywhere.
    versions = (delta.table_version(spark, layout(profile).predictions),
                delta.table_version(spark, layout(profile).quarantine_predictions))
    again = score_table(spark, profile, report=RunReport("score", "score-3"))
    assert again.counts["scored"] == again.counts["quarantined"] == 0
    assert again.counts["already_quarantined"] == 1
    assert versions == (delta.table_version(spark, layout(profile).predictions),
                        delta.table_version(spark, layout(profile).quarantine_predictions))


@pytest.mark.stacks
def test_a_second_model_version_scores_alongside_the_first(spark, scored, tmp_path):
    profile = copy_lake(scored[0], tmp_path / "lake")
    v1_before = gold_rows(spark, profile, 1).sort_values("image_id").reset_index(drop=True)
    v2 = publish_lenet(spark, profile, seed=1, train_steps=0)
    assert v2.version == 2

    report = score_table(spark, profile, report=RunReport("score", "score-v2"))

    assert report.details["model"]["version"] == 2
    assert report.counts["scored"] == len(v1_before) and report.counts["already_scored"] == 0
    v1_after = gold_rows(spark, profile, 1).sort_values("image_id").reset_index(drop=True)
    assert v1_after.drop(columns="scores").equals(v1_before.drop(columns="scores"))
    assert all(np.array_equal(a, b) for a, b in zip(v1_after["scores"], v1_before["scores"]))
    v2_rows = gold_rows(spark, profile, 2).set_index("image_id").loc[v1_before["image_id"]]
    features = delta.read_table(spark, layout(profile).features).select("image_id", "pixels").toPandas() \
        .set_index("image_id").loc[v1_before["image_id"]]
    expected, _ = expected_scores(v2, features["pixels"].tolist(), "pixels")
    np.testing.assert_allclose(np.stack(v2_rows["scores"].to_numpy()), expected, rtol=0, atol=1e-5)


@pytest.mark.stacks
def test_job_scores_raw_images_and_quarantines_undecodable_ones(spark, model_lake, tmp_path):
    profile = copy_lake(model_lake, tmp_path / "lake")
    lake = profile.lake_root

    code = _job_main()(["--profile", "test", "--set", f"lake_root={lake}", "--set", "features.join_table=null",
                        "--input", "images", "--model", f"{MODEL}@latest"])

    assert code == 0
    report = json.loads((Path(lake.removeprefix("file:")) / "_reports" / "score" / "latest.json").read_text())
    assert report["status"] == "succeeded"
    bronze = delta.read_table(spark, layout(profile).bronze_images).select("image_id", "content").toPandas()
    images = bronze[~bronze["image_id"].isin(list(GARBAGE))]
    assert report["counts"]["inputs"] == len(bronze)
    assert report["counts"]["scored"] == len(images) and report["counts"]["quarantined"] == len(GARBAGE)

    quarantine = delta.read_table(spark, layout(profile).quarantine_predictions).toPandas().set_index("image_id")
    assert sorted(quarantine.index) == sorted(GARBAGE)
    assert quarantine.loc["garbage-text", "error"].startswith("cannot decode image (UnidentifiedImageError")
    assert "re-ingest the original file" in quarantine.loc["garbage-empty", "error"]
    # A bronze row without bytes is a file ingested by reference: read from its path, which is gone here.
    assert quarantine.loc["garbage-null", "error"].startswith(
        "the image ingested by reference at file:/garbage/garbage-null.png is gone")
    assert set(quarantine["model_version"]) == {1}

    gold = gold_rows(spark, profile).set_index("image_id").loc[images["image_id"]]
    version = Registry.for_profile(profile).resolve(MODEL)
    expected, _ = expected_scores(version, images["content"].tolist(), "content")
    np.testing.assert_allclose(np.stack(gold["scores"].to_numpy()), expected, rtol=0, atol=1e-5)
    # Raw images preprocessed with the model's spec score as their silver.features pixels do.
    features = delta.read_table(spark, layout(profile).features).select("image_id", "pixels").toPandas() \
        .set_index("image_id").loc[images["image_id"]]
    from_pixels, _ = expected_scores(version, features["pixels"].tolist(), "pixels")
    np.testing.assert_allclose(expected, from_pixels, rtol=0, atol=1e-9)


def test_a_crash_between_the_two_merges_is_repaired_by_the_rerun(spark, model_lake, tmp_path):
    """Each MERGE commits atomically, so the only half-done state is gold written and quarantine
    not. Produce it with a real failure (a file where the quarantine table must go), then rerun."""
    profile = copy_lake(model_lake, tmp_path / "lake", ("score.input", "images"))
    blocker = Path(layout(profile).quarantine_predictions.removeprefix("file:"))
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a Delta table")

    # Py4JJavaError when the quarantine table is first created there, AnalysisException when merged into.
    with pytest.raises(Exception, match="(DELTA_MISSING_DELTA_TABLE|DELTA_CANNOT_CREATE_LOG_PATH).*quarantine/predictions"):
        score_table(spark, profile, report=RunReport("score", "crashed"))
    written = gold_rows(spark, profile)
    assert len(written) > 0 and set(written["run_id"]) == {"crashed"}

    blocker.unlink()
    report = score_table(spark, profile, report=RunReport("score", "rerun"))

    assert report.counts["scored"] == 0 and report.counts["already_scored"] == len(written)
    assert report.counts["quarantined"] == len(GARBAGE)
    gold = gold_rows(spark, profile)
    assert len(gold) == len(written) and not gold.duplicated(["image_id", "model_name", "model_version"]).any()
    quarantine = delta.read_table(spark, layout(profile).quarantine_predictions).toPandas()
    assert sorted(quarantine["image_id"]) == sorted(GARBAGE) and set(quarantine["run_id"]) == {"rerun"}


def test_a_bounded_backfill_scores_in_committed_chunks_and_leaves_the_rest_for_the_next_run(spark, model_lake,
                                                                                            tmp_path):
    profile = copy_lake(model_lake, tmp_path / "lake", ("score.max_rows_per_run", 1000),
                        ("score.commit_every_rows", 400))
    first = score_table(spark, profile, report=RunReport("score", "backfill-1"))
    n = first.counts["inputs"]
    assert first.counts["scored"] == 1000 and first.counts["remaining"] == n - 1000
    assert [c["chunk"] for c in first.details["chunks"]] == [1, 2, 3]
    assert sum(c["rows"] for c in first.details["chunks"]) == 1000
    assert delta.table_version(spark, layout(profile).predictions) == 2  # three commits: versions 0, 1, 2
    assert any("left for the next run" in w for w in first.warnings)

    second = score_table(spark, profile, report=RunReport("score", "backfill-2"))
    assert second.counts["already_scored"] == 1000 and second.counts["scored"] == n - 1000
    assert second.counts["remaining"] == 0
    third = score_table(spark, profile, report=RunReport("score", "backfill-3"))
    assert third.counts["scored"] == 0 and third.counts["already_scored"] == n
    gold = gold_rows(spark, profile)
    assert len(gold) == n and not gold.duplicated(["image_id", "model_name", "model_version"]).any()


@pytest.mark.slow
def test_a_backfill_killed_after_its_first_chunk_ends_with_one_prediction_per_row(spark, model_lake, tmp_path):
    """A real kill: the score job under spark-submit is SIGKILLed once its first chunk is committed;
    the rerun scores the rest, and every input row has exactly one prediction."""
    import os
    import subprocess
    import time

    from lakeloop.config import REPO_ROOT

    profile = copy_lake(model_lake, tmp_path / "lake", ("score.commit_every_rows", 450))
    lake = Path(profile.lake_root.removeprefix("file:"))
    cmd = [str(REPO_ROOT / "spark-submit.sh"), "--profile", "test", "--set", f"lake_root=file:{lake}",
           "--set", "features.join_table=null", "--set", f"ingest_images.source={profile.ingest_images.source}",
           "--set", "score.commit_every_rows=450", "score"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")})
    first_commit = lake / "gold" / "predictions" / "_delta_log" / f"{0:020d}.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None and not first_commit.exists():
            time.sleep(0.05)
    finally:
        kill_tree(proc.pid)
        proc.wait()
    assert first_commit.exists(), "the job never committed its first chunk"
    committed = len(gold_rows(spark, profile))
    n = len(delta.read_table(spark, layout(profile).features).toPandas())
    assert 0 < committed < n, (committed, n)  # killed part-way: some chunks in, some not

    report = score_table(spark, profile, report=RunReport("score", "after-kill"))

    assert report.counts["already_scored"] == committed and report.counts["scored"] == n - committed
    gold = gold_rows(spark, profile)
    assert len(gold) == n and gold["image_id"].nunique() == n
    print(f"\nbackfill kill: inputs {n}, committed before the kill {committed}, predictions {len(gold)}, "
          f"duplicates {len(gold) - gold['image_id'].nunique()}")


@pytest.mark.stacks
def test_score_adds_predictions_to_any_dataframe(spark, model_lake):
    registry = Registry.for_profile(model_lake)
    bronze = delta.read_table(spark, layout(model_lake).bronze_images).where("image_id NOT LIKE 'garbage-%'") \
        .orderBy("image_id").limit(5).select("image_id", "content").toPandas()
    contents = bronze["content"].tolist()
    rows = [(f"r{i}", c) for i, c in enumerate(contents)] + [("bad", b"\x00junk"), ("none", None)]
    df = spark.createDataFrame(rows, "name string, img binary")

    out = score(df, MODEL, registry=registry, input_col="img").orderBy("name").toPandas().set_index("name")

    expected, metadata = expected_scores(registry.resolve(MODEL), contents, "content")
    got = np.stack([out.loc[f"r{i}", "prediction"]["scores"] for i in range(len(contents))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert out.loc["bad", "prediction"]["error"].startswith("cannot decode image")
    assert out.loc["bad", "prediction"]["label"] is None
    assert out.loc["none", "prediction"]["error"].startswith("no image")

    # Pixels, flattened, with a prefix because the input already has a label column; one row the wrong size.
    spec = PreprocessSpec.from_json(metadata["preprocess"])
    pixels = [image_to_pixels(c, spec) for c in contents[:2]] + [b"\x00" * 10]
    pdf = spark.createDataFrame([(str(i), "x", p) for i, p in enumerate(pixels)],
                                "id string, label string, pixels binary")
    with pytest.raises(ConfigError, match=r"\['label'\] already exist.*prefix='predicted_'"):
        score(pdf, f"{MODEL}:1", registry=registry, flatten=True)
    flat = score(pdf, f"{MODEL}:1", registry=registry, flatten=True, prefix="predicted_").orderBy("id").toPandas()
    assert list(flat.columns) == ["id", "label", "pixels", "predicted_label", "predicted_label_index",
                                  "predicted_score", "predicted_scores", "predicted_error"]
    np.testing.assert_allclose(np.stack(flat["predicted_scores"][:2]), expected[:2], rtol=0, atol=1e-5)
    assert "pixels hold 10 bytes" in flat["predicted_error"][2] and np.isnan(flat["predicted_score"][2])

    with pytest.raises(ConfigError, match="no image column to score: the input has name;"):
        score(df.select("name"), MODEL, registry=registry)
    with pytest.raises(ConfigError, match="'name' is string, not binary"):
        score(df, MODEL, registry=registry, input_col="name")
    with pytest.raises(ModelNotFound, match="has no version 9"):
        score(df, f"{MODEL}:9", registry=registry, input_col="img")


@pytest.mark.stacks
def test_registered_sql_function(spark, model_lake):
    registry = Registry.for_profile(model_lake)
    version = register_udf(spark, "digit_model", f"{MODEL}@latest", registry=registry)
    assert version.version == 1
    spark.read.format("delta").load(layout(model_lake).bronze_images).createOrReplaceTempView("scoring_images")

    rows = spark.sql(
        "SELECT image_id, p.label AS predicted, p.score, p.error FROM "
        "(SELECT image_id, digit_model(content) AS p FROM scoring_images "
        " WHERE image_id LIKE 'garbage-%' OR image_id < '1') ORDER BY image_id"
    ).toPandas().set_index("image_id")

    garbage = rows.loc[list(GARBAGE)]
    assert garbage["predicted"].isna().all() and garbage["error"].notna().all()
    good = rows.drop(index=list(GARBAGE))
    assert len(good) > 0 and good["error"].isna().all()
    contents = delta.read_table(spark, layout(model_lake).bronze_images).where("image_id < '1'") \
        .orderBy("image_id").select("content").toPandas()["content"].tolist()
    expected, metadata = expected_scores(version, contents, "content")
    assert good["predicted"].tolist() == [metadata["classes"][i] for i in expected.argmax(axis=1)]


@pytest.mark.stacks
def test_model_is_loaded_once_per_python_worker(spark, model_lake, tmp_path):
    """The cache's own load counter, reported by each worker with every batch it scored: many
    batches per worker, one load, and a reused worker does not load it again in a second query.
    (A private lake copy: its model URI is new to every worker, so the counts start at zero.)"""
    from pyspark.sql import functions as F

    assert spark.conf.get("spark.python.worker.reuse", "true") == "true"
    profile = copy_lake(model_lake, tmp_path / "lake")
    features = delta.read_table(spark, layout(profile).features).select("pixels").repartition(4)

    def run() -> dict[int, tuple[int, int]]:
        out = score(features, MODEL, registry=Registry.for_profile(profile), batch_size=50, diagnostics=True)
        with scoped_conf(spark, arrow_batch_settings(50, 64 << 20)):
            rows = out.groupBy("prediction.worker_pid").agg(
                F.max("prediction.worker_model_loads"), F.max("prediction.worker_batches")).collect()
        return {r[0]: (r[1], r[2]) for r in rows}

    first = run()
    n_rows = features.count()
    assert {loads for loads, _ in first.values()} == {1}
    assert sum(batches for _, batches in first.values()) >= n_rows // 50 > len(first)
    # Idle workers are handed out oldest first, and earlier tests leave some: query again until one
    # of the first query's workers serves again (a handful of queries at most).
    later: dict[int, tuple[int, int]] = {}
    for _ in range(8):
        later = run()
        if set(first) & set(later):
            break
    reused = set(first) & set(later)
    assert reused, "no Python worker was reused in eight queries"
    for pid in reused:
        assert later[pid][0] == 1 and later[pid][1] > first[pid][1]
    assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "512"  # restored after the block


SCORE_BATCH_WITHOUT_SPARK = """
import sys
sys.modules["pyspark"] = None  # importing pyspark now fails: the code below needs no Spark
import numpy as np
from lakeloop.models import ModelSpec, build_model
from lakeloop.scoring.batch import score_batch

model = build_model("lenet5", ModelSpec(num_outputs=10, input_shape=(1, 32, 32))).eval()
metadata = {"name": "m", "version": 1, "classes": [str(i) for i in range(10)],
            "preprocess": {"height": 32, "width": 32, "channels": 1, "resize": "pad", "mean": [0.5], "std": [0.5]}}
empty = score_batch(model, metadata, [], "pixels", "cpu")
assert list(empty.columns) == ["label", "label_index", "score", "scores", "error"] and len(empty) == 0
out = score_batch(model, metadata, [bytes(1024), None, bytes(3)], "pixels", "cpu")
assert out["error"].isna().tolist() == [True, False, False], out
assert out["error"][1].startswith("no image") and "expects 32x32x1 = 1024 bytes" in out["error"][2]
assert abs(sum(out["scores"][0]) - 1.0) < 1e-9 and out["label"][0] == str(int(np.argmax(out["scores"][0])))
try:
    score_batch(model, metadata, [], "png")
except ValueError as exc:
    assert "input_kind 'png' is not one of pixels, content" in str(exc)
else:
    raise AssertionError("an unknown input kind was accepted")
print("scored without Spark")
"""


@pytest.mark.stacks
def test_score_batch_runs_without_spark():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", SCORE_BATCH_WITHOUT_SPARK], capture_output=True, text=True,
                          env={"PYTHONPATH": str(repo / "lib"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0 and "scored without Spark" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("override, message", [
    (("score.batch_size", 0), r"score.batch_size = 0 must be at least 1"),
    (("score.torch_threads_per_task", 0), r"score.torch_threads_per_task = 0 must be at least 1"),
    (("score.max_batch_bytes", 1000), r"score.max_batch_bytes = 1000 must be between 1 MiB \(1048576\) and 2 GiB"),
    (("score.input", "/no/scheme"), r"score.input .* has no URI scheme"),
    (("score.model", "a:b:c"), r"model reference 'a:b:c'"),
])
@pytest.mark.stacks
def test_bad_score_settings_are_refused_when_the_profile_loads(lake, override, message):
    from lakeloop.config import load_profile

    with pytest.raises(ConfigError, match=message):
        load_profile("test", [("lake_root", lake), override])


@pytest.mark.parametrize("override, error, message", [
    (("score.input", "silver.nothing_here"), SourceError,
     r"silver/nothing_here is not a Delta table; check score.input"),
    (("score.model", "digits_lenet@nope"), ModelNotFound, r"has no alias 'nope'.*Committed versions: 1"),
    (("score.input_column", "label"), ConfigError, r"score.input_column = 'label' is string, not binary"),
])
@pytest.mark.stacks
def test_settings_that_do_not_fit_the_lake_fail_before_scoring_with_the_setting_named(
        spark, model_lake, override, error, message):
    from lakeloop.config import load_profile

    profile = load_profile("test", [("lake_root", model_lake.lake_root), ("features.join_table", None), override])
    with pytest.raises(error, match=message):
        score_table(spark, profile, report=RunReport("score", "bad-settings"))
    assert not delta.is_delta_table(spark, layout(profile).predictions)

"""What a person sees of a run: the run pages in a real browser, the evaluation and bias report,
input drift, TensorBoard and MLflow, progress lines and ``lakeloop report``."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from lakeloop import metrics
from lakeloop.errors import QualityError
from lakeloop.io import delta
from lakeloop.ops.pages import render_page
from lakeloop.report import RunReport
from support.lakes import layout
from support.observed import OBSERVED_EPOCHS, profile_for

pytestmark = pytest.mark.slow

# The figures each job's page must show (by their data-figure captions' starts).
EXPECTED_FIGURES = {
    "ingest_images": ["seconds per step", "quarantined rows per reason"],
    "ingest_tables": ["seconds per step"],
    "build_features": ["seconds per step", "rows per class and split", "rows per class and scan_batch"],
    "train": ["seconds per step", "training loss and validation accuracy per epoch"],
    "score": ["seconds per step", "input drift"],
    "evaluate": ["seconds per step", "confusion matrix (test split)", "calibration (test split)",
                 "accuracy per scan_batch (test split)"],
}
PAGE_FACTS = {
    "images": "document.images.length",
    "broken_images": "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length",
    "figures": "Array.from(document.querySelectorAll('figure[data-figure]')).map(f => f.dataset.figure)",
    "scripts": "document.scripts.length",
    "text": "document.body.innerText",
}


@pytest.fixture(scope="module")
def browser():
    from support.browser import Chromium

    with Chromium() as chromium:
        yield chromium


def _screenshot_is_a_drawn_page(png: bytes) -> bool:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = image.getextrema()
    return image.width >= 800 and image.height >= 600 and hi - lo > 100


@pytest.mark.browser
@pytest.mark.parametrize("job", list(EXPECTED_FIGURES))
def test_every_jobs_page_renders_in_chromium_with_its_plots_and_no_console_errors(observed_lake, browser, job,
                                                                                   tmp_path):
    page = tmp_path / f"{job}.html"
    page.write_text(render_page(observed_lake.reports[job]), encoding="utf-8")

    seen = browser.check_page(page.as_uri(), PAGE_FACTS)

    assert seen.console_errors == []
    assert seen.values["broken_images"] == 0 and seen.values["images"] >= len(EXPECTED_FIGURES[job])
    for wanted in EXPECTED_FIGURES[job]:
        assert any(f.startswith(wanted) for f in seen.values["figures"]), (wanted, seen.values["figures"])
    assert seen.values["scripts"] == 0
    assert f"lakeloop {job} succeeded" in seen.values["text"]
    assert _screenshot_is_a_drawn_page(seen.screenshot_png)


@pytest.mark.browser
def test_a_page_shows_a_file_named_like_markup_as_text_and_runs_nothing(browser, tmp_path):
    report = RunReport.start("ingest_images")
    hostile = "<script>document.title='owned'</script><img src=x onerror=alert(1)>.png"
    report.warnings.append(f"file {hostile} was odd")
    report.details["quarantine_reasons"] = {"not_an_image": 1}
    report.details["quarantine_samples"] = [{"path": hostile, "reason": "not_an_image", "error": hostile,
                                             "thumbnail_png": None}]
    page = tmp_path / "hostile.html"
    page.write_text(render_page(report.finish().to_dict()), encoding="utf-8")

    seen = browser.check_page(page.as_uri(), {**PAGE_FACTS, "title": "document.title"})

    assert seen.values["scripts"] == 0 and seen.values["title"] != "owned"
    assert hostile in seen.values["text"]
    assert seen.values["broken_images"] == 0 and seen.console_errors == []


def test_predictions_carry_the_split_they_were_scored_in(spark, observed_lake):
    lake = layout(observed_lake.profile)
    gold = delta.read_table(spark, lake.predictions).select("image_id", "split")
    features = delta.read_table(spark, lake.features).select("image_id", "split")
    mismatched = gold.join(features.withColumnRenamed("split", "feature_split"), "image_id") \
        .where("split IS NULL OR split != feature_split").count()

    assert gold.count() == 1797 and mismatched == 0
    # The evaluation counts each row in that split (it reads gold's column): its test split is training's.
    evaluated = observed_lake.reports["evaluate"]
    assert set(evaluated["details"]["accuracy_by_split"]) == {"train", "validation", "test"}
    assert evaluated["metrics"]["test_accuracy"] == pytest.approx(
        observed_lake.reports["train"]["metrics"]["test_accuracy"], abs=1e-6)


def _test_split_predictions(spark, observed_lake):
    lake = layout(observed_lake.profile)
    gold = delta.read_table(spark, lake.predictions)
    features = delta.read_table(spark, lake.features).where("split = 'test'").select("image_id", "scan_batch")
    return gold.join(features, "image_id").select("true_label", "label", "scores", "score", "scan_batch").toPandas()


def test_the_evaluation_equals_scikit_learns_figures_on_the_test_split(spark, observed_lake):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rows = _test_split_predictions(spark, observed_lake)
    evaluation = observed_lake.reports["evaluate"]["details"]["evaluation"]
    classes = evaluation["classes"]
    truth, predicted = rows["true_label"], rows["label"]
    precision, recall, _, support = precision_recall_fscore_support(truth, predicted, labels=classes, zero_division=0)
    scores = np.stack(rows["scores"].to_numpy())
    true_index = truth.map(classes.index).to_numpy()
    top3 = np.mean([(s > s[t]).sum() < 3 for s, t in zip(scores, true_index)])

    assert evaluation["rows"] == len(rows)
    assert evaluation["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert evaluation["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=classes, average="macro"))
    assert evaluation["confusion_matrix"] == confusion_matrix(truth, predicted, labels=classes).tolist()
    assert [c["precision"] for c in evaluation["per_class"]] == pytest.approx(precision)
    assert [c["recall"] for c in evaluation["per_class"]] == pytest.approx(recall)
    assert [c["support"] for c in evaluation["per_class"]] == support.tolist()
    assert evaluation["top_k"] == {"k": 3, "accuracy": pytest.approx(top3)}
    bins = evaluation["calibration"]["bins"]
    assert sum(b["rows"] for b in bins) == len(rows)
    assert observed_lake.reports["evaluate"]["metrics"]["test_accuracy"] == pytest.approx(evaluation["accuracy"])


def test_the_bias_report_gives_accuracy_per_scan_batch_and_the_largest_gap(spark, observed_lake):
    rows = _test_split_predictions(spark, observed_lake)
    per_batch = (rows["label"] == rows["true_label"]).groupby(rows["scan_batch"]).mean()
    groups = observed_lake.reports["evaluate"]["details"]["evaluation"]["groups"]

    assert {g["group"]: g["accuracy"] for g in groups["groups"]} == pytest.approx(per_batch.to_dict())
    assert groups["largest_gap"]["value"] == pytest.approx(per_batch.max() - per_batch.min())
    assert groups["largest_gap"]["worst"] == per_batch.idxmin()


def test_evaluation_rows_are_stored_per_split_and_a_rerun_commits_nothing(spark, observed_lake):
    from lakeloop.evaluation import evaluate_model

    uri = layout(observed_lake.profile).model_evaluations
    before = delta.table_version(spark, uri)
    stored = {r["split"]: r for r in delta.read_table(spark, uri).collect()}

    evaluate_model(spark, observed_lake.profile)

    assert set(stored) == {"train", "validation", "test"}
    assert json.loads(stored["test"]["evaluation"]) == observed_lake.reports["evaluate"]["details"]["evaluation"]
    assert delta.table_version(spark, uri) == before


def test_evaluation_takes_each_rows_split_from_gold_predictions_not_from_silver(spark, observed_lake, tmp_path):
    from lakeloop.evaluation import evaluate_model
    from support.lakes import copy_lake

    profile = copy_lake(observed_lake.profile, tmp_path / "lake")
    lake = layout(profile)
    per_split = {r["split"]: r["count"] for r in delta.read_table(spark, lake.predictions).groupBy("split")
                 .count().collect()}
    five = [r.image_id for r in delta.read_table(spark, lake.predictions).where("split = 'train'")
            .orderBy("image_id").limit(5).collect()]
    # gold's column now says holdout; silver.features still says train for these rows.
    spark.sql(f"UPDATE delta.`{lake.predictions}` SET split = 'holdout' "
              f"WHERE image_id IN ({', '.join(repr(i) for i in five)})")
    features_before = delta.table_version(spark, lake.features)

    evaluated = evaluate_model(spark, profile, report=RunReport.start("evaluate"))

    assert evaluated.counts["rows_holdout"] == 5 and evaluated.counts["rows_train"] == per_split["train"] - 5
    assert {s: evaluated.counts[f"rows_{s}"] for s in ("validation", "test")} == \
        {s: per_split[s] for s in ("validation", "test")}
    assert delta.table_version(spark, lake.features) == features_before
    assert {r["split"] for r in delta.read_table(spark, lake.model_evaluations).collect()} == \
        {"train", "validation", "test", "holdout"}


def test_a_group_gap_over_the_threshold_fails_evaluate_when_on_violation_is_fail(spark, observed_lake):
    from lakeloop.evaluation import evaluate_model

    strict = profile_for(observed_lake.root, ("quality.max_group_accuracy_gap", 0.0),
                         ("quality.on_violation", "fail"))
    report = RunReport.start("evaluate")
    with pytest.raises(QualityError, match="between scan_batch groups"):
        evaluate_model(spark, strict, report=report)
    assert report.details["quality_violations"][0]["check"] == "max_group_accuracy_gap"


def test_class_imbalance_over_the_threshold_is_a_warning_by_default(spark, observed_lake):
    from lakeloop.features import build_features

    report = build_features(spark, profile_for(observed_lake.root, ("quality.max_class_imbalance", 1.0)))

    quality = report.details["quality"]
    assert quality["label_coverage"] == 1.0
    assert sum(quality["class_counts"]["train"].values()) == report.counts["split_train"]
    assert quality["groups"]["column"] == "scan_batch"
    assert any("quality.max_class_imbalance" in w for w in report.warnings)
    assert report.counts["inserted"] == report.counts["updated"] == 0


def test_scoring_compares_its_inputs_with_the_training_set(spark, observed_lake, tmp_path):
    from pyspark.sql import functions as F

    from lakeloop.scoring import score_table

    same = observed_lake.reports["score"]["details"]["drift"]
    assert same["psi"] < 0.1 and same["rows"] == 1797

    # The same images, inverted (white digits on black -> black on white): a shifted input,
    # scored in a copy of the lake.
    copy = tmp_path / "lake"
    shutil.copytree(observed_lake.root / "lake", copy)
    invert = F.udf(lambda b: bytes(255 - v for v in b), "binary")
    uri = f"file:{tmp_path}/inverted"
    delta.read_table(spark, layout(observed_lake.profile).features).select(
        F.concat(F.lit("inverted-"), "image_id").alias("image_id"), "label", invert("pixels").alias("pixels")) \
        .write.format("delta").save(uri)
    report = score_table(spark, profile_for(observed_lake.root, ("lake_root", f"file:{copy}"), ("score.input", uri),
                                            ("quality.max_input_psi", 0.25)))

    assert report.details["drift"]["psi"] > 0.25
    assert any("quality.max_input_psi" in w for w in report.warnings)


def test_training_writes_tensorboard_events_that_tensorboard_reads(observed_lake):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = observed_lake.reports["train"]["outputs"]["tensorboard"].removeprefix("file:")
    events = EventAccumulator(folder)
    events.Reload()

    assert set(events.Tags()["scalars"]) >= {"train/loss", "validation/accuracy", "train/learning_rate"}
    history = observed_lake.reports["train"]["details"]["history"]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, OBSERVED_EPOCHS + 1))
    assert [e.value for e in events.Scalars("validation/accuracy")] == pytest.approx(
        [h["val_accuracy"] for h in history])


def test_training_logs_a_run_with_metrics_lineage_and_the_model_to_mlflow(observed_lake):
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from lakeloop.models import load_model
    from lakeloop.registry import Registry

    logged = observed_lake.reports["train"]["details"]["mlflow"]
    client = MlflowClient(observed_lake.mlflow_uri)
    run = client.get_run(logged["run_id"])
    history = client.get_metric_history(run.info.run_id, "val_accuracy")

    assert run.info.status == "FINISHED"
    assert [m.step for m in history] == list(range(1, OBSERVED_EPOCHS + 1))
    assert run.data.metrics["test_accuracy"] == pytest.approx(observed_lake.reports["train"]["metrics"]["test_accuracy"])
    assert run.data.tags["lakeloop.features_delta_version"] == str(
        observed_lake.reports["build_features"]["details"]["features_version"])
    assert run.data.params["epochs"] == str(OBSERVED_EPOCHS)
    mlflow.set_tracking_uri(observed_lake.mlflow_uri)
    logged_model = mlflow.pytorch.load_model(logged["model_uri"])
    registry = Registry.for_profile(observed_lake.profile)
    model, _ = load_model(registry, registry.resolve("digits_lenet"))
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(logged_model(x), model.eval()(x), atol=1e-5)


@pytest.mark.fault
def test_an_mlflow_export_error_after_publishing_warns_keeps_the_model_and_the_rerun_logs_it(
        spark, digits_lake, tmp_path, reliability):
    """The MLflow artifact store could not be written (a file where its folder should be): train once
    failed after publishing, and the rerun, finding the model published, never logged it."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from lakeloop.models import load_model
    from lakeloop.registry import Registry
    from lakeloop.training.driver import train
    from support.lakes import copy_lake

    tracking = tmp_path / "mlflow"
    tracking.mkdir()
    uri = f"sqlite:///{tracking}/mlflow.db"
    profile = copy_lake(digits_lake, tmp_path / "lake", ("train.epochs", 1), ("observe.mlflow_tracking_uri", uri))
    (tracking / "mlflow-artifacts").write_text("not a folder")  # where the experiment keeps its artifacts

    first = RunReport.start("train")
    version = train(spark, profile, report=first)
    registry = Registry.for_profile(profile)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(profile.observe.mlflow_experiment).experiment_id

    def runs(status: str) -> list:
        return client.search_runs([experiment], f"tags.`lakeloop.model` = 'digits_lenet:{version.version}' and "
                                                f"attributes.status = '{status}'")

    assert first.counts["published"] == 1 and "mlflow" not in first.details
    assert [w for w in first.warnings if "is published but not in MLflow" in w and "run train again" in w]
    assert registry.list_versions("digits_lenet") == [version.version]  # kept, committed
    assert runs("FINISHED") == [] and len(runs("FAILED")) == 1

    (tracking / "mlflow-artifacts").unlink()  # the store is writable again
    rerun = RunReport.start("train")
    assert train(spark, profile, report=rerun) == version
    assert rerun.counts["published"] == 0 and rerun.details["mlflow"]["model_uri"]
    logged = runs("FINISHED")
    assert [r.info.run_id for r in logged] == [rerun.details["mlflow"]["run_id"]]
    assert logged[0].data.tags["lakeloop.run_id"] == first.run_id  # the run that trained it
    assert logged[0].data.metrics["test_accuracy"] == pytest.approx(first.metrics["test_accuracy"])
    mlflow.set_tracking_uri(uri)
    model, _ = load_model(registry, version)
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(mlflow.pytorch.load_model(rerun.details["mlflow"]["model_uri"])(x), model(x), atol=1e-5)

    third = RunReport.start("train")
    train(spark, profile, report=third)
    assert third.details["mlflow"] == {"run_id": logged[0].info.run_id, "logged_before": True}
    assert len(runs("FINISHED")) == 1 and registry.list_versions("digits_lenet") == [version.version]
    reliability.bad_input("train (MLflow)", "artifact store unwritable when the model is exported",
                          "train returns the published version with a warning; the rerun logs it once, a third run finds it logged")


@pytest.mark.fault
def test_after_a_split_seed_change_evaluation_and_scoring_count_each_row_in_the_split_the_model_trained_it_in(
        spark, digits_lake, tmp_path, reliability):
    """Evaluation and the score report once took the split from the current silver.features: after
    features.split_seed changed and build_features ran, rows the model trained on counted as test."""
    from lakeloop.config import load_profile
    from lakeloop.evaluation import evaluate_model
    from lakeloop.features import build_features
    from lakeloop.registry import Registry
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train
    from support.lakes import copy_lake

    profile = copy_lake(digits_lake, tmp_path / "lake", ("train.epochs", 1))
    version = train(spark, profile, report=RunReport.start("train"))
    trained_at = Registry.for_profile(profile).read_metadata(version)["features"]["delta_version"]
    features = layout(profile).features

    def splits(delta_version: int) -> dict[str, str]:
        rows = delta.read_table(spark, features, delta_version).select("image_id", "split").collect()
        return {r["image_id"]: r["split"] for r in rows}

    trained = splits(trained_at)
    reshuffled = load_profile("test", [("lake_root", profile.lake_root), ("ingest_images.source",
                                        profile.ingest_images.source), ("features.join_table", None),
                                       ("features.training_set_files", 8), ("features.split_seed", "reshuffled")])
    build_features(spark, reshuffled, report=RunReport.start("build_features"))
    now = splits(delta.table_version(spark, features))
    moved = sum(trained[i] != now[i] for i in trained)
    assert now.keys() == trained.keys() and moved > len(trained) // 10  # the rebuild did reassign the splits

    scored = score_table(spark, reshuffled, report=RunReport.start("score"))
    evaluated = evaluate_model(spark, reshuffled, report=RunReport.start("evaluate"))

    predictions = {r["image_id"]: r["split"] for r in delta.read_table(spark, layout(profile).predictions)
                   .where(f"model_version = {version.version}").select("image_id", "split").collect()}
    assert predictions == trained  # every row scored once, in the split it was trained or tested in
    per_split = {s: sum(v == s for v in trained.values()) for s in ("train", "validation", "test")}
    assert {s: evaluated.counts[f"rows_{s}"] for s in per_split} == per_split
    assert scored.counts["scored"] == len(trained)
    reliability.bad_input("evaluate, score", f"features.split_seed changed after training ({moved} rows moved split)",
                          "every row counted in its trained-on split; test rows are the model's test rows")


def test_a_trained_on_features_version_that_can_no_longer_be_read_gives_todays_splits_with_a_warning(
        spark, digits_lake):
    from lakeloop.splits import model_splits

    features = layout(digits_lake).features
    now = delta.table_version(spark, features)
    splits, warning = model_splits(spark, features, {"features": {"table": features, "delta_version": now + 50}})
    assert warning.startswith(f"{features} at version {now + 50}, the version the model was trained on, can no "
                              f"longer be read (") and "features.split_seed" in warning
    today = delta.read_table(spark, features, now).select("image_id", "split")
    assert splits.exceptAll(today).count() == 0 and today.exceptAll(splits).count() == 0


def test_progress_lines_come_while_a_stage_runs_and_stop_when_it_ends(spark):
    from lakeloop.runtime.progress import Progress

    out = io.StringIO()
    report = RunReport.start("score")
    report.counts["inputs"] = 4

    def slow(batches):
        for batch in batches:
            time.sleep(1.5)
            yield batch

    with Progress(spark, report, 0.5, out) as progress:
        with report.timed("score"):
            spark.range(0, 4, numPartitions=4).mapInPandas(slow, "id long").count()
        # Spark's status store hears of the stage's end through its listener bus, a moment after
        # count() returns; a line being drawn then may still name the stage.
        time.sleep(1.0)
        lines_when_done = progress.lines
        time.sleep(2.0)

    lines = out.getvalue().splitlines()
    assert lines_when_done >= 2 and len(lines) == lines_when_done
    assert all(line.startswith("[lakeloop score ") and "step score: stage" in line and "inputs=4" in line
               for line in lines)


def test_lakeloop_report_draws_the_page_of_a_past_run_from_its_json(spark, observed_lake, capsys):
    from lakeloop.cli.report import main
    from lakeloop.report import write_report

    report = RunReport(**{k: v for k, v in observed_lake.reports["evaluate"].items()})
    write_report(spark, report, layout(observed_lake.profile).reports("evaluate"))
    args = ["--profile", "test", "--set", f"lake_root={observed_lake.profile.lake_root}"]

    assert main([report.run_id, *args]) == 0
    page = Path(capsys.readouterr().out.strip().rsplit(": ", 1)[1])
    assert page.name == f"{report.run_id}.html" and "confusion matrix" in page.read_text()
    assert main(["no_such_job", *args]) == 2
    assert "runs with reports: evaluate" in capsys.readouterr().err


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift():
    even = [0.25] * 4
    assert metrics.population_stability_index(even, even) == 0.0
    small = metrics.population_stability_index(even, [0.3, 0.2, 0.25, 0.25])
    large = metrics.population_stability_index(even, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < 0.1 < 0.25 < large

"""Image models for multilabel and regression (``train.task`` with ``features.target``): images
whose bars say which labels they carry and whose bar brightness is a number in a joined table,
ingested, featured, trained and scored through the jobs, both models' predictions in one
``gold.predictions``; and the errors when the target cannot serve the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from support.lakes import make_profile

PER_FOLDER = 60
PREPROCESS = {"height": 16, "width": 16, "channels": 1, "resize": "pad", "mean": [0.5], "std": [0.5]}
FOLDERS = {"top": ("top",), "left": ("left",), "top+left": ("top", "left")}


def write_raw_zone(raw: Path) -> str:
    """Dark noise images with a bright bar along the top and/or the left edge, in folders named by
    their bars (``top``, ``left``, ``top+left``), and a CSV keyed by their paths whose ``level`` is
    the bars' brightness (0.3 to 1; one value missing, one NaN)."""
    from PIL import Image

    rng = np.random.default_rng(11)
    lines = ["path,level"]
    for folder, bars in FOLDERS.items():
        (raw / "images" / folder).mkdir(parents=True)
        for i in range(PER_FOLDER):
            level = float(rng.uniform(0.3, 1.0))
            pixels = rng.integers(0, 40, size=(16, 16)).astype(np.float64)
            if "top" in bars:
                pixels[:5, :] = level * 255
            if "left" in bars:
                pixels[:, :5] = level * 255
            relative = f"{folder}/b{i:03d}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(raw / "images" / relative)
            missing = {("left", 3): "", ("top", 5): "NaN"}  # no level, and one that is not a number
            lines.append(f"{relative},{missing.get((folder, i), f'{level:.4f}')}")
    (raw / "levels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"file:{raw}"


def task_profile(lake: str, raw: str, *overrides):
    return make_profile(
        lake,
        ("ingest_images.source", f"{raw}/images"),
        ("ingest_tables.tables", {"levels": {"source": f"{raw}/levels.csv", "format": "csv", "keys": ["path"],
                                             "schema": "path STRING, level DOUBLE", "options": {"header": "true"}}}),
        ("features.preprocess", PREPROCESS),
        ("features.join_table", "bronze.levels"), ("features.join_key", "path"), ("features.join_columns", ["level"]),
        ("features.training_set_files", 4),
        ("train.model", "lenet5"), ("train.epochs", 10), ("train.batch_size", 32), ("train.learning_rate", 0.01),
        ("train.augment", False), *overrides)


def multilabel_profile(lake: str, raw: str):
    return task_profile(lake, raw, ("train.task", "multilabel"), ("features.target", "label"),
                        ("features.label_delimiter", "+"), ("train.model_name", "bars"), ("score.model", "bars"))


def regression_profile(lake: str, raw: str):
    return task_profile(lake, raw, ("train.task", "regression"), ("features.target", "level"),
                        ("train.model_name", "brightness"), ("score.model", "brightness"))


@pytest.fixture(scope="module")
def tasks(spark, tmp_path_factory):
    """One lake: the multilabel model built, trained and scored, then the regression model on the same images."""
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    root = tmp_path_factory.mktemp("tasks")
    raw = write_raw_zone(root / "raw")
    multilabel, regression = multilabel_profile(f"file:{root}/lake", raw), regression_profile(f"file:{root}/lake", raw)
    ingest_images(spark, multilabel)
    ingest_tables(spark, multilabel)
    out = {}
    for name, profile in (("multilabel", multilabel), ("regression", regression)):
        features = build_features(spark, profile)
        version = train(spark, profile, report=RunReport("train", f"train-{name}"))
        out[name] = (profile, features, version, score_table(spark, profile))
    return out


def predictions(spark, profile, model_name):
    gold = delta.read_table(spark, LakeLayout(profile.lake_root).predictions)
    return gold.where(gold.model_name == model_name).toPandas()


def test_a_multilabel_image_model_learns_labels_split_from_the_image_label(tasks):
    profile, features, version, _ = tasks["multilabel"]
    assert features.details["classes"] == ["left", "top"]
    metadata = Registry.for_profile(profile).read_metadata(version)
    assert metadata["task"] == "multilabel" and metadata["classes"] == ["left", "top"]
    assert metadata["image_target"] == {"column": "label", "target_scale": None, "multilabel_threshold": 0.5}
    assert metadata["metrics"]["test"]["micro_f1"] > 0.9, metadata["metrics"]["test"]
    per_label = metadata["metrics"]["test"]["per_label"]
    assert [r["label"] for r in per_label] == ["left", "top"] and all(r["f1"] > 0.8 for r in per_label)
    assert sum(r["support"] for r in per_label) > 0


def test_multilabel_predictions_carry_the_labels_over_the_threshold_and_a_score_per_label(spark, tasks):
    profile, _, _, report = tasks["multilabel"]
    rows = predictions(spark, profile, "bars")
    assert report.counts["scored"] == len(rows) == 3 * PER_FOLDER
    # The classifier's columns are there (gold.predictions' readers rely on them) and null, as are regression's.
    assert rows["label"].isna().all() and rows["true_label"].isna().all() and rows["value"].isna().all()
    assert all(len(s) == 2 for s in rows["scores"])
    exact = [sorted(p) == sorted(t) for p, t in zip(rows["labels"], rows["true_labels"])]
    assert np.mean(exact) > 0.9
    # The run's own figure, from its counts: this run scored every row.
    assert report.details["exact_match_this_run"] == pytest.approx(np.mean(exact), abs=1e-6)
    assert report.details["labelled_this_run"] == len(rows) and "exact_match_model_version" not in report.details


def test_a_regression_image_model_learns_a_number_from_a_joined_column(tasks):
    profile, features, version, _ = tasks["regression"]
    assert features.counts["unlabelled"] == 2  # the missing level and the NaN: no target, scored but not trained on
    metadata = Registry.for_profile(profile).read_metadata(version)
    assert metadata["task"] == "regression" and metadata["classes"] == []
    assert metadata["image_target"]["column"] == "level"
    assert 0.5 < metadata["image_target"]["target_scale"]["mean"] < 0.8
    assert metadata["metrics"]["test"]["r2"] > 0.8, metadata["metrics"]["test"]


def test_regression_predictions_are_values_in_the_targets_units_beside_the_multilabel_rows(spark, tasks):
    profile, _, _, report = tasks["regression"]
    rows = predictions(spark, profile, "brightness")
    assert report.counts["scored"] == len(rows) == 3 * PER_FOLDER
    known = rows[rows["true_value"].notna()]
    assert len(known) == len(rows) - 2
    assert np.abs(known["value"] - known["true_value"]).mean() < 0.08
    error = known["value"] - known["true_value"]
    assert report.details["mae_this_run"] == pytest.approx(np.abs(error).mean(), abs=1e-6)
    assert report.details["rmse_this_run"] == pytest.approx(np.sqrt((error ** 2).mean()), abs=1e-6)
    assert report.details["labelled_this_run"] == len(known) and "mae_model_version" not in report.details
    assert rows["labels"].isna().all() and rows["scores"].isna().all()
    # The multilabel model's rows are still there, with their own columns.
    assert predictions(spark, profile, "bars")["labels"].notna().all()


def test_score_batch_returns_the_tasks_fields_without_spark(spark, tasks):
    from lakeloop.models import load_model
    from lakeloop.scoring.batch import score_batch

    profile, _, version, _ = tasks["regression"]
    model, metadata = load_model(Registry.for_profile(profile), version)
    rows = delta.read_table(spark, LakeLayout(profile.lake_root).features).where("target IS NOT NULL") \
        .select("pixels", "target").limit(30).toPandas()
    out = score_batch(model, metadata, [*rows["pixels"], None], "pixels")
    assert list(out.columns) == ["value", "error"]
    assert np.abs(out["value"][:30].astype(float) - rows["target"]).mean() < 0.1
    assert out["value"][30] is None and "no image" in out["error"][30]


def test_training_on_features_built_for_another_task_is_refused_with_the_fix(spark, tasks):
    from lakeloop.training.dataset import materialize_training_set

    profile, _, _, _ = tasks["multilabel"]  # silver.features was last built for the regression model
    with pytest.raises(SourceError, match=r"was built for train.task = 'regression' with target 'level', not "
                                          r"'multilabel' with 'label'; run build_features again"):
        materialize_training_set(spark, profile)


def test_the_evaluate_job_says_it_is_for_classifiers(spark, tasks):
    from lakeloop.evaluation import evaluate_model

    profile, _, _, _ = tasks["regression"]
    with pytest.raises(ConfigError, match=r"brightness:1 is a regression model: its validation and test figures"):
        evaluate_model(spark, profile)


def test_a_target_that_cannot_serve_the_task_is_refused_when_the_profile_loads():
    with pytest.raises(ConfigError, match=r"features.label_delimiter is empty"):
        make_profile("file:/tmp/nowhere", ("train.task", "multilabel"), ("features.label_delimiter", ""))
    with pytest.raises(ConfigError, match=r"features.target = 'level' but train.task = classification"):
        make_profile("file:/tmp/nowhere", ("features.target", "level"))
    with pytest.raises(ConfigError, match=r"features.target = 'weight' is neither label nor a column that "
                                          r"features.join_columns"):
        make_profile("file:/tmp/nowhere", ("train.task", "regression"), ("features.target", "weight"))
    with pytest.raises(ConfigError, match=r"also in features.table_inputs"):
        make_profile("file:/tmp/nowhere", ("train.task", "regression"), ("features.target", "w"),
                     ("features.join_table", "bronze.t"), ("features.join_columns", ["w"]),
                     ("features.table_inputs", {"numeric": ["w"]}))


def test_the_training_curves_plot_the_tasks_own_validation_figure(tasks):
    from lakeloop import figures

    for name, title in (("multilabel", "validation micro-F1"), ("regression", "validation RMSE")):
        profile, _, version, _ = tasks[name]
        history = Registry.for_profile(profile).read_metadata(version)["metrics"]["per_epoch"]
        fig = figures.training_curves(history)
        assert fig.axes[1].get_title() == title
        assert figures.png(fig).startswith(b"\x89PNG")

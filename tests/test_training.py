"""Training through TorchDistributor on local[2]: two gloo processes, disjoint shards,
checkpoints, kill-and-resume, and the model registry."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.training.driver import check_capacity, code_version, train
from support.lakes import copy_lake, layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(spark, digits_lake, tmp_path_factory):
    """One clean run of the default demo training (LeNet-5, 30 epochs, 2 processes)."""
    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("trained") / "lake")
    report = RunReport("train", "clean-run")
    version = train(spark, profile, report=report)
    return profile, version, report


def test_two_processes_train_on_disjoint_shards_covering_the_set(trained):
    profile, version, report = trained
    audit = report.details["shard_audit"]
    assert len(audit["rows_per_rank"]) == 2
    assert audit["overlap"] == 0
    assert audit["covered"] == audit["train_rows"] == report.counts["train_rows"]
    assert report.counts["epochs_run"] == 30 and report.counts["resumed_from_epoch"] == 0


def test_lenet_reaches_98_percent_on_the_demo_digits(trained):
    _, _, report = trained
    assert report.details["test_accuracy"] >= 0.98, report.details


def test_registry_metadata_traces_the_model_to_its_data_settings_and_code(trained, spark):
    from datetime import datetime, timedelta, timezone

    profile, version, report = trained
    registry = Registry.for_profile(profile)
    metadata = registry.read_metadata(version)
    assert version.version == 1
    assert metadata["classes"] == [str(i) for i in range(10)]
    assert metadata["preprocess"] == {"channels": 1, "height": 32, "width": 32, "resize": "pad",
                                      "mean": [0.5], "std": [0.5]}
    assert metadata["features"]["table"] == layout(profile).features
    assert metadata["features"]["delta_version"] == delta.table_version(spark, layout(profile).features)
    assert metadata["features"]["training_set"] == report.details["training_set"]["root"]
    assert [e["epoch"] for e in metadata["metrics"]["per_epoch"]] == list(range(1, 31))
    assert metadata["metrics"]["test_accuracy"] == report.details["test_accuracy"]
    assert metadata["training"]["run_id"] == report.run_id and metadata["training"]["epochs"] == 30
    # Trained in this process from the checkout: the installed distribution's version.
    assert metadata["code_version"] == code_version() == "lakeloop-0.1.0"
    trained_at = datetime.fromisoformat(metadata["trained_at"])
    assert timedelta(0) <= datetime.now(timezone.utc) - trained_at < timedelta(hours=2)
    assert registry.resolve("digits_lenet", "latest") == version


def test_loading_by_name_latest_and_torchscript_gives_identical_outputs(trained):
    import torch

    from lakeloop.models import load_model

    profile, version, _ = trained
    registry = Registry.for_profile(profile)
    inputs = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    by_latest, _ = load_model(registry, registry.resolve("digits_lenet"))
    by_number, _ = load_model(registry, registry.resolve("digits_lenet", 1))
    scripted = torch.jit.load(io.BytesIO(registry.read_torchscript(version)))
    with torch.inference_mode():
        expected = by_latest(inputs)
        assert torch.equal(by_number(inputs), expected)
        assert torch.allclose(scripted(inputs), expected, atol=1e-6)


def test_rerun_publishes_nothing(trained, spark):
    profile, version, _ = trained
    report = RunReport("train", "rerun")
    again = train(spark, profile, report=report)
    assert again == version
    assert report.counts["published"] == 0
    assert Registry.for_profile(profile).list_versions("digits_lenet") == [1]


def test_too_many_processes_fail_before_launch(spark, base_profile):
    from dataclasses import replace

    cfg = replace(base_profile.train, num_processes=3)
    with pytest.raises(ConfigError, match=r"num_processes = 3 but the cluster \(local\[2\]\) has 2 task slot"):
        check_capacity(spark, cfg)
    with pytest.raises(ConfigError, match="no GPU scheduling"):
        check_capacity(spark, replace(base_profile.train, use_gpu=True))


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_and_ends_as_the_clean_run(trained, spark, digits_lake, tmp_path):
    """A real kill: the train job under spark-submit is SIGKILLed after its first checkpoint;
    the rerun resumes there, and publishes the same weights as the uninterrupted run."""
    clean_profile, clean_version, _ = trained
    profile = copy_lake(digits_lake, tmp_path / "lake")
    lake = Path(profile.lake_root.removeprefix("file:"))
    cmd = [str(REPO / "spark-submit.sh"), "--profile", "test",
           "--set", f"lake_root=file:{lake}", "--set", "features.join_table=null",
           "--set", f"features.training_set_files={profile.features.training_set_files}",
           "--set", f"ingest_images.source={profile.ingest_images.source}", "train"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "lib")})
    checkpoints = lake / "_checkpoints" / "digits_lenet"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if list(checkpoints.glob("*/epoch-0001.pt")):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(checkpoints.glob("*/epoch-0001.pt")), "the job never wrote its second checkpoint"
    assert Registry.for_profile(profile).list_versions("digits_lenet") == []

    report = RunReport("train", "resumed")
    version = train(spark, profile, report=report)

    assert report.counts["resumed_from_epoch"] >= 2
    assert Registry.for_profile(profile).list_versions("digits_lenet") == [1]
    assert not any(checkpoints.glob("*/epoch-*.pt"))  # cleaned up after publishing
    resumed = Registry.for_profile(profile).read_metadata(version)["metrics"]
    clean = Registry.for_profile(clean_profile).read_metadata(clean_version)["metrics"]
    assert len(resumed["per_epoch"]) == 30
    assert resumed["test_accuracy"] == clean["test_accuracy"]
    assert [e["train_loss"] for e in resumed["per_epoch"]] == pytest.approx(
        [e["train_loss"] for e in clean["per_epoch"]], rel=1e-4)

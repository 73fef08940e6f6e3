"""Training through TorchDistributor on local[2]: two gloo processes, disjoint shards,
checkpoints, kill-and-resume, and the model registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lakeloop.errors import ConfigError
from lakeloop.io import delta
from lakeloop.registry import Registry
from lakeloop.report import RunReport
from lakeloop.training.driver import check_capacity, code_version, train
from support.kills import kill_tree
from support.lakes import copy_lake, layout
from support.pipeline import SPLITS

REPO = Path(__file__).resolve().parents[1]
# Tests marked stacks train end to end on each stack (CI runs them on spark40 too); the kill-and-
# resume test runs on the current stack only.


@pytest.fixture(scope="module")
def trained(spark, digits_lake, tmp_path_factory):
    """One clean run of the default demo training (LeNet-5, 30 epochs, 2 processes)."""
    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("trained") / "lake")
    report = RunReport("train", "clean-run")
    version = train(spark, profile, report=report)
    return profile, version, report


@pytest.mark.stacks
def test_two_processes_train_on_disjoint_shards_covering_the_set(trained):
    profile, version, report = trained
    audit = report.details["shard_audit"]
    assert len(audit["rows_per_rank"]) == 2
    assert audit["overlap"] == 0
    assert audit["covered"] == audit["train_rows"] == report.counts["train_rows"]
    assert report.counts["epochs_run"] == 30 and report.counts["resumed_from_epoch"] == 0


@pytest.mark.stacks
def test_lenet_reaches_98_percent_on_the_demo_digits(trained):
    _, _, report = trained
    assert report.details["test_accuracy"] >= 0.98, report.details


@pytest.mark.stacks
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


@pytest.mark.stacks
def test_loading_by_name_and_by_latest_rebuilds_the_same_model_from_its_factory(trained):
    import torch

    from lakeloop.models import load_model

    profile, version, _ = trained
    registry = Registry.for_profile(profile)
    record = registry.read_metadata(version)["model"]
    assert record["factory"] == "lakeloop.models.builtin:lenet5" and record["name"] == "lenet5"
    assert record["spec"]["num_outputs"] == 10 and record["spec"]["input_shape"] == [1, 32, 32]
    assert registry.read_torchscript(version) is None  # state dict + factory only: torch.jit is deprecated
    inputs = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    by_latest, _ = load_model(registry, registry.resolve("digits_lenet"))
    by_number, _ = load_model(registry, registry.resolve("digits_lenet", 1))
    with torch.inference_mode():
        assert torch.equal(by_number(inputs), by_latest(inputs))


@pytest.mark.stacks
def test_the_best_validation_epoch_is_published_with_accuracy_loss_and_macro_f1(trained):
    profile, version, report = trained
    metrics = Registry.for_profile(profile).read_metadata(version)["metrics"]
    best = max(metrics["per_epoch"], key=lambda e: e["val_accuracy"])  # the first of equals wins
    assert metrics["published_epoch"] == best["epoch"] == report.details["published_epoch"]
    assert metrics["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-5)
    assert all("val_loss" in e and 0 <= e["val_macro_f1"] <= 1 for e in metrics["per_epoch"])
    assert metrics["test"]["accuracy"] == metrics["test_accuracy"] and 0.9 < metrics["test"]["macro_f1"] <= 1


@pytest.fixture(scope="module")
def fine_tuned(trained, spark):
    """A child of digits_lenet:1, trained with a learning rate too small to change a prediction,
    early stopping after one epoch without progress, and balanced class weights."""
    from dataclasses import replace

    profile, parent, _ = trained
    child = replace(profile, train=replace(profile.train, model_name="digits_child", init_from="digits_lenet:1",
                                           learning_rate=1e-9, epochs=5, early_stopping_patience=1,
                                           class_weights="balanced"))
    report = RunReport("train", "fine-tune")
    version = train(spark, child, report=report)
    return child, parent, version, report


@pytest.mark.stacks
def test_fine_tuning_starts_from_the_parent_weights_and_records_the_parent(fine_tuned):
    profile, parent, version, report = fine_tuned
    registry = Registry.for_profile(profile)
    metadata, parent_metadata = registry.read_metadata(version), registry.read_metadata(parent)
    lineage = metadata["lineage"]["init_from"]
    assert (lineage["model"], lineage["version"], lineage["uri"]) == ("digits_lenet", 1, parent.uri)
    assert lineage["fit"]["copied"] == 10 and lineage["fit"]["replaced"] == []
    # Before its first step the child scores the validation split exactly as its parent did.
    assert metadata["metrics"]["initial_val"]["accuracy"] == parent_metadata["metrics"]["val_accuracy"]
    assert report.details["initial_val_accuracy"] == parent_metadata["metrics"]["val_accuracy"]


@pytest.mark.stacks
def test_training_stops_early_when_validation_stops_improving(fine_tuned):
    profile, _, version, report = fine_tuned
    metrics = Registry.for_profile(profile).read_metadata(version)["metrics"]
    assert metrics["stopped_early"] is True and metrics["epochs_trained"] == 2 and metrics["published_epoch"] == 1
    assert len(metrics["per_epoch"]) == 2 and report.counts["epochs_run"] == 2
    assert any("stopped early after epoch 2 of 5" in w for w in report.warnings)


@pytest.mark.stacks
def test_balanced_class_weights_are_recorded_with_the_model(fine_tuned):
    profile, _, version, _ = fine_tuned
    weights = Registry.for_profile(profile).read_metadata(version)["training"]["class_weights"]
    assert len(weights) == 10 and all(0.5 < w < 2.0 for w in weights)  # the digits are nearly balanced


@pytest.mark.stacks
def test_a_missing_factory_or_parent_fails_before_any_process_starts(trained, spark):
    from dataclasses import replace

    from lakeloop.errors import ModelFactoryError, ModelNotFound

    profile, _, _ = trained
    missing = replace(profile, train=replace(profile.train, model_name="nowhere", model="acme_nowhere:build"))
    with pytest.raises(ModelFactoryError, match=r"'acme_nowhere:build'.*cannot be imported.*--py-files"):
        train(spark, missing, report=RunReport("train", "missing-factory"))
    orphan = replace(profile, train=replace(profile.train, model_name="orphan", init_from="digits_lenet:7"))
    with pytest.raises(ModelNotFound, match="version 7"):
        train(spark, orphan, report=RunReport("train", "missing-parent"))
    from lakeloop.errors import SourceError

    no_file = replace(profile, train=replace(profile.train, model_name="no_file", init_from="file:/nowhere/w.pt"))
    with pytest.raises(SourceError, match=r"train.init_from file:/nowhere/w.pt: no such file"):
        train(spark, no_file, report=RunReport("train", "missing-weights"))
    assert not {"nowhere", "orphan", "no_file"} & set(Registry.for_profile(profile).list_models())  # nothing published


@pytest.mark.stacks
def test_rerun_publishes_nothing(trained, spark):
    profile, version, _ = trained
    report = RunReport("train", "rerun")
    again = train(spark, profile, report=report)
    assert again == version
    assert report.counts["published"] == 0
    assert Registry.for_profile(profile).list_versions("digits_lenet") == [1]


@pytest.mark.stacks
def test_training_on_the_driver_as_the_local_profile_does_publishes_the_model_two_spark_tasks_publish(
        trained, spark, digits_lake, tmp_path):
    """train.local_mode (conf/local.yaml): torchrun starts from the driver instead of from two barrier
    tasks; the ranks, their shards and so the weights are the same."""
    from lakeloop.config import load_profile

    assert load_profile("local").train.local_mode and not load_profile("yarn").train.local_mode
    report = _assert_trains_the_clean_runs_model(trained, spark, digits_lake, tmp_path, ("train.local_mode", True))
    assert "slots" not in report.details["capacity"]  # no barrier stage to find task slots for


def _assert_trains_the_clean_runs_model(trained, spark, digits_lake, tmp_path, setting) -> RunReport:
    """Trains a copy of the demo lake with one setting changed and checks it is the clean run's model:
    the same shards, test accuracy and losses epoch by epoch. Returns the run's report."""
    clean_profile, clean_version, clean_report = trained
    profile = copy_lake(digits_lake, tmp_path / "lake", setting)
    report = RunReport("train", f"with-{setting[0]}")
    version = train(spark, profile, report=report)

    changed = Registry.for_profile(profile).read_metadata(version)["metrics"]
    clean = Registry.for_profile(clean_profile).read_metadata(clean_version)["metrics"]
    assert report.details["shard_audit"] == clean_report.details["shard_audit"]
    assert changed["test_accuracy"] == clean["test_accuracy"]
    assert [e["train_loss"] for e in changed["per_epoch"]] == pytest.approx(
        [e["train_loss"] for e in clean["per_epoch"]], rel=1e-4)
    return report


@pytest.mark.stacks
def test_the_petastorm_reader_trains_the_same_model_as_the_arrow_reader(trained, spark, digits_lake, tmp_path):
    """On the spark40 stack (where Petastorm runs), train.reader=petastorm executes the same plan:
    the same batches, so the same losses epoch by epoch and the same test accuracy."""
    pytest.importorskip("petastorm", reason="Petastorm runs on the spark40 stack only (CI runs this test there)")
    pytest.importorskip("pyarrow.filesystem", reason="Petastorm needs pyarrow < 16 (the spark40 stack)")
    _assert_trains_the_clean_runs_model(trained, spark, digits_lake, tmp_path, ("train.reader", "petastorm"))


@pytest.mark.stacks
@pytest.mark.parametrize("seed", [43, 2**63 - 1])
def test_a_seed_above_42_trains_and_publishes_in_both_processes(spark, digits_lake, tmp_path, seed):
    """train.seed 43 and up once failed in every rank after the training set was written (the
    reader's derived seed left numpy's range); two epochs are enough to go through every seed use."""
    profile = copy_lake(digits_lake, tmp_path / "lake", ("train.seed", seed), ("train.epochs", 2))
    report = RunReport("train", f"seed-{seed}")
    version = train(spark, profile, report=report)
    metadata = Registry.for_profile(profile).read_metadata(version)
    assert report.counts["epochs_run"] == 2
    assert [e["epoch"] for e in metadata["metrics"]["per_epoch"]] == [1, 2]
    assert metadata["training"]["seed"] == seed


@pytest.mark.stacks
def test_too_many_processes_fail_before_launch(spark, base_profile):
    from dataclasses import replace

    cfg = replace(base_profile.train, num_processes=3)
    with pytest.raises(ConfigError, match=r"num_processes = 3 but the cluster \(local\[2,2\]\) has 2 task slot"):
        check_capacity(spark, cfg)
    with pytest.raises(ConfigError, match="no GPU scheduling"):
        check_capacity(spark, replace(base_profile.train, use_gpu=True))
    with pytest.raises(ConfigError, match=r"Spark gave the driver no GPUs: set spark.driver.resource.gpu.amount"):
        check_capacity(spark, replace(base_profile.train, use_gpu=True, local_mode=True))


GPU = "spark.{}.resource.gpu.amount".format
CLUSTER = "spark://10.0.0.1:7077"


@pytest.mark.fault
@pytest.mark.parametrize(("processes", "local_mode", "master", "settings", "registered", "message"), [
    (4, True, "local[8]", {GPU("driver"): "2"}, 0,
     r"train\.num_processes = 4 but the driver has 2 GPU\(s\) \(spark\.driver\.resource\.gpu\.amount\), and "
     r"train\.local_mode runs one process per driver GPU: lower train\.num_processes to 2"),
    (4, False, CLUSTER, {GPU("executor"): "1", GPU("task"): "1", "spark.executor.instances": "2"}, 0,
     r"train\.num_processes = 4 needs 4 GPU task\(s\) of 1 GPU\(s\) \(spark\.task\.resource\.gpu\.amount\), but "
     r"the cluster has 2 GPU slot\(s\): 2 executor\(s\) \(spark\.executor\.instances\) x 1 GPU\(s\) each "
     r"\(spark\.executor\.resource\.gpu\.amount\) / 1 per task\..*lower train\.num_processes to 2"),
    (8, False, CLUSTER, {GPU("executor"): "2", GPU("task"): "1"}, 3,
     r"needs 8 GPU task\(s\) .* 6 GPU slot\(s\): 3 executor\(s\) \(registered with the driver\) x 2 GPU\(s\)"),
    (6, False, CLUSTER, {GPU("executor"): "2", GPU("task"): "2", "spark.executor.instances": "2"}, 2,
     r"needs 3 GPU task\(s\) of 2 GPU\(s\) .* 2 GPU slot\(s\).*lower train\.num_processes to 4"),
    (2, False, "yarn", {GPU("executor"): "1", GPU("task"): "1", "spark.dynamicAllocation.enabled": "true",
                        "spark.dynamicAllocation.maxExecutors": "1"}, 0,
     r"1 executor\(s\) \(spark\.dynamicAllocation\.maxExecutors\)"),
    (3, False, "local[4]", {GPU("driver"): "2", GPU("executor"): "2", GPU("task"): "1"}, 0,
     r"2 GPU slot\(s\): 1 executor\(s\) \(the driver of local\[4\]\) x 2 GPU\(s\) each "
     r"\(spark\.driver\.resource\.gpu\.amount\)"),
])
def test_use_gpu_with_fewer_gpu_slots_than_processes_is_refused_before_launch_with_the_numbers(
        processes, local_mode, master, settings, registered, message, base_profile, reliability):
    """The barrier stage once waited minutes for GPUs that never came; TorchDistributor on the driver
    quietly ran fewer processes than the shards were planned for."""
    from dataclasses import replace

    from lakeloop.training.driver import gpu_capacity

    cfg = replace(base_profile.train, use_gpu=True, local_mode=local_mode, num_processes=processes)
    with pytest.raises(ConfigError, match=message) as error:
        gpu_capacity(cfg, settings, master, registered)
    reliability.bad_input("train (use_gpu)", f"num_processes={processes} on {master} with "
                          f"{', '.join(f'{k}={v}' for k, v in settings.items())}, {registered} registered",
                          f"ConfigError: {error.value}")


@pytest.mark.parametrize(("processes", "local_mode", "master", "settings", "registered", "slots"), [
    (2, True, "local[8]", {GPU("driver"): "2"}, 0, 2),
    (4, False, CLUSTER, {GPU("executor"): "2", GPU("task"): "1", "spark.executor.instances": "2"}, 1, 4),
    (4, False, CLUSTER, {GPU("executor"): "1", GPU("task"): "1"}, 4, 4),
    (8, False, "yarn", {GPU("executor"): "1", GPU("task"): "1", "spark.dynamicAllocation.enabled": "true"}, 0, None),
    (8, False, CLUSTER, {GPU("executor"): "1", GPU("task"): "1"}, 0, None),
])
def test_use_gpu_with_a_gpu_for_every_process_or_executors_still_to_come_launches(
        processes, local_mode, master, settings, registered, slots, base_profile):
    from dataclasses import replace

    from lakeloop.training.driver import gpu_capacity

    cfg = replace(base_profile.train, use_gpu=True, local_mode=local_mode, num_processes=processes)
    assert gpu_capacity(cfg, settings, master, registered).get("gpu_slots") == slots


def test_the_gpu_check_counts_the_executors_the_cluster_has_registered(spark, base_profile):
    from dataclasses import replace

    from lakeloop.training.driver import registered_executors

    assert registered_executors(spark) == 0  # local[2,2]: the driver runs the tasks
    with pytest.raises(ConfigError, match=r"no GPU scheduling: set spark\.executor\.resource\.gpu\.amount"):
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
        kill_tree(proc.pid)
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


@pytest.mark.stacks
def test_a_failed_training_process_is_named_by_its_own_error_not_by_torchruns_wrapper():
    from lakeloop.training.driver import process_error

    # The shape of TorchDistributor's failure: Spark's and torchrun's wrappers around a rank's traceback.
    text = (
        "An error occurred while calling o412.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Could not recover from a failed "
        "barrier ResultStage.\norg.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        "RuntimeError: Command ['python', '-m', 'torch.distributed.run', '--nnodes=2'] failed with return code 1. "
        "The last 100 lines of the task output are included below: Traceback (most recent call last):\n"
        '  File "/lib/lakeloop/training/rank.py", line 151, in _loss\n'
        "    return hook(plan.factory_spec())\n"
        "ValueError: my_models.make_loss: no loss for regression\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    assert process_error(text) == "ValueError: my_models.make_loss: no loss for regression"
    assert process_error("Killed") == "Killed"


@pytest.mark.parametrize("then, code", [("pass", 0), ("raise RuntimeError('the output file cannot be written')", 1)])
def test_a_launched_rank_that_succeeded_exits_with_the_launchers_outcome_without_native_teardown(then, code):
    """What TorchDistributor's launcher script does after the function returns decides the exit code:
    a rank whose work succeeded is not turned into a success when the launcher fails afterwards, nor
    a failure by C++ teardown (exit_after_success is registered only after train_rank succeeded)."""
    script = ("import atexit, sys\n"
              "from lakeloop.training.rank import exit_after_success\n"
              "atexit.register(lambda: print('an exit handler registered before it ran', flush=True))\n"
              "atexit.register(exit_after_success)\n"
              f"{then}\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO / 'lib'}"})
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "registered before it ran" not in proc.stdout  # it ended the process: nothing native tears down


@pytest.mark.fault
def test_a_plan_only_run_keeps_the_profiles_storage_credentials_out_of_the_plan_and_the_run_page(
        spark, digits_lake, tmp_path, reliability):
    """train --plan-only once wrote spark.hadoop.fs.s3a.* keys verbatim into plan.json, a file people copy."""
    import json
    import runpy

    secrets = {"spark.hadoop.fs.s3a.access.key": "AKIAPLANONLYEXAMPLE",
               "spark.hadoop.fs.s3a.secret.key": "wJalrXUtnFEMI-plan-only-secret",
               "spark.hadoop.fs.s3a.session.token": "FwoGZXIvYXdzEPlanOnlyToken",
               "spark.hadoop.fs.s3a.bucket.raw.secret.key": "per-bucket-plan-only-secret"}
    profile = copy_lake(digits_lake, tmp_path / "lake")
    plan_file = tmp_path / "plan.json"
    main = runpy.run_path(str(REPO / "jobs" / "train.py"))["main"]
    try:
        code = main(["--profile", "test", "--set", f"lake_root={profile.lake_root}",
                     "--set", f"ingest_images.source={profile.ingest_images.source}", "--set", "features.join_table=null",
                     "--set", "features.training_set_files=8", "--plan-only", str(plan_file),
                     "--conf", "spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9",
                     *[arg for key, value in secrets.items() for arg in ("--conf", f"{key}={value}")]])
    finally:  # the job ran in this test session's SparkSession
        for key in [*secrets, "spark.hadoop.fs.s3a.endpoint"]:
            spark.conf.unset(key)

    reports = Path(profile.lake_root.removeprefix("file:")) / "_reports" / "train"
    written = {"plan.json": plan_file.read_text(), "report": (reports / "latest.json").read_text(),
               "run page": (reports / "latest.html").read_text()}
    assert code == 0
    assert {name: [s for s in secrets.values() if s in text] for name, text in written.items()} == \
        {name: [] for name in written}
    plan = json.loads(written["plan.json"])
    # What reaches the store stays; the credentials are named in the run's warning, never shown.
    assert plan["hadoop_conf"]["fs.s3a.endpoint"] == "http://127.0.0.1:9"
    assert not [k for k in plan["hadoop_conf"] if k.endswith(("key", "token"))]
    report = json.loads(written["report"])
    assert any("fs.s3a.secret.key" in w and "AWS_SECRET_ACCESS_KEY" in w for w in report["warnings"])
    assert sum(plan["shards"]["rows_per_rank"]) == SPLITS["train"]  # the plan itself is whole
    reliability.bad_input("train --plan-only", "S3 access key, secret key, session token in spark.conf",
                          "exit 0; plan.json, report and run page hold none of them; the warning names the keys")


@pytest.mark.slow
def test_a_model_far_larger_than_spark_driver_max_result_size_trains_publishes_and_loads(digits_lake, tmp_path):
    """Rank 0 once sent the weights (and every training id) back through TorchDistributor's result,
    which Spark caps at spark.driver.maxResultSize: a big model failed after its last epoch. Now rank 0
    writes them to the registry's staging area and returns a manifest: here the cap is Spark's
    smallest, 1 MiB, and the model's weights are 8 MiB."""
    from lakeloop.models.weights import load_model
    from support.pipeline import run_job

    profile = copy_lake(digits_lake, tmp_path / "lake")
    sets = [f"lake_root={profile.lake_root}", "features.join_table=null",
            f"features.training_set_files={profile.features.training_set_files}", "train.model=mlp",
            'train.model_options={"hidden": [2048]}', "train.epochs=1"]
    run_job("test", "train", sets=sets, confs=["spark.driver.maxResultSize=1m"], log=tmp_path / "train.log")

    registry = Registry.for_profile(profile)
    version = registry.resolve(profile.train.model_name)
    weights = registry.read_weights(version)
    assert len(weights) > 8 * 2**20, "the model should be far above the 1 MiB cap"
    model, metadata = load_model(registry, version)
    assert sum(p.numel() for p in model.parameters()) * 4 <= len(weights)
    assert metadata["training"]["world_size"] == 2 and metadata["metrics"]["val_accuracy"] > 0.5
    audit = json.loads((Path(profile.lake_root.removeprefix("file:")) / "_reports" / "train" / "latest.json")
                       .read_text())["details"]["shard_audit"]
    assert audit["digests_match"] and audit["covered"] == audit["train_rows"] == sum(audit["rows_per_rank"])
    assert registry.files.list_dir(f"{registry.model_uri(version.name)}/_staging") == []

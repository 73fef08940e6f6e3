"""The pipeline submitted to a real Spark standalone cluster (master + 2 workers of 1 core,
from pyspark's own jars: lakeloop_dev.cluster) through ./spark-submit.sh --profile cluster-test:
ingest_images -> build_features -> train (TorchDistributor, 2 barrier tasks on the 2
executors, local_mode=False) -> score, against a local file: lake (one machine, so every
process sees it). Executors are separate JVMs with their own Python workers, and that Python
does not see this checkout: lakeloop reaches them only as spark-submit ships it.

One cluster per test session: reused if one is already up (./dev/services.sh start cluster),
otherwise started here and stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from support.pipeline import (COMPARED_SETTINGS, DEMO_BROKEN_IMAGES, DEMO_DIGITS, DEMO_DUPLICATES, SPLITS,
                              barrier_task_executors, event_log, service_for_session,
                              lake_counts, local_reference, run_job, table_rows)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PROFILE = "cluster-test"
JOBS = ("ingest_images", "build_features", "train", "score")


@pytest.fixture(scope="session")
def standalone_cluster():
    from lakeloop_dev.cluster import default_cluster

    yield from service_for_session(default_cluster())


def _apps(cluster) -> set[str]:
    return {p.name for p in cluster.root.glob("worker-*/app-*")}


@pytest.fixture(scope="module")
def cluster_pipeline(standalone_cluster, tmp_path_factory):
    """Every job once on the cluster; returns reports, each job's application id and event log."""
    from lakeloop_dev.demo_data import write_demo_raw_zone

    root = tmp_path_factory.mktemp("cluster")
    write_demo_raw_zone(root / "raw")
    events = root / "events"
    events.mkdir()
    lake = f"file:{root}/lake"
    sets = [f"lake_root={lake}", f"ingest_images.source=file:{root}/raw/images",
            "features.join_table=null",  # ingest_tables runs in the S3 test; here: the image path
            *COMPARED_SETTINGS]
    # Plain, single-file event logs: they show which executor ran which task.
    confs = ["spark.eventLog.enabled=true", f"spark.eventLog.dir=file:{events}", "spark.eventLog.compress=false",
             "spark.eventLog.rolling.enabled=false"]
    apps, timings = {}, {}
    for job in JOBS:
        before = _apps(standalone_cluster)
        started = time.perf_counter()
        run_job(PROFILE, job, sets=sets, confs=confs, log=root / f"{job}.log", env={"SPARK_LOCAL_IP": "127.0.0.1"})
        timings[job] = round(time.perf_counter() - started, 1)
        new = _apps(standalone_cluster) - before
        assert len(new) == 1, f"{job}: expected one new application on the workers, found {sorted(new)}"
        apps[job] = new.pop()
    reports = {job: json.loads(Path(f"{root}/lake/_reports/{job}/latest.json").read_text()) for job in JOBS}
    print(f"\ncluster pipeline seconds per job: {timings}")
    yield {"lake": lake, "reports": reports, "apps": apps, "events": events, "timings": timings, "sets": sets,
           "confs": confs}
    # Each executor's folder holds copies of the shipped jars and zip: drop this run's.
    for app in apps.values():
        for folder in standalone_cluster.root.glob(f"worker-*/{app}"):
            shutil.rmtree(folder, ignore_errors=True)


def _event_log(events: Path, app_id: str) -> list[dict]:
    matches = [p for p in events.iterdir() if p.name == app_id]
    assert matches, f"no event log for {app_id} in {events}: {sorted(p.name for p in events.iterdir())}"
    return event_log(matches[0])


def test_every_job_ran_on_two_executors_of_two_workers(cluster_pipeline, standalone_cluster):
    for job, app in cluster_pipeline["apps"].items():
        executors = sorted(p.relative_to(standalone_cluster.root).parts[0]
                           for p in standalone_cluster.root.glob(f"worker-*/{app}/*/stderr"))
        assert executors == ["worker-1", "worker-2"], (job, app, executors)
        # The library arrived the way spark-submit ships it, not from the checkout.
        assert all((p / "lakeloop.zip").is_file() for p in standalone_cluster.root.glob(f"worker-*/{app}/*"))


def test_ingest_and_features_on_the_cluster_match_the_local_run(cluster_pipeline, spark, digits_lake,
                                                                  tmp_path_factory):
    images = cluster_pipeline["reports"]["ingest_images"]["counts"]
    assert (images["ingested"], images["duplicates"], images["quarantined"]) == \
        (DEMO_DIGITS, DEMO_DUPLICATES, DEMO_BROKEN_IMAGES)
    features = cluster_pipeline["reports"]["build_features"]["counts"]
    assert {k: features[f"split_{k}"] for k in SPLITS} == SPLITS
    local = local_reference(spark, digits_lake, tmp_path_factory)
    counts = lake_counts(cluster_pipeline["lake"])
    for table in ("bronze/images", "quarantine/images", "_ledger/images", "silver/features"):
        assert counts[table] == local["counts"][table], (table, counts, local["counts"])
    ids = table_rows(f"{cluster_pipeline['lake']}/silver/features", None, ["image_id", "split"]).to_pylist()
    local_ids = table_rows(f"{local['lake']}/silver/features", None, ["image_id", "split"]).to_pylist()
    assert sorted(map(str, ids)) == sorted(map(str, local_ids))  # same rows, same deterministic splits


def test_torchdistributor_trains_across_the_two_executors(cluster_pipeline, spark, digits_lake, tmp_path_factory):
    report = cluster_pipeline["reports"]["train"]
    assert report["status"] == "succeeded" and report["counts"]["published"] == 1
    assert report["details"]["capacity"]["master"] == "spark://127.0.0.1:7077"
    audit = report["details"]["shard_audit"]
    assert len(audit["rows_per_rank"]) == 2 and audit["overlap"] == 0 and audit["covered"] == SPLITS["train"]
    # The barrier stage TorchDistributor ran: its two tasks, one on each executor.
    task_executors = barrier_task_executors(_event_log(cluster_pipeline["events"], cluster_pipeline["apps"]["train"]))
    assert len(task_executors) == 2 and len(set(task_executors)) == 2, task_executors
    # Same data, seeds and world size as the local run: the same model.
    local = local_reference(spark, digits_lake, tmp_path_factory)
    from lakeloop.registry import Registry

    registry = Registry(f"{cluster_pipeline['lake']}/models")
    version = registry.resolve("digits_lenet", "latest")
    losses = [e["train_loss"] for e in registry.read_metadata(version)["metrics"]["per_epoch"]]
    assert losses == pytest.approx(local["losses"], rel=1e-4), (losses, local["losses"])
    assert report["details"]["test_accuracy"] == pytest.approx(local["test_accuracy"], abs=1e-9)
    assert report["details"]["val_accuracy"] == pytest.approx(local["val_accuracy"], abs=1e-9)


def test_scoring_on_the_cluster_like_the_local_run(cluster_pipeline, spark, digits_lake, tmp_path_factory):
    report = cluster_pipeline["reports"]["score"]
    assert report["counts"]["scored"] == DEMO_DIGITS and report["counts"]["quarantined"] == 0
    assert report["counts"]["python_workers"] == 2  # one per executor, the model loaded once in each
    rows = table_rows(f"{cluster_pipeline['lake']}/gold/predictions", None, ["image_id"])
    assert rows.num_rows == DEMO_DIGITS
    local = local_reference(spark, digits_lake, tmp_path_factory)
    assert report["metrics"]["accuracy_this_run"] == pytest.approx(local["score_accuracy"], abs=1e-9)


# A user's model, outside lakeloop: a module the test writes to a folder no Python here has on its path.
USER_MODELS = """
from torch import nn


def tiny_cnn(spec):
    width = int(spec.options.get("width", 8))
    return nn.Sequential(nn.Conv2d(spec.channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(width * 16, spec.num_outputs))


def batch_metrics(outputs, targets):
    top2 = outputs.topk(2, dim=1).indices
    return {"top2_accuracy": float((top2 == targets[:, None]).any(dim=1).float().mean())}
"""


def test_a_users_own_model_module_shipped_with_py_files_trains_and_scores_on_the_cluster(
        cluster_pipeline, standalone_cluster, tmp_path):
    from lakeloop.registry import Registry

    module = tmp_path / "user_code" / "acme_vision.py"
    module.parent.mkdir()
    module.write_text(USER_MODELS)
    lake_dir = tmp_path / "lake"
    shutil.copytree(cluster_pipeline["lake"].removeprefix("file:"), lake_dir)
    sets = [*(s for s in cluster_pipeline["sets"] if not s.startswith("lake_root=")), f"lake_root=file:{lake_dir}",
            "train.model=acme_vision:tiny_cnn", "train.model_name=acme_tiny", "train.model_options={width: 12}",
            "train.epochs=2", "score.model=acme_tiny"]
    before = _apps(standalone_cluster)
    try:
        for job in ("train", "score"):
            run_job(PROFILE, job, sets=sets, log=tmp_path / f"{job}.log", env={"SPARK_LOCAL_IP": "127.0.0.1"},
                    py_files=[str(module)])
        apps = sorted(_apps(standalone_cluster) - before)
        assert len(apps) == 2, apps
        # The module reached each executor the way spark-submit ships it (packed into a zip).
        for app in apps:
            folders = list(standalone_cluster.root.glob(f"worker-*/{app}/*"))
            assert folders and all((p / "lakeloop-user-modules.zip").is_file() for p in folders)
        registry = Registry(f"file:{lake_dir}/models")
        metadata = registry.read_metadata(registry.resolve("acme_tiny"))
        assert metadata["model"]["factory"] == "acme_vision:tiny_cnn"
        assert metadata["model"]["hooks"] == ["batch_metrics"] and metadata["model"]["spec"]["options"] == {"width": 12}
        assert all(0 <= e["val_top2_accuracy"] <= 1 for e in metadata["metrics"]["per_epoch"])
        score = json.loads((lake_dir / "_reports" / "score" / "latest.json").read_text())
        assert score["status"] == "succeeded" and score["counts"]["scored"] == DEMO_DIGITS
        assert score["counts"]["quarantined"] == 0
    finally:
        for app in _apps(standalone_cluster) - before:
            for folder in standalone_cluster.root.glob(f"worker-*/{app}"):
                shutil.rmtree(folder, ignore_errors=True)

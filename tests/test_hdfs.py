"""The whole pipeline on hdfs:// against a real HDFS on loopback (a NameNode and a DataNode
from Hadoop's minicluster, lakeloop_dev.hadoop), each job a ./spark-submit.sh subprocess, run
once: ingest_images -> ingest_tables -> build_features under conf/hdfs-test.yaml (a local
master), then train (TorchDistributor, 2 processes reading the training set from hdfs://) and
score submitted to the minicluster's YARN (conf/yarn-test.yaml, HADOOP_CONF_DIR from the
minicluster): the two training processes in two YARN containers. Spark uses Hadoop's own HDFS
client; the processes without Spark (training, registry, scoring workers) use WebHDFS. The
lake it leaves must match the local run, its model the local run's model.

One minicluster per test session: reused if one is up (./dev/services.sh start hadoop),
otherwise started here and stopped at the end.
"""

from __future__ import annotations

import time
import uuid

import pytest

from support.pipeline import (COMPARED_SETTINGS, DEMO_DIGITS, barrier_task_executors, check_features,
                              check_ingestion_matches_local, check_scoring_matches_local, check_training_matches_local,
                              delta_table, event_log, latest_report, local_reference, run_job, run_pipeline,
                              service_for_session, submit_command)

pytestmark = [pytest.mark.hdfs, pytest.mark.slow]

PROFILE = "hdfs-test"
YARN_PROFILE = "yarn-test"  # train and score: the same lake, submitted to the minicluster's YARN
# HDFS clients wait 400 ms before asking again whether a closed file's last block has been
# reported; with 1,805 small files that is minutes (conf/hdfs-test.yaml sets the same).
FAST_CLOSE = "dfs.client.block.write.locateFollowingBlock.initial.delay.ms"


@pytest.fixture(scope="session")
def hadoop():
    from lakeloop_dev.hadoop import default_minihadoop

    yield from service_for_session(default_minihadoop())


@pytest.fixture(scope="module")
def hdfs_lake(hadoop, spark, tmp_path_factory):
    """A fresh folder in HDFS holding the demo raw zone (put with Hadoop's client); removed afterwards."""
    from lakeloop.io import hadoop as spark_files
    from lakeloop_dev.demo_data import write_demo_raw_zone

    local = tmp_path_factory.mktemp("hdfs-raw") / "raw"
    write_demo_raw_zone(local)
    root = f"{hadoop.settings.uri}/it-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    spark_files.copy_from_local(spark, str(local), f"{root}/raw", {FAST_CLOSE: "20"})
    files = sum(1 for p in local.rglob("*") if p.is_file())
    yield {"root": root, "raw": f"{root}/raw", "lake": f"{root}/lake", "files": files}
    spark_files.delete(spark, root)


@pytest.fixture
def local_copy(hadoop, tmp_path_factory):
    """``local_copy(hdfs_uri) -> file: URI`` of a fresh copy of a table's files, fetched over
    WebHDFS (delta-rs, the independent reader the checks use, has no HDFS client here)."""
    from pyarrow.fs import FileSelector, FileType

    from lakeloop.io import lakefs

    def copy(uri: str) -> str:
        fs, root = lakefs.filesystem_for(uri, hadoop.settings.hadoop_conf())
        dest = tmp_path_factory.mktemp("hdfs-table")
        for info in fs.get_file_info(FileSelector(root, recursive=True)):
            if info.type == FileType.File:
                target = dest / info.path[len(root) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with fs.open_input_stream(info.path) as src:
                    target.write_bytes(src.read())
        return f"file:{dest}"

    return copy


def _sets(hdfs_lake: dict) -> list[str]:
    return [f"lake_root={hdfs_lake['lake']}",
            f"ingest_images.source={hdfs_lake['raw']}/images",
            f"ingest_tables.tables.digits_meta.source={hdfs_lake['raw']}/tables/digits_meta.csv",
            *COMPARED_SETTINGS]


@pytest.fixture(scope="module")
def hdfs_pipeline(hadoop, hdfs_lake, tmp_path_factory):
    """Every job once, in order, on the hdfs:// lake: the ingestions and features on a local
    master, train and score on YARN; returns their reports, logs, timings and the YARN jobs' event logs."""
    from lakeloop.io import lakefs
    from lakeloop_dev.cluster import executor_python

    run = run_pipeline(PROFILE, _sets(hdfs_lake), tmp_path_factory.mktemp("hdfs-logs"), hdfs_lake["lake"],
                       hadoop.settings.hadoop_conf(), jobs=("ingest_images", "ingest_tables", "build_features"))
    executor_python()  # the containers' Python: sees the pinned packages, not the checkout
    root = tmp_path_factory.mktemp("yarn")
    events = root / "events"
    events.mkdir()
    confs = ["spark.eventLog.enabled=true", f"spark.eventLog.dir=file:{events}", "spark.eventLog.compress=false",
             "spark.eventLog.rolling.enabled=false"]
    run["event_logs"] = {}
    for job in ("train", "score"):
        before = set(events.iterdir())
        started = time.perf_counter()
        proc = run_job(YARN_PROFILE, job, sets=_sets(hdfs_lake), confs=confs, log=root / f"{job}.log",
                       env={"HADOOP_CONF_DIR": str(hadoop.conf_dir)})
        run["timings"][job], run["outputs"][job] = round(time.perf_counter() - started, 1), proc.stdout
        new = sorted(set(events.iterdir()) - before)
        assert len(new) == 1, f"{job}: expected one new event log, found {new}"
        run["event_logs"][job] = new[0]
        run["reports"][job] = latest_report(lakefs.LakeFiles(run["conf"]).read_bytes, hdfs_lake["lake"], job)
    print(f"\nhdfs pipeline seconds per job (train and score on YARN): {run['timings']}")
    return run


def test_ingestion_on_hdfs_matches_the_local_run(hdfs_pipeline, hdfs_lake, local_copy, spark, digits_lake,
                                                 tmp_path_factory):
    check_ingestion_matches_local(hdfs_pipeline["reports"], hdfs_lake["lake"], local_copy,
                                  local_reference(spark, digits_lake, tmp_path_factory))


def test_features_on_hdfs(hdfs_pipeline):
    check_features(hdfs_pipeline["reports"]["build_features"])


def test_training_reads_hdfs_and_publishes_there_like_the_local_run(hdfs_pipeline, hdfs_lake, spark, digits_lake,
                                                                     tmp_path_factory):
    check_training_matches_local(hdfs_pipeline["reports"]["train"], hdfs_lake["lake"], "digits_lenet",
                                 hdfs_pipeline["conf"], local_reference(spark, digits_lake, tmp_path_factory))


def test_scoring_on_hdfs_like_the_local_run(hdfs_pipeline, hdfs_lake, local_copy, spark, digits_lake,
                                            tmp_path_factory):
    check_scoring_matches_local(hdfs_pipeline["reports"]["score"], hdfs_lake["lake"], local_copy,
                                local_reference(spark, digits_lake, tmp_path_factory))


def test_rerun_on_hdfs_adds_nothing(hdfs_pipeline, hdfs_lake, local_copy, tmp_path):
    """A second ingest over the unchanged HDFS folder reads no bytes and commits nothing."""
    before = {t: delta_table(local_copy(f"{hdfs_lake['lake']}/{t}")).version()
              for t in ("bronze/images", "quarantine/images", "_ledger/images")}
    run_job(PROFILE, "ingest_images", sets=_sets(hdfs_lake), log=tmp_path / "rerun.log")
    from lakeloop.io import lakefs

    report = latest_report(lakefs.LakeFiles(hdfs_pipeline["conf"]).read_bytes, hdfs_lake["lake"],
                           "ingest_images")
    first = hdfs_pipeline["reports"]["ingest_images"]["counts"]["files_listed"]
    assert report["counts"]["inputs"] == 0 and report["counts"]["files_already_seen"] == first
    after = {t: delta_table(local_copy(f"{hdfs_lake['lake']}/{t}")).version() for t in before}
    assert after == before


def test_driver_killed_mid_ingest_on_hdfs_then_rerun_equals_the_clean_run(hdfs_pipeline, hdfs_lake, local_copy,
                                                                           tmp_path):
    """ingest_images on a fresh HDFS lake; the moment bronze's first commit appears, the whole
    job (spark-submit, its JVM and Python driver) is SIGKILLed: no cleanup runs, HDFS keeps the
    dead client's half-written files and leases. The ledger is not committed yet, so the rerun
    redoes the folder; afterwards the three tables hold exactly the clean run's rows."""
    import os
    import signal
    import subprocess

    from lakeloop.io import lakefs
    from support.pipeline import REPO, table_rows

    conf = hdfs_pipeline["conf"]
    lake = f"{hdfs_lake['root']}/killed-lake"
    sets = [*_sets(hdfs_lake), f"lake_root={lake}"]
    first_commit = f"{lake}/bronze/images/_delta_log/{0:020d}.json"
    with open(tmp_path / "killed.log", "wb") as out:
        job = subprocess.Popen(submit_command(PROFILE, "ingest_images", sets=sets), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not lakefs.LakeFiles(conf).exists(first_commit):
                assert job.poll() is None, f"the job ended (exit {job.returncode}) before bronze was committed"
                assert time.monotonic() < deadline, "bronze was never committed"
                time.sleep(0.1)
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
    assert not lakefs.LakeFiles(conf).exists(f"{lake}/_ledger/images/_delta_log/{0:020d}.json"), \
        "the ledger was committed before the kill: the fault came too late to test anything"

    run_job(PROFILE, "ingest_images", sets=sets, log=tmp_path / "rerun.log")
    columns = {"bronze/images": ["image_id", "label", "path", "width", "height"],
               "quarantine/images": ["path", "error"], "_ledger/images": ["path", "length", "outcome"]}
    for table, cols in columns.items():
        clean = table_rows(local_copy(f"{hdfs_lake['lake']}/{table}"), None, cols).to_pylist()
        after = table_rows(local_copy(f"{lake}/{table}"), None, cols).to_pylist()
        assert len(after) == len({tuple(r.values()) for r in after}), f"{table}: duplicated rows after the rerun"
        assert sorted(map(str, after)) == sorted(map(str, clean)), f"{table} differs from the clean run"


# --------------------------------------------------------------------------- YARN

def test_torchdistributor_trains_in_two_yarn_containers(hdfs_pipeline):
    report = hdfs_pipeline["reports"]["train"]
    assert report["details"]["capacity"]["master"] == "yarn"
    events = event_log(hdfs_pipeline["event_logs"]["train"])
    assert events[0]["Event"] == "SparkListenerLogStart"
    app = next(e for e in events if e["Event"] == "SparkListenerApplicationStart")
    assert app["App ID"].startswith("application_"), app["App ID"]  # a YARN application
    task_executors = barrier_task_executors(events)
    assert len(task_executors) == 2 and len(set(task_executors)) == 2, task_executors
    hosts = {e["Executor ID"]: e["Executor Info"]["Log Urls"] for e in events
             if e["Event"] == "SparkListenerExecutorAdded"}
    assert set(task_executors) <= set(hosts), (task_executors, hosts)
    containers = {urls.get("stderr", "").split("/containerlogs/")[-1].split("/")[0] for urls in hosts.values()}
    assert len(containers) == 2 and all(c.startswith("container_") for c in containers), hosts
    # Its model is the local run's: test_training_reads_hdfs_and_publishes_there_like_the_local_run.


def test_scoring_on_yarn_like_the_local_run(hdfs_pipeline, spark, digits_lake, tmp_path_factory):
    report = hdfs_pipeline["reports"]["score"]
    assert report["status"] == "succeeded" and report["counts"]["scored"] == DEMO_DIGITS
    assert report["counts"]["python_workers"] == 2  # one per executor container
    local = local_reference(spark, digits_lake, tmp_path_factory)
    assert report["metrics"]["accuracy_this_run"] == pytest.approx(local["score_accuracy"], abs=1e-9)


# --------------------------------------------------------------------------- WebHDFS client


def test_webhdfs_atomic_write_replaces_and_lists(hadoop):
    from lakeloop.io import lakefs

    files = lakefs.LakeFiles(hadoop.settings.hadoop_conf())
    base = f"{hadoop.settings.uri}/webhdfs-{uuid.uuid4().hex[:8]}"
    files.write_bytes_atomic(f"{base}/a/x.json", b"one")
    files.write_bytes_atomic(f"{base}/a/x.json", b"two")  # over an existing file
    assert files.read_bytes(f"{base}/a/x.json") == b"two"
    assert files.list_dir(f"{base}/a") == ["x.json"], "no temporary file is left behind"
    assert files.exists(f"{base}/a") and not files.exists(f"{base}/b")
    assert files.list_dir(f"{base}/b") == []
    with pytest.raises(FileNotFoundError, match="no file at"):
        files.read_bytes(f"{base}/a/missing")
    assert files.delete_dir(base) and not files.exists(base)


def test_webhdfs_refused_rename_raises(hadoop):
    from lakeloop.io import lakefs

    fs, path = lakefs.filesystem_for(f"{hadoop.settings.uri}/webhdfs-missing-{uuid.uuid4().hex[:8]}",
                                     hadoop.settings.hadoop_conf())
    with pytest.raises(OSError):
        fs.move(f"{path}/does-not-exist", f"{path}/target")


def test_webhdfs_errors_name_the_setting(hadoop):
    from lakeloop.io import lakefs
    from lakeloop.errors import ConfigError
    from lakeloop_dev.processes import free_port

    with pytest.raises(ConfigError, match="lakeloop.hdfs.client"):
        lakefs.filesystem_for("hdfs://127.0.0.1:1/x", {"lakeloop.hdfs.client": "ftp"})
    with pytest.raises(ConfigError, match="dfs.namenode.http-address"):
        lakefs.filesystem_for("hdfs://127.0.0.1:1/x", {"lakeloop.hdfs.client": "webhdfs",
                                                       "dfs.namenode.http-address": "nohostport"})
    down = {"lakeloop.hdfs.client": "webhdfs", "dfs.namenode.http-address": f"127.0.0.1:{free_port()}"}
    with pytest.raises(ConnectionError, match="dfs.namenode.http-address"):
        lakefs.LakeFiles(down).exists("hdfs://127.0.0.1:1/x")


def test_eight_publishers_of_one_model_on_hdfs_get_eight_versions(hadoop, reliability):
    from lakeloop.io import lakefs
    from lakeloop.registry import Registry
    from support.publishers import publish_at_once

    registry = Registry(f"{hadoop.settings.uri}/registry-race-{uuid.uuid4().hex[:8]}",
                        lakefs.LakeFiles(hadoop.settings.hadoop_conf()))
    lost, shared = publish_at_once(registry, 8)
    reliability.record("8 processes publish one model name at once (hdfs: over WebHDFS)", "registry.publish",
                       "each publisher's weights vs its version's", 8, lost, shared)

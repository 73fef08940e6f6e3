"""What the integration tests (test_s3.py, test_cluster.py) share: running jobs the way users
do (``./spark-submit.sh`` subprocesses), reading lake tables with an independent Delta reader
(delta-rs), and the local run they are compared with."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]

# The settings every compared run uses: fewer epochs than the demo, to keep CI short; the
# same training-set layout as the shared local test lake (the digits_lake fixture, tests/conftest.py).
TRAIN_EPOCHS = 5
COMPARED_SETTINGS = ("features.training_set_files=8", f"train.epochs={TRAIN_EPOCHS}")

# The demo raw zone (lakeloop_dev.demo_data): 1,797 digits + 2 byte-identical copies + 4 broken files,
# a CSV of 1,797 good rows + 4 broken ones.
DEMO_DIGITS, DEMO_DUPLICATES, DEMO_BROKEN_IMAGES, DEMO_BROKEN_ROWS = 1797, 2, 4, 4
SPLITS = {"train": 1428, "validation": 189, "test": 180}


def submit_command(profile: str, job: str, *args: str, sets: Sequence[str] = (),
                   confs: Sequence[str] = (), py_files: Sequence[str] = ()) -> list[str]:
    """``./spark-submit.sh --profile P [--py-files ...] [--set ...] [--conf ...] JOB ARGS`` as an argument list."""
    cmd = [str(REPO / "spark-submit.sh"), "--profile", profile]
    if py_files:
        cmd += ["--py-files", ",".join(py_files)]
    for item in sets:
        cmd += ["--set", item]
    for item in confs:
        cmd += ["--conf", item]
    return [*cmd, job, *args]


def service_for_session(service):
    """Fixture body for a loopback service: start it (or reuse a running one), yield it, and
    stop it afterwards only if this test session started it."""
    service.start()
    yield service
    if service.owned:
        service.stop()


def run_job(profile: str, job: str, *args: str, sets: Sequence[str] = (), confs: Sequence[str] = (),
            log: Path, timeout_s: float = 600, env: Mapping[str, str] | None = None,
            secrets: Sequence[str] = (), check: bool = True, py_files: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``./spark-submit.sh --profile P [--set ...] [--conf ...] JOB ARGS`` and keep its output in ``log``.

    With ``check`` a non-zero exit fails the test with the end of the output (secrets masked).
    """
    cmd = submit_command(profile, job, *args, sets=sets, confs=confs, py_files=py_files)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    log.write_text(proc.stdout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{job} under profile {profile} exited {proc.returncode} after "
                             f"{time.perf_counter() - started:.0f} s; output ends:\n{mask(proc.stdout[-6000:], secrets)}")
    return proc


PIPELINE_JOBS = ("ingest_images", "ingest_tables", "build_features", "train", "score")


def run_pipeline(profile: str, sets: Sequence[str], logs: Path, lake: str, hadoop_conf: Mapping[str, str],
                 secrets: Sequence[str] = (), jobs: Sequence[str] = PIPELINE_JOBS) -> dict[str, Any]:
    """Every job (of ``jobs``) once, in order, as ``./spark-submit.sh`` subprocesses; their reports
    (read from the lake with :class:`lakeloop.io.lakefs.LakeFiles` and ``hadoop_conf``), outputs and timings."""
    from lakeloop.io.lakefs import LakeFiles

    timings, outputs = {}, {}
    for job in jobs:
        started = time.perf_counter()
        proc = run_job(profile, job, sets=sets, log=logs / f"{job}.log", secrets=secrets)
        timings[job] = round(time.perf_counter() - started, 1)
        outputs[job] = proc.stdout
    files = LakeFiles(dict(hadoop_conf))
    reports = {job: latest_report(files.read_bytes, lake, job) for job in timings}
    print(f"\n{profile} pipeline seconds per job: {timings}")
    return {"reports": reports, "outputs": outputs, "timings": timings, "conf": dict(hadoop_conf)}


def mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def delta_table(uri: str, storage_options: Mapping[str, str] | None = None):
    """A lake table opened with delta-rs, an independent Delta reader (``s3a://`` or ``file:``)."""
    from deltalake import DeltaTable

    if uri.startswith("file:"):
        uri = "/" + uri[len("file:"):].lstrip("/")
    return DeltaTable(uri, storage_options=dict(storage_options) if storage_options else None)


def table_rows(uri: str, storage_options: Mapping[str, str] | None = None, columns: Sequence[str] | None = None):
    """The table's rows as a pyarrow Table (``columns`` only)."""
    return delta_table(uri, storage_options).to_pyarrow_table(columns=list(columns) if columns else None)


def lake_counts(lake: str, storage_options: Mapping[str, str] | None = None) -> dict[str, int]:
    """Row counts of the pipeline's tables in a lake."""
    tables = ["bronze/images", "quarantine/images", "_ledger/images", "bronze/digits_meta",
              "quarantine/digits_meta", "silver/features", "gold/predictions"]
    counts = {}
    for name in tables:
        try:
            counts[name] = delta_table(f"{lake}/{name}", storage_options).to_pyarrow_dataset().count_rows()
        except Exception:  # noqa: BLE001 - a table the run does not write (the local reference has no tables job)
            counts[name] = -1
    return counts


def latest_report(read_bytes, lake: str, job: str) -> dict[str, Any]:
    """The job's ``_reports/<job>/latest.json`` read with ``read_bytes(uri) -> bytes``."""
    return json.loads(read_bytes(f"{lake}/_reports/{job}/latest.json"))


_REFERENCE: dict[str, Any] = {}


def local_reference(spark, digits_lake, tmp_path_factory) -> dict[str, Any]:
    """Training (and scoring) on the shared local test lake, in-process on ``local[2]``, with
    :data:`COMPARED_SETTINGS`: what a run on S3 or on the cluster must reproduce. Computed once
    per test session."""
    if _REFERENCE:
        return _REFERENCE
    from support.lakes import copy_lake
    from lakeloop.registry import Registry
    from lakeloop.report import RunReport
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("local-reference") / "lake",
                        ("train.epochs", TRAIN_EPOCHS))
    assert profile.features.training_set_files == 8
    report = RunReport("train", "local-reference")
    train(spark, profile, report=report)
    score = score_table(spark, profile)
    registry = Registry.for_profile(profile)
    metadata = registry.read_metadata(registry.resolve(profile.train.model_name, "latest"))
    _REFERENCE.update(
        lake=profile.lake_root,
        test_accuracy=report.details["test_accuracy"],
        val_accuracy=report.details["val_accuracy"],
        losses=[e["train_loss"] for e in metadata["metrics"]["per_epoch"]],
        score_accuracy=score.metrics["accuracy_this_run"],
        scored=score.counts["scored"],
        counts=lake_counts(profile.lake_root),
    )
    return _REFERENCE


def event_log(path: Path) -> list[dict]:
    """The events of a plain (uncompressed, single-file) Spark event log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def barrier_task_executors(events: list[dict]) -> list[str]:
    """Executor ids of the successful tasks of the application's barrier stages (TorchDistributor's)."""
    barrier_stages = {e["Stage Info"]["Stage ID"] for e in events
                      if e["Event"] == "SparkListenerStageSubmitted"
                      and any(r.get("Barrier") for r in e["Stage Info"].get("RDD Info", []))}
    return sorted(e["Task Info"]["Executor ID"] for e in events
                  if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in barrier_stages
                  and e["Task End Reason"]["Reason"] == "Success")


# --------------------------------------------------------------------------- shared checks
# What a pipeline run on another store (S3, HDFS) must show against the local reference;
# ``copy(uri) -> file: URI`` gives a local copy of a table for delta-rs.


def check_ingestion_matches_local(reports: Mapping[str, Any], lake: str, copy, local: Mapping[str, Any]) -> None:
    images = reports["ingest_images"]
    assert images["status"] == "succeeded"
    assert (images["counts"]["ingested"], images["counts"]["duplicates"], images["counts"]["quarantined"]) == \
        (DEMO_DIGITS, DEMO_DUPLICATES, DEMO_BROKEN_IMAGES)
    tables = reports["ingest_tables"]
    assert tables["counts"]["inserted"] == DEMO_DIGITS and tables["counts"]["quarantined"] == DEMO_BROKEN_ROWS
    counts = {t: delta_table(copy(f"{lake}/{t}")).to_pyarrow_dataset().count_rows()
              for t in ("bronze/images", "quarantine/images", "_ledger/images", "silver/features",
                        "bronze/digits_meta", "quarantine/digits_meta")}
    for table in ("bronze/images", "quarantine/images", "_ledger/images", "silver/features"):
        assert counts[table] == local["counts"][table], (table, counts, local["counts"])
    assert counts["bronze/digits_meta"] == DEMO_DIGITS and counts["quarantine/digits_meta"] == DEMO_BROKEN_ROWS
    # The same images, byte for byte: bronze is keyed by the sha256 of the content.
    ids = table_rows(copy(f"{lake}/bronze/images"), None, ["image_id"]).column(0)
    local_ids = table_rows(f"{local['lake']}/bronze/images", None, ["image_id"]).column(0)
    assert sorted(ids.to_pylist()) == sorted(local_ids.to_pylist())


def check_features(report: Mapping[str, Any]) -> None:
    counts = report["counts"]
    assert counts["images"] == counts["inserted"] == DEMO_DIGITS and counts["quarantined"] == 0
    assert {k: counts[f"split_{k}"] for k in SPLITS} == SPLITS


def check_training_matches_local(report: Mapping[str, Any], lake: str, model_name: str,
                                 hadoop_conf: Mapping[str, str], local: Mapping[str, Any]) -> None:
    """Both training processes read the store, disjoint shards covering the training set; the
    model published there has the local run's losses and accuracies (same data, seeds, world size)."""
    from lakeloop.io.lakefs import LakeFiles
    from lakeloop.registry import Registry

    assert report["status"] == "succeeded" and report["counts"]["published"] == 1
    assert report["details"]["training_set"]["root"].startswith(f"{lake}/_training_sets/")
    audit = report["details"]["shard_audit"]
    assert len(audit["rows_per_rank"]) == 2 and audit["overlap"] == 0
    assert audit["covered"] == audit["train_rows"] == SPLITS["train"]
    model = report["outputs"]["model"]
    registry = Registry(f"{lake}/models", LakeFiles(dict(hadoop_conf)))
    version = registry.resolve(model_name, "latest")
    assert model == f"{lake}/models/{model_name}/{version.version}"
    assert registry.files.exists(f"{model}/_COMMITTED")
    losses = [e["train_loss"] for e in registry.read_metadata(version)["metrics"]["per_epoch"]]
    assert losses == pytest.approx(local["losses"], rel=1e-4), (losses, local["losses"])
    assert report["details"]["test_accuracy"] == pytest.approx(local["test_accuracy"], abs=1e-9)
    assert report["details"]["val_accuracy"] == pytest.approx(local["val_accuracy"], abs=1e-9)


def check_scoring_matches_local(report: Mapping[str, Any], lake: str, copy, local: Mapping[str, Any]) -> None:
    assert report["status"] == "succeeded"
    assert report["counts"]["scored"] == DEMO_DIGITS and report["counts"]["quarantined"] == 0
    rows = table_rows(copy(f"{lake}/gold/predictions"), None, ["image_id", "model_version"])
    assert rows.num_rows == DEMO_DIGITS and set(rows.column("model_version").to_pylist()) == {1}
    assert report["metrics"]["accuracy_this_run"] == pytest.approx(local["score_accuracy"], abs=1e-9)

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

REPO = Path(__file__).resolve().parents[1]

# The settings every compared run uses: fewer epochs than the demo, to keep CI short; the
# same training-set layout as the shared local test lake (tests/conftest.py digits_lake).
TRAIN_EPOCHS = 5
COMPARED_SETTINGS = ("features.training_set_files=8", f"train.epochs={TRAIN_EPOCHS}")

# The demo raw zone (lakeloop.demo): 1,797 digits + 2 byte-identical copies + 4 broken files,
# a CSV of 1,797 good rows + 4 broken ones.
DEMO_DIGITS, DEMO_DUPLICATES, DEMO_BROKEN_IMAGES, DEMO_BROKEN_ROWS = 1797, 2, 4, 4
SPLITS = {"train": 1428, "validation": 189, "test": 180}


def run_job(profile: str, job: str, *args: str, sets: Sequence[str] = (), confs: Sequence[str] = (),
            log: Path, timeout_s: float = 600, env: Mapping[str, str] | None = None,
            secrets: Sequence[str] = (), check: bool = True) -> subprocess.CompletedProcess:
    """Run ``./spark-submit.sh --profile P [--set ...] [--conf ...] JOB ARGS`` and keep its output in ``log``.

    With ``check`` a non-zero exit fails the test with the end of the output (secrets masked).
    """
    cmd = [str(REPO / "spark-submit.sh"), "--profile", profile]
    for item in sets:
        cmd += ["--set", item]
    for item in confs:
        cmd += ["--conf", item]
    cmd += [job, *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    log.write_text(proc.stdout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{job} under profile {profile} exited {proc.returncode} after "
                             f"{time.perf_counter() - started:.0f} s; output ends:\n{mask(proc.stdout[-6000:], secrets)}")
    return proc


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
    from conftest import copy_lake
    from lakeloop.report import RunReport
    from lakeloop.scoring import score_table
    from lakeloop.training import train

    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("local-reference") / "lake",
                        ("train.epochs", TRAIN_EPOCHS))
    assert profile.features.training_set_files == 8
    report = RunReport("train", "local-reference")
    train(spark, profile, report=report)
    score = score_table(spark, profile)
    from lakeloop import registry
    from lakeloop.training import registry_root

    metadata = registry.read_metadata(registry.resolve(registry_root(profile), profile.train.model_name, "latest"))
    _REFERENCE.update(
        lake=profile.lake_root,
        test_accuracy=report.details["test_accuracy"],
        val_accuracy=report.details["val_accuracy"],
        losses=[e["train_loss"] for e in metadata["metrics"]["per_epoch"]],
        score_accuracy=score.metrics["accuracy_model_version"],
        scored=score.counts["scored"],
        counts=lake_counts(profile.lake_root),
    )
    return _REFERENCE

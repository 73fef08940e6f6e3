"""Camera photos under a memory cap on the Python workers (issue 36, item 2): with batches cut by
bytes (``ingest_images.max_batch_bytes``, ``features.max_batch_bytes``) ingest and features take
every photo under ``spark.executor.pyspark.memory``, at a lower peak than batches cut by record
count alone (as before). The peak figures at 1x and 16x photo size are bench/photo_memory.py's
(BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from lakeloop.io import delta
from lakeloop_dev.camera import camera_photos, run_watched
from support.lakes import layout, make_profile
from support.pipeline import REPO, submit_command

pytestmark = [pytest.mark.slow, pytest.mark.fault]

PHOTOS = 48  # 12 MP JPEGs of about 5 MB: some 240 MB in all
CAP_MB = 768  # spark.executor.pyspark.memory
RECORDS_ONLY = 2147483646  # the largest byte cap Spark takes: only maxRecordsPerBatch (512) cuts batches


def _ingest_and_build(tmp_path, source, name: str, batch_bytes: int | None) -> tuple[str, dict]:
    """``ingest_images`` then ``build_features``, spark-submit'ed under the cap; the lake and, per
    job, (exit code, peak worker bytes, end of its output)."""
    lake = f"file:{tmp_path / name / 'lake'}"
    sets = [f"lake_root={lake}", f"ingest_images.source=file:{source}", "features.join_table=null"]
    if batch_bytes is not None:
        sets += [f"ingest_images.max_batch_bytes={batch_bytes}", f"features.max_batch_bytes={batch_bytes}"]
    outcome = {}
    for job in ("ingest_images", "build_features"):
        code, output, peak = run_watched(
            submit_command("test", job, sets=sets, confs=[f"spark.executor.pyspark.memory={CAP_MB}m"]), REPO)
        (tmp_path / f"{name}-{job}.log").write_text(output)
        outcome[job] = (code, peak.bytes, output[-3000:])
    return lake, outcome


def _rows(spark, table: str) -> int:
    return delta.read_table(spark, table).count() if delta.is_delta_table(spark, table) else 0


def test_camera_photos_are_ingested_and_preprocessed_under_a_worker_memory_cap_that_record_count_batches_break(
        spark, tmp_path, reliability):
    source = tmp_path / "photos"
    total = camera_photos(source, PHOTOS)

    lake, now = _ingest_and_build(tmp_path, source, "bytes", None)
    before_lake, before = _ingest_and_build(tmp_path, source, "records", RECORDS_ONLY)

    for job, (code, peak, output) in now.items():
        assert code == 0, f"{job} under a {CAP_MB} MiB worker cap:\n{output}"
        assert peak < CAP_MB * 2**20, (job, peak)
    tables = layout(make_profile(lake))
    assert _rows(spark, tables.bronze_images) == PHOTOS and _rows(spark, tables.quarantine_images) == 0
    assert _rows(spark, tables.features) == PHOTOS and _rows(spark, tables.quarantine_features) == 0
    # Cut by record count alone (at Spark's 128 MB partitions, about 25 photos a batch), the same
    # photos need more of a worker: a job fails, photos are missing, or its peak is higher.
    old = layout(make_profile(before_lake))
    exits = {job: code for job, (code, _, _) in before.items()}
    lost = PHOTOS - _rows(spark, old.features)
    peak_now = max(peak for _, peak, _ in now.values())
    peak_before = max(peak for _, peak, _ in before.values())
    assert any(exits.values()) or lost > 0 or peak_before > 1.2 * peak_now, (before, peak_now)
    reliability.bad_input("ingest_images + build_features",
                          f"{PHOTOS} camera photos (12 MP, {total / 1e6:.0f} MB) under a {CAP_MB} MiB worker cap",
                          f"all ingested and preprocessed in byte-capped batches (peak worker {peak_now / 2**20:.0f} MiB; "
                          f"cut by record count alone: {peak_before / 2**20:.0f} MiB, exit codes {exits}, "
                          f"{lost} photos short of silver, {_rows(spark, old.quarantine_features)} of them "
                          f"quarantined by preprocessing)")

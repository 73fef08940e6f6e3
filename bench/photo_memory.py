"""Benchmark: the peak memory of one Python worker while camera photos are ingested and
preprocessed, with batches cut by bytes (now) and by record count alone (before; issue 36, item 2).

    PYTHONPATH=lib:dev ./.venv/bin/python bench/photo_memory.py [--photos 48] [--cap-mb 0]

Data: ``--photos`` JPEGs (lakeloop_dev.camera: smooth colour fields with noise, quality 92) at
1x (1000x750, about 0.3 MB) and 16x the pixels (4000x3000, 12 MP, about 5 MB), in two folders.
Each contender is ``./spark-submit.sh --profile test`` (local[2,2]) running ``ingest_images``
then ``build_features`` (32x32 grayscale) into a fresh lake, with ``spark.sql.files.maxPartitionBytes``
at ``--partition-mb`` (Spark's 128 by default: a partition, and with it a record-count batch,
then holds at most about 128 MB of photos; larger values, as on clusters tuned for fewer tasks,
make record-count batches larger still):

* bytes: ``ingest_images.max_batch_bytes`` and ``features.max_batch_bytes`` at their default
  (32 MiB) and ``spark.sql.execution.arrow.maxRecordsPerBatch`` at 512 (conf/local.yaml);
* records only (before): both settings at Spark's largest (2147483646), so only the 512
  records a batch cut them, as before issue 36.

The peak is the highest ``VmHWM`` (resident high-water mark) of any ``pyspark.daemon``
process during the job (:class:`lakeloop_dev.camera.PeakWorkerMemory`). ``--cap-mb`` adds
``--conf spark.executor.pyspark.memory=<cap>m`` (the address-space limit Spark sets on each
worker) and reports whether each job still ended with every photo ingested.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from lakeloop_dev.camera import camera_photos, run_watched

REPO = Path(__file__).resolve().parents[1]
SCALES = {"1x (1000x750)": (1000, 750), "16x (4000x3000, 12 MP)": (4000, 3000)}
CONTENDERS = {"bytes (32 MiB, now)": None, "records only (512, before)": 2147483646}


def run_job(job: str, lake: Path, source: Path, batch_bytes: int | None, cap_mb: int,
            partition_mb: int) -> tuple[int, float, int, int]:
    """(exit code, seconds, peak worker bytes resident and of address space) of one spark-submit'ed job; its output is kept
    beside the lake and its last lines printed when it fails."""
    sets = [f"lake_root=file:{lake}", f"ingest_images.source=file:{source}", "features.join_table=null"]
    if batch_bytes is not None:
        sets += [f"ingest_images.max_batch_bytes={batch_bytes}", f"features.max_batch_bytes={batch_bytes}"]
    cmd = [str(REPO / "spark-submit.sh"), "--profile", "test"]
    for item in sets:
        cmd += ["--set", item]
    cmd += ["--conf", f"spark.sql.files.maxPartitionBytes={partition_mb}m"]
    if cap_mb:
        cmd += ["--conf", f"spark.executor.pyspark.memory={cap_mb}m"]
    started = time.perf_counter()
    code, output, peak = run_watched([*cmd, job], REPO)
    (lake.parent / f"{job}.log").write_text(output)
    if code != 0:
        tail = [line for line in output.splitlines() if "Error" in line or "error:" in line][-3:]
        print(f"{job} ({lake.parent.name}) exited {code}: " + " | ".join(line.strip()[:200] for line in tail))
    return code, time.perf_counter() - started, peak.bytes, peak.virtual_bytes


def counted(lake: Path, job: str, key: str) -> int | None:
    """A count of the last run of ``job`` (from its report in the lake), or None."""
    reports = sorted((lake / "_reports" / job).glob("*.json"))
    return json.loads(reports[-1].read_text())["counts"].get(key) if reports else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--cap-mb", type=int, default=0, help="spark.executor.pyspark.memory in MiB (0: none)")
    parser.add_argument("--partition-mb", type=int, default=128,
                        help="spark.sql.files.maxPartitionBytes in MiB (Spark's default: 128)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakeloop-photo-memory-"))
    rows = []
    try:
        for scale, (width, height) in SCALES.items():
            source = work / f"photos-{width}"
            total = camera_photos(source, args.photos, width, height)
            peaks = {}
            for name, batch_bytes in CONTENDERS.items():
                lake = work / f"lake-{width}-{batch_bytes}" / "lake"
                lake.parent.mkdir(parents=True)
                code_i, secs_i, peak_i, virt_i = run_job("ingest_images", lake, source, batch_bytes, args.cap_mb,
                                                         args.partition_mb)
                took = counted(lake, "ingest_images", "ingested") if code_i == 0 else None
                code_f, secs_f, peak_f, virt_f = run_job("build_features", lake, source, batch_bytes, args.cap_mb,
                                                         args.partition_mb)
                refused = counted(lake, "build_features", "quarantined") if code_f == 0 else None
                peaks[name] = max(peak_i, peak_f)
                rows.append((scale, f"{total / 1e6:.0f}", name, f"{peak_i / 2**20:.0f} ({virt_i / 2**20:.0f})",
                             f"{peak_f / 2**20:.0f} ({virt_f / 2**20:.0f})", f"{code_i}/{code_f}",
                             f"{took}/{args.photos}", f"{refused}", f"{secs_i:.0f} + {secs_f:.0f}"))
            now, before = peaks[list(CONTENDERS)[0]], peaks[list(CONTENDERS)[1]]
            rows.append((scale, "", "before ÷ now (peak)", "", "", "", "", "", f"{before / max(now, 1):.2f}x"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.photos} photos a size; spark.sql.files.maxPartitionBytes: {args.partition_mb} MiB; "
          f"spark.executor.pyspark.memory: {f'{args.cap_mb} MiB' if args.cap_mb else 'none'}\n")
    print("| photos | MB in all | batches cut by | ingest peak MiB (address space) | features peak MiB (address space) "
          "| exit codes | ingested | quarantined by features | seconds |")
    print("| --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

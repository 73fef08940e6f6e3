"""Progress lines for long jobs, from Spark's status tracker, at most one every few seconds.

    [lakeloop score 00:42] step score: stage 7 tasks 5/8 (62%), 0.4 tasks/s, ETA 8 s; inputs=1,797

:class:`Progress` runs a daemon thread on the driver while a job runs. Every
``observe.progress_interval_s`` seconds (0: off) it reads the active stages from
``SparkContext.statusTracker()`` and the step the job is in (``RunReport.current_step``, set
by ``report.timed``), and prints one line when something runs: tasks done of the running
stages, their rate, an estimate of the time left, and the counts the report has so far.
Nothing is printed while nothing runs, so a quiet job does not flood its log.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def stage_progress(spark: "SparkSession") -> tuple[list[int], int, int]:
    """(active stage ids, tasks completed, tasks in all) of the stages running now."""
    tracker = spark.sparkContext.statusTracker()
    ids, done, total = [], 0, 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is None:
            continue
        ids.append(stage_id)
        done += info.numCompletedTasks
        total += info.numTasks
    return sorted(ids), done, total


class Progress:
    """Prints a progress line for ``report`` at most every ``interval_s`` seconds while in a ``with`` block."""

    def __init__(self, spark: "SparkSession", report: RunReport, interval_s: float, out: TextIO = sys.stdout):
        self._spark, self._report, self._interval, self._out = spark, report, interval_s, out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._seen: dict[tuple[int, ...], tuple[float, int]] = {}
        self.lines = 0

    def __enter__(self) -> "Progress":
        if self._interval > 0:
            self._thread = threading.Thread(target=self._run, name="lakeloop-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                line = self.line()
            except Exception:  # noqa: BLE001 - progress must never break the job (e.g. a stopping context)
                return
            if line:
                print(line, file=self._out, flush=True)
                self.lines += 1

    def line(self) -> str | None:
        """The progress line now, or None when no stage runs."""
        ids, done, total = stage_progress(self._spark)
        if not ids:
            return None
        now = time.monotonic()
        key = tuple(ids)
        first_seen, first_done = self._seen.setdefault(key, (now, done))
        rate = (done - first_done) / (now - first_seen) if now > first_seen else 0.0
        eta = f", ETA {max(0, total - done) / rate:,.0f} s" if rate > 0 else ""
        elapsed = int(now - self._started)
        stages = ",".join(map(str, ids))
        counts = ", ".join(f"{k}={v:,}" for k, v in list(self._report.counts.items())[:4])
        return (f"[lakeloop {self._report.job} {elapsed // 60:02d}:{elapsed % 60:02d}] step "
                f"{self._report.current_step or '-'}: stage {stages} tasks {done}/{total} "
                f"({done / total if total else 0:.0%}), {rate:.1f} tasks/s{eta}" + (f"; {counts}" if counts else ""))

"""Run reports: one JSON per run next to the job's output, plus a short printed summary."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from lakeloop.errors import QualityError
from lakeloop.io import hadoop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def new_run_id(job: str) -> str:
    """``<job>-<UTC time>-<8 hex>``: sortable, and a leftover artefact traces back to its run."""
    return f"{job}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunReport:
    """Counts, timings and warnings of one job run; written as JSON by :func:`write_report`.

    It owns the run's id: library functions take a report and stamp what they write with
    ``report.run_id``, so the id in the lake and the id of the report cannot disagree.
    """

    job: str
    run_id: str
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    status: str = "running"
    counts: dict[str, int] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    finished_at: str | None = None
    error: str | None = None
    current_step: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, job: str) -> "RunReport":
        """A new report for a run of ``job``, with a fresh run id (:func:`new_run_id`)."""
        return cls(job=job, run_id=new_run_id(job))

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the wall time of the block to ``durations_s[step]``; ``current_step`` names it meanwhile
        (the progress lines of :mod:`lakeloop.runtime.progress` say which step runs)."""
        start, outer = time.perf_counter(), self.current_step
        self.current_step = step
        try:
            yield
        finally:
            self.current_step = outer
            self.durations_s[step] = round(self.durations_s.get(step, 0.0) + time.perf_counter() - start, 3)

    def flag(self, check: str, message: str, fail: bool) -> None:
        """Record a crossed quality threshold (``details.quality_violations``, and a warning); with
        ``fail`` (``quality.on_violation: fail``) raise :class:`QualityError` once it is recorded."""
        self.details.setdefault("quality_violations", []).append({"check": check, "message": message})
        self.warnings.append(f"quality: {message}")
        if fail:
            raise QualityError(f"{message} (quality.on_violation is fail; the data written by this run stays, "
                               f"fix the input or relax the threshold, then rerun)")

    def finish(self, status: str = "succeeded", error: str | None = None) -> "RunReport":
        self.status = status
        self.error = error
        self.finished_at = datetime.now(timezone.utc).isoformat()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (what the JSON holds)."""
        return {k: v for k, v in self.__dict__.items() if k != "current_step"}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    def summary(self) -> str:
        """A few lines a person reads at the end of a run."""
        lines = [f"{self.job} {self.status} (run {self.run_id})"]
        if self.counts:
            lines.append("  counts: " + ", ".join(f"{k}={v}" for k, v in self.counts.items()))
        if self.metrics:
            lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()))
        if self.throughput:
            lines.append("  throughput: " + ", ".join(f"{k}={v:,.1f}" for k, v in self.throughput.items()))
        if self.durations_s:
            lines.append("  seconds: " + ", ".join(f"{k}={v:.1f}" for k, v in self.durations_s.items()))
        for name, uri in self.outputs.items():
            lines.append(f"  {name}: {uri}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def write_report(spark: "SparkSession", report: RunReport, report_dir: str) -> str:
    """Write ``<report_dir>/<run_id>.json`` and ``latest.json``; return the run's URI."""
    uri = f"{report_dir}/{report.run_id}.json"
    text = report.to_json()
    hadoop.write_text(spark, uri, text)
    hadoop.write_text(spark, f"{report_dir}/latest.json", text)
    report.outputs.setdefault("report", uri)
    return uri

"""What every ``jobs/<name>.py`` shares after its arguments: profile, session, report, exit code.

A job module defines its own arguments (mapped onto profile settings, parsed by
:mod:`lakeloop.cli.jobs`) and one function ``run(spark, profile, report, args) -> None`` that calls
the library; :func:`execute` does the rest.
"""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

from lakeloop.config import Profile
from lakeloop.errors import LakeloopError
from lakeloop.layout import LakeLayout
from lakeloop.ops.pages import page_uri, write_page
from lakeloop.report import RunReport, write_report

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JobFn = Callable[["SparkSession", Profile, RunReport, Any], None]


def execute(job: str, load: Callable[[], Profile], fn: JobFn, args: Any = None) -> int:
    """Load the profile (``load``), build the session, run ``fn``, write the report; return the exit code.

    The jobs' command line (:func:`lakeloop.cli.jobs.run_job`) parses the arguments and calls this;
    ``args`` is handed to ``fn`` as is.
    """
    report = RunReport.start(job)
    try:
        profile = load()
    except LakeloopError as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        return 2

    from lakeloop.runtime.session import build_session

    try:
        spark = build_session(profile, app_name=f"lakeloop-{job}")
    except LakeloopError as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        return 2
    exit_code = 0
    from lakeloop.runtime.progress import Progress

    try:
        with Progress(spark, report, profile.observe.progress_interval_s):
            fn(spark, profile, report, args)
        report.finish("succeeded")
    except LakeloopError as exc:
        report.finish("failed", f"{type(exc).__name__}: {exc}")
        exit_code = 1
    except Exception as exc:  # noqa: BLE001 - report any crash, then fail the job
        report.finish("failed", f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        exit_code = 1
    report_dir = LakeLayout(profile.lake_root).reports(job)
    if profile.observe.html_reports:
        report.outputs["page"] = page_uri(report_dir, report.run_id)
    try:
        write_report(spark, report, report_dir)
    except Exception as exc:  # noqa: BLE001 - a lost report must not hide the job's own outcome
        print(f"{job}: could not write the run report to {report_dir}: {exc}", file=sys.stderr)
        exit_code = exit_code or 1
    if profile.observe.html_reports:
        try:
            write_page(spark, report.to_dict(), report_dir)
        except Exception as exc:  # noqa: BLE001 - the page is a view of the report, which is written
            report.outputs.pop("page", None)
            print(f"{job}: could not write the run page to {report_dir}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    print(report.summary())
    return exit_code

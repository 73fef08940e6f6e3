"""What every ``jobs/<name>.py`` shares: arguments, profile, session, report, exit code.

A job module defines its own arguments (mapped onto profile settings) and one function
``run(spark, profile, report, args) -> None`` that calls the library; :func:`run_job` does the rest.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lakeloop.config import Profile, load_profile
from lakeloop.errors import LakeloopError
from lakeloop.layout import LakeLayout
from lakeloop.pages import page_uri, write_page
from lakeloop.report import RunReport, write_report

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JobFn = Callable[["SparkSession", Profile, RunReport, argparse.Namespace], None]


def base_parser(job: str, description: str) -> argparse.ArgumentParser:
    """The arguments every job takes: ``--profile``, ``--set key=value``, ``--conf spark.key=value``."""
    parser = argparse.ArgumentParser(prog=f"jobs/{job}.py", description=description)
    parser.add_argument("--profile", default="local", help="profile name in conf/ or a YAML path (default: local)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a profile setting, e.g. --set ingest_images.max_pixels=1000000 (repeatable)",
    )
    parser.add_argument(
        "--conf", dest="spark_conf", action="append", default=[], metavar="SPARK_KEY=VALUE",
        help="add a Spark setting, e.g. --conf spark.sql.shuffle.partitions=4 (repeatable)",
    )
    parser.add_argument(
        "--repo", metavar="DIR",
        help="the checkout {repo} stands for in the profile (./spark-submit.sh passes the one it used; "
             "default: the folder above the profile's conf/ folder, else the checkout lakeloop runs from)",
    )
    return parser


def run_job(
    job: str,
    parser: argparse.ArgumentParser,
    fn: JobFn,
    overrides_from_args: Callable[[argparse.Namespace], list[tuple[str, object]]] = lambda a: [],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, load the profile, build the session, run ``fn``, write the report; return the exit code."""
    args = parser.parse_args(argv)
    report = RunReport.start(job)
    try:
        profile = load_profile(args.profile, [*args.overrides, *overrides_from_args(args)], args.spark_conf,
                               repo_root=Path(args.repo) if args.repo else None)
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

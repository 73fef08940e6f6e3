"""The command line every ``jobs/<name>.py`` shares: ``--profile``, ``--set``, ``--conf``, ``--repo``.

A job builds its parser with :func:`base_parser`, adds its own arguments, and hands the parser and
its ``run(spark, profile, report, args)`` to :func:`run_job`, which parses, loads the profile and
runs the job through :func:`lakeloop.runtime.runner.execute` (session, report, exit code).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from
from lakeloop.runtime.runner import JobFn, execute


def base_parser(job: str, description: str) -> argparse.ArgumentParser:
    """The arguments every job takes: ``--profile``, ``--set key=value``, ``--conf spark.key=value``, ``--repo``."""
    parser = argparse.ArgumentParser(prog=f"jobs/{job}.py", description=description)
    add_profile_arguments(parser, set_help="override a profile setting, e.g. --set ingest_images.max_pixels=1000000 "
                                           "(repeatable)")
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

    def load():
        return load_profile_from(args, overrides_from_args(args), spark_conf=args.spark_conf,
                                 repo_root=Path(args.repo) if args.repo else None)

    return execute(job, load, fn, args)

"""``lakeloop airflow dag --profile yarn [--set k=v ...] [--conn-id C] [--out PATH]``: the scheduled-scoring
DAG of :mod:`lakeloop.deploy.airflow`, written to a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from


def main(argv: Sequence[str] | None = None) -> int:
    from lakeloop.deploy.airflow import DAG_ID, dag_source
    from lakeloop.config import REPO_ROOT
    from lakeloop.errors import LakeloopError

    parser = argparse.ArgumentParser(prog="lakeloop airflow", description="An Airflow DAG for scheduled scoring.")
    parser.add_argument("what", choices=["dag"])
    add_profile_arguments(parser, set_help="override a profile setting; the task runs with it too (repeatable)")
    parser.add_argument("--conn-id", default="spark_default", help="the Airflow Spark connection (its host: the master)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "airflow" / f"{DAG_ID}.py",
                        help="where to write the DAG file (default: build/airflow/lakeloop_score.py)")
    args = parser.parse_args(argv)
    try:
        profile = load_profile_from(args)
        text = dag_source(profile, args.profile, args.overrides, args.conn_id)
    except LakeloopError as exc:
        print(f"lakeloop airflow: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}: DAG {DAG_ID}, schedule {profile.schedule.cron!r} ({profile.schedule.timezone}); "
          f"copy it into Airflow's dags folder")
    return 0

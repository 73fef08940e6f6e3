"""``lakeloop databricks bundle --profile databricks ...``: the Databricks job definitions of
:mod:`lakeloop.deploy.databricks`, written out (``databricks bundle validate`` checks them; the
tests check them against the Jobs API schema).

    lakeloop databricks bundle --profile databricks [--set k=v ...] [--conf k=v ...]
                               [--option k=v ...] [--format yaml|json] [--repo DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from


def _parser() -> argparse.ArgumentParser:
    from lakeloop.deploy.databricks import BundleOptions

    parser = argparse.ArgumentParser(prog="lakeloop databricks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("bundle", help="write databricks.yml (or Jobs API JSON) for every job and the pipeline")
    add_profile_arguments(cmd, set_help="override a profile setting; the tasks get it too (repeatable)")
    cmd.add_argument("--conf", dest="spark_conf", action="append", default=[], metavar="SPARK_KEY=VALUE",
                     help="add a Spark setting to the clusters (repeatable)")
    cmd.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                     help=f"cluster/bundle option: {', '.join(f.name for f in dataclasses.fields(BundleOptions))}")
    cmd.add_argument("--format", choices=["yaml", "json"], default="yaml",
                     help="yaml: an Asset Bundle (databricks.yml); json: one Jobs API 2.1 settings file per job")
    cmd.add_argument("--repo", type=Path,
                     help="the lakeloop checkout (default: this one, or the current folder for an installed wheel)")
    cmd.add_argument("--out", type=Path,
                     help="yaml: the file (default build/databricks/databricks.yml); json: a folder "
                          "(default build/databricks/jobs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from lakeloop.config import REPO_ROOT
    from lakeloop.deploy.databricks import bundle_definition, jobs_api_settings, load_options, write_bundle
    from lakeloop.errors import LakeloopError

    args = _parser().parse_args(argv)
    # An editable install (./dev/setup.sh) lives in the checkout; an installed wheel does not.
    repo = (args.repo or (REPO_ROOT if (REPO_ROOT / "jobs").is_dir() else Path.cwd())).resolve()
    try:
        profile = load_profile_from(args, spark_conf=args.spark_conf, conf_dir=repo / "conf", repo_root=repo)
        options = load_options(args.options)
        if args.format == "yaml":
            out = args.out or repo / "build" / "databricks" / "databricks.yml"
            bundle = bundle_definition(profile, options, args.overrides, out.resolve().parent, repo)
        else:
            out = args.out or repo / "build" / "databricks" / "jobs"
            jobs = jobs_api_settings(profile, options, args.overrides, repo)
    except LakeloopError as exc:
        print(f"lakeloop databricks: {exc}", file=sys.stderr)
        return 2
    if args.format == "yaml":
        write_bundle(bundle, out, profile)
        print(f"wrote {out}: {len(bundle['resources']['jobs'])} jobs (check them: databricks bundle validate)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for key, job in jobs.items():
            (out / f"{key}.json").write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {len(jobs)} Jobs API settings files to {out} (databricks jobs create --json @FILE)")
    return 0

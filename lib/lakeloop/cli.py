"""The ``lakeloop`` command of the installed wheel: one entry point for the library's tools.

    lakeloop show [--profile P] [--set k=v ...]    what the lake holds (tables, quarantine reasons, models)
    lakeloop maintain [--profile P] [--set k=v ...]    OPTIMIZE + VACUUM the tables, drop old training sets (lakeloop.maintenance)
    lakeloop report [JOB|RUN_ID] [--open]          a run's HTML page, drawn from its report (lakeloop.pages)
    lakeloop databricks bundle ...                 job definitions for Databricks (lakeloop.deploy.databricks)
    lakeloop airflow dag [--profile P] ...         an Airflow DAG for scheduled scoring (lakeloop.deploy.airflow)
    lakeloop jars resolve|list ...                 the profiles' JVM packages (lakeloop.runtime.jars)
    lakeloop registry list|show|compare|promote|rollback   model versions and aliases (lakeloop.promotion)
    lakeloop train-rank --plan FILE                one training process without Spark (lakeloop.training.rank)

``lakeloop COMMAND --help`` describes each. The Spark jobs themselves are files in the
checkout's ``jobs/`` (not in the wheel) and run through ``./spark-submit.sh`` or as
Databricks tasks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Command -> module with a main(argv) -> int; imported only when run, so the command starts light.
MODULE_COMMANDS: dict[str, str] = {
    "airflow": "lakeloop.deploy.airflow",
    "databricks": "lakeloop.deploy.databricks",
    "jars": "lakeloop.runtime.jars",
    "registry": "lakeloop.promotion",
    "report": "lakeloop.pages",
    "train-rank": "lakeloop.training.rank",
}
COMMANDS = ("show", "maintain", *MODULE_COMMANDS)


def _session_command(command: str, description: str, argv: Sequence[str]):
    """Parse ``--profile``/``--set``, load the profile and start a session; ``None`` (after saying why) if either fails."""
    from lakeloop.config import load_profile
    from lakeloop.errors import LakeloopError
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(prog=f"lakeloop {command}", description=description)
    parser.add_argument("--profile", default="local", help="profile name in conf/ or a YAML path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile setting (repeatable)")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile, args.overrides)
        return profile, build_session(profile, app_name=f"lakeloop-{command}")
    except LakeloopError as exc:
        print(f"lakeloop {command}: {exc}", file=sys.stderr)
        return None


def show(argv: Sequence[str]) -> int:
    """``lakeloop show``: print :func:`lakeloop.summary.show_lake` for a profile; exit 2 for a bad profile."""
    from lakeloop.summary import show_lake

    started = _session_command("show", "Print what the lake's tables hold.", argv)
    if started is None:
        return 2
    profile, spark = started
    print(show_lake(spark, profile))
    return 0


def maintain(argv: Sequence[str]) -> int:
    """``lakeloop maintain``: :func:`lakeloop.maintenance.maintain_lake`, its counts and details printed as JSON."""
    import json

    from lakeloop.maintenance import maintain_lake

    started = _session_command("maintain", "Compact and vacuum the lake's tables; drop old training sets, "
                                           "stale checkpoints and crashed publishes.", argv)
    if started is None:
        return 2
    profile, spark = started
    report = maintain_lake(spark, profile)
    print(json.dumps({"counts": report.counts, **report.details}, indent=2, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lakeloop COMMAND [ARGS]``; exit code 2 for an unknown command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("show", "maintain"):
        return (show if command == "show" else maintain)(rest)
    if command not in MODULE_COMMANDS:
        print(f"lakeloop: unknown command {command!r}; the commands are: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(MODULE_COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

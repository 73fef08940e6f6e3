"""The ``lakeloop`` command of the installed wheel: one entry point for the library's tools.

    lakeloop show [--profile P] [--set k=v ...]        what the lake holds (tables, quarantine reasons, models)
    lakeloop lineage (--image-id ID | --path URI | --table T --key K)   where one record is, which models saw it
    lakeloop forget (--image-id ID | --path URI | --table T --key K) [--dry-run]   erase one record everywhere
    lakeloop maintain [--profile P] [--set k=v ...]    OPTIMIZE + VACUUM the tables, drop old training sets
    lakeloop report [JOB|RUN_ID] [--open]              a run's HTML page, drawn from its report
    lakeloop databricks bundle --profile databricks    job definitions for Databricks
    lakeloop airflow dag --profile yarn ...            an Airflow DAG for scheduled scoring
    lakeloop jars resolve|list|archive ...             the profiles' JVM packages and the driver's class archive
    lakeloop registry list|show|compare|promote|rollback   model versions and aliases
    lakeloop train-rank --plan FILE                    one training process without Spark

``lakeloop COMMAND --help`` describes each; every command takes ``--profile`` (default: local) and
``--set`` the same way (:mod:`lakeloop.cli.common`). Each command group's parser is a module of this
package; the library modules it calls are plain functions. The Spark jobs themselves are files in the
checkout's ``jobs/`` (not in the wheel) and run through ``./spark-submit.sh`` or as
Databricks tasks.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# Command -> "module:function" taking argv and returning the exit code; imported only when run, so the
# command starts light. Each module is this package's parser of one command group.
COMMAND_FUNCTIONS: dict[str, str] = {
    "show": "lakeloop.cli.lake:show",
    "lineage": "lakeloop.cli.lake:lineage",
    "forget": "lakeloop.cli.lake:forget",
    "maintain": "lakeloop.cli.lake:maintain",
    "airflow": "lakeloop.cli.airflow:main",
    "databricks": "lakeloop.cli.databricks:main",
    "jars": "lakeloop.cli.jars:main",
    "registry": "lakeloop.cli.registry:command",
    "report": "lakeloop.cli.report:main",
    "train-rank": "lakeloop.cli.train_rank:main",
}
COMMANDS = tuple(COMMAND_FUNCTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lakeloop COMMAND [ARGS]``; exit code 2 for an unknown command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMAND_FUNCTIONS:
        print(f"lakeloop: unknown command {command!r}; the commands are: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, function = COMMAND_FUNCTIONS[command].split(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


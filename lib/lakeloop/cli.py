"""The ``lakeloop`` command of the installed wheel: one entry point for the library's tools.

    lakeloop databricks bundle ...   job definitions for Databricks (lakeloop.databricks)
    lakeloop demo write|show ...     the demo raw zone, what the lake holds (lakeloop.demo)
    lakeloop jars resolve|list ...   the profiles' JVM packages (lakeloop.jars)
    lakeloop train-rank --plan FILE  one training process without Spark (lakeloop.train_rank)

Each is the same as ``python -m lakeloop.<module>``. The Spark jobs themselves are files in
the checkout's ``jobs/`` (not in the wheel) and run through ``./spark-submit.sh`` or as
Databricks tasks.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# Command -> module with a main(argv) -> int; imported only when run, so the command starts light.
COMMANDS: dict[str, str] = {
    "databricks": "lakeloop.databricks",
    "demo": "lakeloop.demo",
    "jars": "lakeloop.jars",
    "train-rank": "lakeloop.train_rank",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lakeloop COMMAND [ARGS]``; exit code 2 for an unknown command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"lakeloop: unknown command {command!r}; the commands are: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``lakeloop show`` and ``lakeloop maintain``: what the lake holds, and its housekeeping."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from


def _session_command(command: str, description: str, argv: Sequence[str]):
    """Parse ``--profile``/``--set``, load the profile and start a session; ``None`` (after saying why) if either fails."""
    from lakeloop.errors import LakeloopError
    from lakeloop.runtime.session import build_session

    parser = add_profile_arguments(argparse.ArgumentParser(prog=f"lakeloop {command}", description=description))
    args = parser.parse_args(argv)
    try:
        profile = load_profile_from(args)
        return profile, build_session(profile, app_name=f"lakeloop-{command}")
    except LakeloopError as exc:
        print(f"lakeloop {command}: {exc}", file=sys.stderr)
        return None


def show(argv: Sequence[str]) -> int:
    """``lakeloop show``: print :func:`lakeloop.ops.summary.show_lake` for a profile; exit 2 for a bad profile."""
    from lakeloop.ops.summary import show_lake

    started = _session_command("show", "Print what the lake's tables hold.", argv)
    if started is None:
        return 2
    profile, spark = started
    print(show_lake(spark, profile))
    return 0


def maintain(argv: Sequence[str]) -> int:
    """``lakeloop maintain``: :func:`lakeloop.ops.maintenance.maintain_lake`, its counts and details printed as JSON."""
    import json

    from lakeloop.ops.maintenance import maintain_lake

    started = _session_command("maintain", "Compact and vacuum the lake's tables; drop old training sets, "
                                           "stale checkpoints and crashed publishes.", argv)
    if started is None:
        return 2
    profile, spark = started
    report = maintain_lake(spark, profile)
    print(json.dumps({"counts": report.counts, **report.details}, indent=2, default=str))
    return 0

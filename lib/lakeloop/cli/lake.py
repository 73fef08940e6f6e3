"""``lakeloop show``, ``lakeloop lineage`` and ``lakeloop maintain``: what the lake holds, where
one record is, and the lake's housekeeping."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from


def _session_command(command: str, description: str, argv: Sequence[str],
                     parser: argparse.ArgumentParser | None = None):
    """Parse ``--profile``/``--set`` (and ``parser``'s own arguments), load the profile and start a
    session; ``None`` (after saying why) if either fails, else (profile, session, arguments)."""
    from lakeloop.errors import LakeloopError
    from lakeloop.runtime.session import build_session

    parser = add_profile_arguments(parser or argparse.ArgumentParser(prog=f"lakeloop {command}",
                                                                     description=description))
    args = parser.parse_args(argv)
    try:
        profile = load_profile_from(args)
        return profile, build_session(profile, app_name=f"lakeloop-{command}"), args
    except LakeloopError as exc:
        print(f"lakeloop {command}: {exc}", file=sys.stderr)
        return None


def show(argv: Sequence[str]) -> int:
    """``lakeloop show``: print :func:`lakeloop.ops.summary.show_lake` for a profile; exit 2 for a bad profile."""
    from lakeloop.ops.summary import show_lake

    started = _session_command("show", "Print what the lake's tables hold.", argv)
    if started is None:
        return 2
    profile, spark, _ = started
    print(show_lake(spark, profile))
    return 0


def _record_command(command: str, description: str, argv: Sequence[str], on_image, on_row,
                    dry_run: bool = False) -> int:
    """A command about one record (``--image-id`` | ``--path`` | ``--table`` with ``--key``): ``on_image(spark,
    profile, args)`` or ``on_row(...)`` gives the answer (``as_dict``, ``text``, ``found``), printed (``--json``:
    as JSON); exit 2 for a bad profile or record, 1 when the lake holds nothing of it."""
    import json

    from lakeloop.errors import LakeloopError

    parser = argparse.ArgumentParser(prog=f"lakeloop {command}", description=description)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--image-id", help="an image's id (the SHA-256 of its bytes, bronze.images.image_id)")
    which.add_argument("--path", help="the URI an image file was read from")
    which.add_argument("--table", help="an ingested table's name (ingest_tables.tables); with --key")
    parser.add_argument("--key", help="with --table: the row's key, K or col=value,col=value")
    if dry_run:
        parser.add_argument("--dry-run", action="store_true", help="say what would be erased; change nothing")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    started = _session_command(command, description, argv, parser)
    if started is None:
        return 2
    profile, spark, args = started
    if args.table and not args.key:
        parser.error("--table needs --key (the row's key, K or col=value,col=value)")
    try:
        answer = (on_row if args.table else on_image)(spark, profile, args)
    except LakeloopError as exc:
        print(f"lakeloop {command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer.as_dict(), indent=2, default=str) if args.json else answer.text())
    return 0 if answer.found else 1


def lineage(argv: Sequence[str]) -> int:
    """``lakeloop lineage``: :func:`lakeloop.ops.lineage.image_lineage` or ``table_lineage``."""
    from lakeloop.ops.lineage import image_lineage, table_lineage

    return _record_command(
        "lineage", "Where one record is in the lake (every table and training set), and which model versions "
                   "were trained or tested on it.", argv,
        lambda spark, profile, a: image_lineage(spark, profile, image_id=a.image_id, path=a.path),
        lambda spark, profile, a: table_lineage(spark, profile, a.table, a.key))


def forget(argv: Sequence[str]) -> int:
    """``lakeloop forget``: :func:`lakeloop.ops.forget.forget_image` or ``forget_table_row``."""
    from lakeloop.ops.forget import forget_image, forget_table_row

    return _record_command(
        "forget", "Erase one record from the lake: delete it from every table, retire the training sets that hold "
                  "it, mark the model versions that saw it, VACUUM the tables it was in (retention: "
                  "maintain.vacuum_retention_hours), and keep a tombstone so that no ingestion takes it back in.",
        argv,
        lambda spark, profile, a: forget_image(spark, profile, image_id=a.image_id, path=a.path, dry_run=a.dry_run),
        lambda spark, profile, a: forget_table_row(spark, profile, a.table, a.key, dry_run=a.dry_run),
        dry_run=True)


def maintain(argv: Sequence[str]) -> int:
    """``lakeloop maintain``: :func:`lakeloop.ops.maintenance.maintain_lake`, its counts and details printed as JSON."""
    import json

    from lakeloop.ops.maintenance import maintain_lake

    started = _session_command("maintain", "Compact and vacuum the lake's tables; drop old training sets, "
                                           "stale checkpoints and crashed publishes.", argv)
    if started is None:
        return 2
    profile, spark, _ = started
    report = maintain_lake(spark, profile)
    print(json.dumps({"counts": report.counts, **report.details}, indent=2, default=str))
    return 0

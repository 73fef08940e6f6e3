"""``lakeloop registry list|show|compare|promote|rollback``: model versions and their aliases, through
the gate of :mod:`lakeloop.ops.promotion`.

    lakeloop registry list [--profile P]                      models, versions, aliases, test figures
    lakeloop registry show NAME[:VERSION|@ALIAS]              one version's metadata
    lakeloop registry compare NAME:A NAME[:B|@ALIAS]          two versions' test figures side by side
    lakeloop registry promote NAME:VERSION [--force] --reason TEXT   through the gate (promote.*)
    lakeloop registry rollback NAME --reason TEXT             the alias back to its previous holder
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from
from lakeloop.config import Profile
from lakeloop.errors import LakeloopError, PromotionRefused, SetupError
from lakeloop.layout import parse_model_ref
from lakeloop.ops.promotion import (
    Evaluations,
    compare_versions,
    list_lines,
    promote,
    read_evaluations,
    rollback,
)
from lakeloop.registry import ModelVersion, Registry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _resolve(registry: Registry, text: str) -> ModelVersion:
    name, ref = parse_model_ref(text)
    return registry.resolve(name, ref)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakeloop registry", description=__doc__.splitlines()[0])
    add_profile_arguments(parser, set_help="override a profile setting, e.g. promote.margin=0.01 (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="models, versions, aliases, test figures")
    commands.add_parser("show", help="one version's metadata and its alias log").add_argument("ref")
    compare = commands.add_parser("compare", help="two versions' test figures side by side")
    compare.add_argument("challenger", help="NAME:VERSION")
    compare.add_argument("champion", nargs="?", help="NAME:VERSION or NAME@ALIAS (default: the promote.alias holder)")
    for command in ("promote", "rollback"):
        sub = commands.add_parser(command, help=f"{command} an alias (recorded in the alias log)")
        sub.add_argument("ref", help="NAME:VERSION" if command == "promote" else "NAME")
        sub.add_argument("--alias", help="the alias (default: promote.alias)")
        sub.add_argument("--reason", required=True, help="why: kept in the alias log")
        if command == "promote":
            sub.add_argument("--force", action="store_true", help="promote even if the gate refuses (recorded)")
    return parser


def _evaluations(profile: Profile, command: str,
                 open_session: "Callable[[Profile], SparkSession] | None") -> Evaluations:
    """gold.model_evaluations of the profile's lake, read through ``open_session``'s session (the
    ``lakeloop`` command's), else the active one (a notebook's, a test's)."""
    if open_session is not None:
        return read_evaluations(open_session(profile), profile.lake_root)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise SetupError(f"registry {command} reads the versions' figures from gold.model_evaluations and needs a "
                         f"Spark session: call lakeloop.cli.registry.main(argv, open_session=build_session)")
    return read_evaluations(spark, profile.lake_root)


def _run(args: argparse.Namespace, open_session: "Callable[[Profile], SparkSession] | None" = None) -> Any:
    from dataclasses import replace

    profile = load_profile_from(args)
    registry = Registry.for_profile(profile)
    cfg = replace(profile.promote, alias=getattr(args, "alias", None) or profile.promote.alias)
    if args.command == "list":
        return "\n".join(list_lines(registry))
    if args.command == "show":
        version = _resolve(registry, args.ref)
        return {"version": version.uri, "metadata": registry.read_metadata(version),
                "alias_log": registry.alias_log(version.name)}
    if args.command == "compare":
        challenger = _resolve(registry, args.challenger)
        if args.champion:
            champion: ModelVersion | None = _resolve(registry, args.champion)
        else:
            holder = registry.list_aliases(challenger.name).get(cfg.alias)
            champion = registry.resolve(challenger.name, holder) if holder is not None else None
        return compare_versions(registry, champion, challenger, cfg, _evaluations(profile, "compare", open_session))
    actor = getpass.getuser()  # the person at the command line, for the log
    if args.command == "promote":
        name, ref = parse_model_ref(args.ref)
        return promote(registry, name, registry.resolve(name, ref).version, cfg,
                       _evaluations(profile, "promote", open_session), reason=args.reason, actor=actor,
                       force=args.force)
    return rollback(registry, args.ref, cfg.alias, reason=args.reason, actor=actor)


def main(argv: Sequence[str] | None = None,
         open_session: "Callable[[Profile], SparkSession] | None" = None) -> int:
    """``lakeloop registry ...``; exit 1 when the gate refuses, 2 for a bad reference or profile.
    ``open_session``: a profile -> its Spark session, for ``compare`` and ``promote`` (else the active one)."""
    args = _parser().parse_args(argv)
    try:
        out = _run(args, open_session)
    except PromotionRefused as exc:
        print(f"lakeloop registry {args.command}: refused: {exc}", file=sys.stderr)
        return 1
    except LakeloopError as exc:
        print(f"lakeloop registry {args.command}: {exc}", file=sys.stderr)
        return 2
    print(out if isinstance(out, str) else json.dumps(out, indent=2, default=str))
    return 0



def command(argv: Sequence[str]) -> int:
    """``lakeloop registry ...`` from the command line: ``compare`` and ``promote`` start the profile's session."""
    from lakeloop.runtime.session import build_session

    return main(argv, open_session=lambda profile: build_session(profile, app_name="lakeloop-registry"))

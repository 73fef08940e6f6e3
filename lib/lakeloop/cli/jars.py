"""``lakeloop jars resolve|list|archive``: the profiles' JVM packages and the driver's class archive.

    lakeloop jars resolve [--profile P ...]            fetch the packages into the cache (the setup runs it)
    lakeloop jars list [--profile P ...]               print the cached jars' paths
    lakeloop jars archive [--profile P ...] [--force]  write the JVM class archive a local driver starts from

The work is :mod:`lakeloop.runtime.jars` and :mod:`lakeloop.runtime.class_archive`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from, profile_names

HELP = {"resolve": "fetch into the cache", "list": "print cached jar paths",
        "archive": "write the JVM class archive a local driver starts from (jvm.class_archive)"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakeloop jars", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in HELP.items():
        command = add_profile_arguments(sub.add_parser(name, help=text), repeatable=True)
        if name == "archive":
            command.add_argument("--force", action="store_true", help="write it again even if it exists")
    return parser


def _archive(args: argparse.Namespace) -> int:
    from lakeloop.errors import LakeloopError
    from lakeloop.runtime.class_archive import write_archive

    for name in profile_names(args):
        try:
            archive = write_archive(load_profile_from(args, name=name), args.force)
        except LakeloopError as exc:
            print(f"class archive for {name}: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {archive or 'no class archive (jvm.class_archive is false)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from lakeloop.runtime.jars import resolve, resolved_jars

    args = _parser().parse_args(argv)
    if args.command == "archive":
        return _archive(args)
    for name in profile_names(args):
        jvm = load_profile_from(args, name=name).jvm
        for jar in resolve(jvm) if args.command == "resolve" else resolved_jars(jvm):
            print(jar)
    return 0

"""What every command line of lakeloop shares: the profile arguments and the profile they load.

One definition of ``--profile`` (default :data:`DEFAULT_PROFILE`) and ``--set KEY=VALUE``, used by the
``lakeloop`` commands and by the jobs' parser (:mod:`lakeloop.cli.jobs`), so a profile is named and
overridden the same way everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from lakeloop.config import Profile

DEFAULT_PROFILE = "local"


def add_profile_arguments(parser: argparse.ArgumentParser, *, repeatable: bool = False,
                          set_help: str = "override a profile setting (repeatable)") -> argparse.ArgumentParser:
    """Add ``--profile`` (default ``local``; ``repeatable``: one or more, each a run of the command)
    and ``--set KEY=VALUE`` (repeatable) to ``parser``; return it."""
    if repeatable:
        kind = dict(action="append", default=None,
                    help=f"profile name in conf/ or a YAML path (repeatable; default: {DEFAULT_PROFILE})")
    else:
        kind = dict(default=DEFAULT_PROFILE,
                    help=f"profile name in conf/ or a YAML path (default: {DEFAULT_PROFILE})")
    parser.add_argument("--profile", **kind)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    return parser


def profile_names(args: argparse.Namespace) -> list[str]:
    """The profiles a parsed command names: ``--profile`` once or more, else the default."""
    names = args.profile if isinstance(args.profile, list) else [args.profile] if args.profile else []
    return names or [DEFAULT_PROFILE]


def load_profile_from(args: argparse.Namespace, extra: Iterable[tuple[str, object]] = (),
                      name: str | None = None, spark_conf: Iterable[str] = (),
                      conf_dir: Path | None = None, repo_root: Path | None = None) -> "Profile":
    """The typed :class:`~lakeloop.config.Profile` the parsed ``--profile``/``--set`` name (``name``:
    one of a repeatable ``--profile``), with ``extra`` overrides after ``--set``'s."""
    from lakeloop.config import load_profile

    kwargs = {"conf_dir": conf_dir} if conf_dir is not None else {}
    return load_profile(name or profile_names(args)[0], [*args.overrides, *extra], list(spark_conf),
                        repo_root=repo_root, **kwargs)

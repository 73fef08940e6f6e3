"""Champion and challenger: which registered version an alias (``production``) serves, moved
only through a gate, every move recorded, and a way back. No Spark: it reads the registry.

    lakeloop registry list [--profile P]                      models, versions, aliases, test figures
    lakeloop registry show NAME[:VERSION|@ALIAS]              one version's metadata
    lakeloop registry compare NAME:A NAME[:B|@ALIAS]          two versions' test figures side by side
    lakeloop registry promote NAME:VERSION [--force] --reason TEXT   through the gate (promote.*)
    lakeloop registry rollback NAME --reason TEXT             the alias back to its previous holder

The gate compares the figures each version recorded on its test split when it was trained. They
are comparable only when both were trained from the same ``silver.features`` version with the
same preprocessing (the split of a row is a function of its id, so the same table version means
the same test rows); otherwise the gate refuses, and ``--force`` (recorded) overrides it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any, Sequence

from lakeloop.config import PromoteConfig, load_profile
from lakeloop.errors import LakeloopError, PromotionRefused
from lakeloop.layout import parse_model_ref
from lakeloop.models import model_label
from lakeloop.registry import ModelVersion, Registry


def test_figure(metadata: dict[str, Any], metric: str) -> float | None:
    """The ``metric`` a version recorded on its test split (``metrics.test``; older versions: ``test_accuracy``)."""
    metrics = metadata.get("metrics") or {}
    value = (metrics.get("test") or {}).get(metric)
    if value is None and metric == "accuracy":
        value = metrics.get("test_accuracy")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def test_split_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a version's test split was drawn from: the features table, its Delta version, the preprocessing."""
    features = metadata.get("features") or {}
    return {"table": features.get("table"), "delta_version": features.get("delta_version"),
            "preprocess": metadata.get("preprocess")}


def compare_versions(registry: Registry, champion: ModelVersion | None, challenger: ModelVersion,
                     cfg: PromoteConfig) -> dict[str, Any]:
    """The two versions' test figures side by side, and whether the challenger beats the champion
    by more than ``cfg.margin`` on ``cfg.metric`` over the same test split."""
    new = registry.read_metadata(challenger)
    row: dict[str, Any] = {"metric": cfg.metric, "lower_is_better": cfg.lower_is_better, "margin": cfg.margin,
                           "challenger": {"version": challenger.version, "value": test_figure(new, cfg.metric),
                                          "test_split": test_split_of(new)}}
    if champion is None:
        row.update(champion=None, same_test_split=None, improvement=None, beats=True,
                   why=f"no version holds {cfg.alias!r} yet")
        return row
    old = registry.read_metadata(champion)
    row["champion"] = {"version": champion.version, "value": test_figure(old, cfg.metric),
                       "test_split": test_split_of(old)}
    same = test_split_of(old) == test_split_of(new)
    a, b = row["champion"]["value"], row["challenger"]["value"]
    if a is None or b is None:
        missing = [v for v, x in ((champion.version, a), (challenger.version, b)) if x is None]
        row.update(same_test_split=same, improvement=None, beats=False,
                   why=f"version(s) {missing} recorded no test {cfg.metric!r}")
        return row
    improvement = (a - b) if cfg.lower_is_better else (b - a)
    beats = same and improvement > cfg.margin
    if not same:
        why = (f"not the same test split: version {champion.version} was tested on {test_split_of(old)['table']} "
               f"v{test_split_of(old)['delta_version']}, version {challenger.version} on "
               f"{test_split_of(new)['table']} v{test_split_of(new)['delta_version']}; retrain the champion on the "
               f"same features version to compare them")
    else:
        why = (f"test {cfg.metric} {b:.4f} vs {a:.4f}: {'+' if improvement >= 0 else ''}{improvement:.4f}, "
               f"{'more' if beats else 'not more'} than the margin {cfg.margin}")
    row.update(same_test_split=same, improvement=improvement, beats=beats, why=why)
    return row


def promote(registry: Registry, name: str, version: int, cfg: PromoteConfig, *, reason: str,
            actor: str | None = None, force: bool = False) -> dict[str, Any]:
    """Move ``cfg.alias`` of ``name`` to ``version`` if it beats the current holder (or ``force``);
    returns the comparison with ``promoted`` and the log entry's fields.

    Raises
    ------
    PromotionRefused
        the challenger does not beat the holder by more than the margin, or the two were not
        tested on the same split; the message gives the figures.
    ModelNotFound
        ``version`` is not committed.
    """
    challenger = registry.resolve(name, version)
    current = registry.list_aliases(name).get(cfg.alias)
    if current == challenger.version:
        return {"promoted": False, "why": f"{name}:{current} already holds {cfg.alias!r}; nothing moved"}
    champion = registry.resolve(name, current) if current is not None else None
    comparison = compare_versions(registry, champion, challenger, cfg)
    if not comparison["beats"] and not force:
        raise PromotionRefused(
            f"{name}:{challenger.version} is not promoted to {cfg.alias!r} (held by {name}:{current}): "
            f"{comparison['why']}. Promote a better version, or pass --force with a --reason (recorded)"
        )
    registry.set_alias(name, cfg.alias, challenger.version, action="promote", reason=reason, actor=actor,
                       forced=force and not comparison["beats"], evidence=comparison)
    return {**comparison, "promoted": True, "alias": cfg.alias, "previous": current}


def rollback(registry: Registry, name: str, alias: str, *, reason: str, actor: str | None = None) -> dict[str, Any]:
    """Point ``alias`` back at the version that held it before the current one was promoted (from the alias log).

    Raises
    ------
    PromotionRefused
        the log has no earlier holder for the current version.
    """
    current = registry.list_aliases(name).get(alias)
    # The move that made the current version the holder; a rollback's own entry is not one (so a
    # second rollback walks further back instead of undoing the first).
    moves = [e for e in registry.alias_log(name, alias)
             if e.get("version") == current and e.get("action") != "rollback"]
    previous = moves[-1].get("previous") if moves else None
    if current is None or previous is None:
        raise PromotionRefused(
            f"{name}@{alias} has no earlier holder to go back to (it points to "
            f"{current if current is not None else 'nothing'}; see lakeloop registry show {name}@{alias})"
        )
    registry.set_alias(name, alias, previous, action="rollback", reason=reason, actor=actor,
                       evidence={"from_version": current})
    return {"alias": alias, "from": current, "to": previous}


def list_lines(registry: Registry) -> list[str]:
    """One line per committed version: its aliases and test figures."""
    lines = []
    for name in registry.list_models():
        aliases = registry.list_aliases(name)
        for number in registry.list_versions(name):
            metadata = registry.read_metadata(registry.resolve(name, number))
            held = ",".join(sorted(a for a, v in aliases.items() if v == number))
            values = {m: test_figure(metadata, m) for m in ("accuracy", "macro_f1")}
            figures = " ".join(f"{m}={v:.4f}" for m, v in values.items() if v is not None)
            lines.append(f"{name}:{number:<4} {model_label(metadata):<22} {('@' + held) if held else '':<22} test {figures or '-'}")
    return lines or [f"no models under {registry.root}"]


def _resolve(registry: Registry, text: str) -> ModelVersion:
    name, ref = parse_model_ref(text)
    return registry.resolve(name, ref)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakeloop registry", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local", help="profile name in conf/ or a YAML path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile setting, e.g. promote.margin=0.01 (repeatable)")
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


def _run(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    profile = load_profile(args.profile, args.overrides)
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
        return compare_versions(registry, champion, challenger, cfg)
    actor = getpass.getuser()  # the person at the command line, for the log
    if args.command == "promote":
        name, ref = parse_model_ref(args.ref)
        return promote(registry, name, registry.resolve(name, ref).version, cfg, reason=args.reason, actor=actor,
                       force=args.force)
    return rollback(registry, args.ref, cfg.alias, reason=args.reason, actor=actor)


def main(argv: Sequence[str] | None = None) -> int:
    """``lakeloop registry ...``; exit 1 when the gate refuses, 2 for a bad reference or profile."""
    args = _parser().parse_args(argv)
    try:
        out = _run(args)
    except PromotionRefused as exc:
        print(f"lakeloop registry {args.command}: refused: {exc}", file=sys.stderr)
        return 1
    except LakeloopError as exc:
        print(f"lakeloop registry {args.command}: {exc}", file=sys.stderr)
        return 2
    print(out if isinstance(out, str) else json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

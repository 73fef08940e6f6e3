"""Champion and challenger: which registered version an alias (``production``) serves, moved
only through a gate, every move recorded, and a way back. It reads the registry, and the gate
the evaluation's figures in ``gold.model_evaluations``.

    lakeloop registry list [--profile P]                      models, versions, aliases, test figures (lakeloop.cli.registry)
    lakeloop registry show NAME[:VERSION|@ALIAS]              one version's metadata
    lakeloop registry compare NAME:A NAME[:B|@ALIAS]          two versions' test figures side by side
    lakeloop registry promote NAME:VERSION [--force] --reason TEXT   through the gate (promote.*)
    lakeloop registry rollback NAME --reason TEXT             the alias back to its previous holder

The gate compares the evaluation's figures of each version on its test split: the rows of
``gold.model_evaluations`` that ``./spark-submit.sh evaluate --model NAME:VERSION`` writes, the
one computation of a version's accuracy (a version without one is refused, naming that command).
They are comparable only when both were trained from the same ``silver.features`` version with the
same preprocessing (the split of a row is a function of its id, so the same table version means
the same test rows); otherwise the gate refuses, and ``--force`` (recorded) overrides it. ``list``
and ``show`` read only the registry (the figures training recorded); ``compare`` and ``promote``
read gold.model_evaluations with Spark.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Mapping

from lakeloop.config import PromoteConfig
from lakeloop.errors import PromotionRefused
from lakeloop.io import delta
from lakeloop.layout import LakeLayout
from lakeloop.models import model_label
from lakeloop.registry import ModelVersion, Registry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The split the gate compares, and the columns of gold.model_evaluations it can compare on (the
# ``evaluation`` JSON's other numeric figures, e.g. macro_precision, can be named too).
GATE_SPLIT = "test"
EVALUATION_COLUMNS = ("rows", "accuracy", "macro_f1", "top_k_accuracy", "expected_calibration_error",
                      "largest_group_gap")
# A version -> its row of gold.model_evaluations for the gate's split, or None when it has none.
Evaluations = Callable[[ModelVersion], "Mapping[str, Any] | None"]


def read_evaluations(spark: "SparkSession", lake_root: str, split: str = GATE_SPLIT) -> Evaluations:
    """The rows of ``gold.model_evaluations`` for ``split`` (one per evaluated version, read once),
    as a lookup: version -> its figures (the table's columns, and the ``evaluation`` JSON's numbers)."""
    uri = LakeLayout(lake_root).model_evaluations
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if delta.is_delta_table(spark, uri):
        from pyspark.sql import functions as F

        for r in delta.read_table(spark, uri).where(F.col("split") == split).collect():
            row = r.asDict()
            figures = json.loads(row.pop("evaluation", None) or "{}")
            extra = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            rows[(row["model_name"], int(row["model_version"]))] = {**extra, **row}
    return lambda version: rows.get((version.name, version.version))


def test_figure(metadata: dict[str, Any], metric: str) -> float | None:
    """The ``metric`` a version recorded on its test split when it was trained (``metrics.test``;
    older versions: ``test_accuracy``): what ``registry list`` shows; the gate reads the evaluation's."""
    metrics = metadata.get("metrics") or {}
    value = (metrics.get("test") or {}).get(metric)
    if value is None and metric == "accuracy":
        value = metrics.get("test_accuracy")
    return _number(value)


def evaluated_figure(evaluation: Mapping[str, Any] | None, metric: str) -> float | None:
    """``metric`` of a version's gold.model_evaluations row (None without a row or that figure)."""
    return _number((evaluation or {}).get(metric))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _evaluate_command(version: ModelVersion) -> str:
    return f"./spark-submit.sh evaluate --model {version.name}:{version.version}"


def _side(registry: Registry, version: ModelVersion, evaluations: Evaluations, metric: str) -> dict[str, Any]:
    """One version's side of the comparison: its evaluated figure and the evaluation it came from."""
    metadata, evaluation = registry.read_metadata(version), evaluations(version)
    side: dict[str, Any] = {"version": version.version, "value": evaluated_figure(evaluation, metric),
                            "test_split": test_split_of(metadata), "evaluated": evaluation is not None}
    if evaluation is not None:
        # Kept in the alias log's evidence (JSON): the evaluation's time as text.
        side["evaluation"] = {k: evaluation.get(k) if k != "evaluated_at" else str(evaluation.get(k))
                              for k in ("rows", "run_id", "evaluated_at", "predictions_delta_version")}
    return side


def test_split_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a version's test split was drawn from: the features table, its Delta version, the preprocessing."""
    features = metadata.get("features") or {}
    return {"table": features.get("table"), "delta_version": features.get("delta_version"),
            "preprocess": metadata.get("preprocess")}


def compare_versions(registry: Registry, champion: ModelVersion | None, challenger: ModelVersion,
                     cfg: PromoteConfig, evaluations: Evaluations) -> dict[str, Any]:
    """The two versions' evaluated test figures side by side (``evaluations``: their rows of
    gold.model_evaluations, :func:`read_evaluations`), and whether the challenger beats the
    champion by more than ``cfg.margin`` on ``cfg.metric`` over the same test split."""
    row: dict[str, Any] = {"metric": cfg.metric, "lower_is_better": cfg.lower_is_better, "margin": cfg.margin,
                           "split": GATE_SPLIT, "challenger": _side(registry, challenger, evaluations, cfg.metric)}
    sides = [(challenger, row["challenger"])]
    if champion is not None:
        row["champion"] = _side(registry, champion, evaluations, cfg.metric)
        sides.insert(0, (champion, row["champion"]))
    unevaluated = [v for v, side in sides if not side["evaluated"]]
    if unevaluated:
        row.update(same_test_split=None, improvement=None, beats=False, why="; ".join(
            f"{v.name}:{v.version} has no {GATE_SPLIT}-split row in gold.model_evaluations: run "
            f"{_evaluate_command(v)} first" for v in unevaluated))
        return row
    if champion is None:
        row.update(champion=None, same_test_split=None, improvement=None, beats=True,
                   why=f"no version holds {cfg.alias!r} yet")
        return row
    old, new = row["champion"]["test_split"], row["challenger"]["test_split"]
    same = old == new
    a, b = row["champion"]["value"], row["challenger"]["value"]
    if a is None or b is None:
        missing = [v for v, x in ((champion.version, a), (challenger.version, b)) if x is None]
        row.update(same_test_split=same, improvement=None, beats=False,
                   why=f"the evaluation of version(s) {missing} has no {cfg.metric!r} (gold.model_evaluations "
                       f"has {', '.join(EVALUATION_COLUMNS[1:])} and the evaluation's other figures)")
        return row
    improvement = (a - b) if cfg.lower_is_better else (b - a)
    beats = same and improvement > cfg.margin
    if not same:
        why = (f"not the same test split: version {champion.version} was tested on {old['table']} "
               f"v{old['delta_version']}, version {challenger.version} on {new['table']} v{new['delta_version']}; "
               f"retrain the champion on the same features version to compare them")
    else:
        why = (f"test {cfg.metric} {b:.4f} vs {a:.4f}: {'+' if improvement >= 0 else ''}{improvement:.4f}, "
               f"{'more' if beats else 'not more'} than the margin {cfg.margin}")
    row.update(same_test_split=same, improvement=improvement, beats=beats, why=why)
    return row


def promote(registry: Registry, name: str, version: int, cfg: PromoteConfig, evaluations: Evaluations, *,
            reason: str, actor: str | None = None, force: bool = False) -> dict[str, Any]:
    """Move ``cfg.alias`` of ``name`` to ``version`` if its evaluation (``evaluations``: rows of
    gold.model_evaluations, :func:`read_evaluations`) beats the current holder's (or ``force``);
    returns the comparison with ``promoted`` and the log entry's fields.

    Raises
    ------
    PromotionRefused
        the challenger does not beat the holder by more than the margin, the two were not tested
        on the same split, or one of them has no evaluation (the message names the evaluate
        command to run); the message gives the figures.
    ModelNotFound
        ``version`` is not committed.
    """
    challenger = registry.resolve(name, version)
    current = registry.list_aliases(name).get(cfg.alias)
    if current == challenger.version:
        return {"promoted": False, "why": f"{name}:{current} already holds {cfg.alias!r}; nothing moved"}
    champion = registry.resolve(name, current) if current is not None else None
    comparison = compare_versions(registry, champion, challenger, cfg, evaluations)
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

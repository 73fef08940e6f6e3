"""Data quality of ``silver.features``: class balance per split and per group, label coverage.

The figures SageMaker Clarify calls pre-training bias metrics, for the rows a model will be
trained and tested on: how many rows each class has in each split (and the imbalance
ratio, largest over smallest class), what share of rows has a label, and the class
distribution per value of ``quality.group_column`` (for the demo, the table column
``scan_batch``). Thresholds in ``quality.*`` turn a figure into a warning or a failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakeloop.config import QualityConfig
from lakeloop.metrics import imbalance_ratio
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

MAX_GROUPS = 50  # groups listed in a report; more are counted, not listed


def features_quality(features: "DataFrame", group_column: str | None) -> dict[str, Any]:
    """Class counts per split (and per group), label coverage and imbalance ratios of a features table."""
    from pyspark.sql import functions as F

    group = F.col(group_column).cast("string") if group_column else F.lit(None).cast("string")
    counts = features.groupBy("split", "label", group.alias("group")).count().collect()
    by_split: dict[str, dict[str, int]] = {}
    by_group: dict[str, dict[str, int]] = {}
    rows = labelled = 0
    split_rows: dict[str, int] = {}
    for r in counts:
        rows += r["count"]
        split_rows[r["split"]] = split_rows.get(r["split"], 0) + r["count"]
        if r["label"] is None:
            continue
        labelled += r["count"]
        split = by_split.setdefault(r["split"], {})
        split[r["label"]] = split.get(r["label"], 0) + r["count"]
        if group_column:
            per_group = by_group.setdefault("(null)" if r["group"] is None else r["group"], {})
            per_group[r["label"]] = per_group.get(r["label"], 0) + r["count"]
    quality: dict[str, Any] = {
        "rows": rows,
        "labelled": labelled,
        "label_coverage": labelled / rows if rows else None,
        "rows_per_split": dict(sorted(split_rows.items())),
        "class_counts": {s: dict(sorted(c.items())) for s, c in sorted(by_split.items())},
        "imbalance_ratio": {s: imbalance_ratio(c) for s, c in sorted(by_split.items())},
    }
    if group_column:
        listed = dict(sorted(by_group.items())[:MAX_GROUPS])
        quality["groups"] = {"column": group_column, "count": len(by_group),
                             "class_counts": {g: dict(sorted(c.items())) for g, c in listed.items()}}
    return quality


def check_features_quality(report: RunReport, quality: dict[str, Any], cfg: QualityConfig) -> None:
    """Flag the thresholds of ``quality.*`` the figures cross (imbalance on the train split)."""
    fail = cfg.on_violation == "fail"
    ratio = quality["imbalance_ratio"].get("train")
    if cfg.max_class_imbalance is not None and ratio is not None and ratio > cfg.max_class_imbalance:
        counts = quality["class_counts"]["train"]
        largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
        report.flag("max_class_imbalance",
                    f"the train split has {counts[largest]} rows of class {largest!r} but {counts[smallest]} of "
                    f"{smallest!r} (ratio {ratio:.2f}), above quality.max_class_imbalance = "
                    f"{cfg.max_class_imbalance}", fail)
    coverage = quality["label_coverage"]
    if cfg.min_label_coverage is not None and coverage is not None and coverage < cfg.min_label_coverage:
        report.flag("min_label_coverage",
                    f"{quality['labelled']} of {quality['rows']} feature rows have a label ({coverage:.1%}), below "
                    f"quality.min_label_coverage = {cfg.min_label_coverage:.1%}", fail)

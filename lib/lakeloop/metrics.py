"""Evaluation and data-quality arithmetic on small aggregates: no Spark, no plotting.

The jobs aggregate in Spark (a confusion count per (true, predicted) pair, a count per
reliability bin, a count per histogram bin) and hand those few rows here, so the figures
are the same whether they come from a job, a notebook or a test, and cost nothing to
recompute. Everything returns plain dicts and lists that go into a run report or a
Delta row as JSON.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

# Bins of the input-intensity histogram a model's training set is summarised by; the
# scoring job bins its inputs the same way and compares (population stability index).
INTENSITY_BINS = 10
# A bin that is empty on one side would make PSI infinite; this floor is the usual remedy.
_PSI_FLOOR = 1e-4


def confusion_matrix(pairs: Iterable[tuple[str, str, int]], classes: Sequence[str]) -> list[list[int]]:
    """``[true][predicted]`` counts over ``classes`` from ``(true, predicted, count)`` rows;
    pairs naming a class outside ``classes`` are left out (the caller reports them)."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for true, predicted, count in pairs:
        if true in index and predicted in index:
            matrix[index[true]][index[predicted]] += int(count)
    return matrix


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def per_class(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> list[dict[str, object]]:
    """Precision, recall, F1 and support of each class, from a confusion matrix."""
    out = []
    for i, name in enumerate(classes):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else
              (0.0 if support or predicted else None))
        out.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return out


def classification_summary(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> dict[str, object]:
    """Accuracy, macro precision/recall/F1 (over the classes present in the truth) and the per-class table."""
    rows = per_class(matrix, classes)
    total = sum(sum(r) for r in matrix)
    present = [r for r in rows if r["support"]]

    def macro(key: str) -> float | None:
        values = [r[key] for r in present if r[key] is not None]
        return sum(values) / len(values) if values else None

    return {
        "rows": total,
        "accuracy": _ratio(sum(matrix[i][i] for i in range(len(classes))), total),
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "macro_f1": macro("f1"),
        "per_class": rows,
    }


def multilabel_summary(true_pos: Sequence[int], false_pos: Sequence[int], false_neg: Sequence[int],
                       labels: Sequence[str]) -> dict[str, object]:
    """Micro-F1 (over every label decision), macro-F1 (the mean over labels that occur in the truth
    or the predictions) and per-label precision, recall, F1 and support, from per-label counts."""
    rows = []
    for name, tp, fp, fn in zip(labels, true_pos, false_pos, false_neg):
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        rows.append({"label": name, "precision": precision, "recall": recall, "f1": f1, "support": tp + fn})
    tp, fp, fn = sum(true_pos), sum(false_pos), sum(false_neg)
    present = [r["f1"] for r in rows if r["f1"] is not None]
    return {"micro_f1": _ratio(2 * tp, 2 * tp + fp + fn), "macro_f1": sum(present) / len(present) if present else None,
            "per_label": rows}


def regression_summary(rows: int, abs_error: float, squared_error: float, total: float,
                       squares: float) -> dict[str, object]:
    """MAE, RMSE and R² from sums over the rows: |error|, error², the target and the target²."""
    if not rows:
        return {"rows": 0, "mae": None, "rmse": None, "r2": None}
    spread = squares - total * total / rows  # the target's sum of squared deviations
    return {"rows": rows, "mae": abs_error / rows, "rmse": math.sqrt(squared_error / rows),
            "r2": 1.0 - squared_error / spread if spread > 0 else None}


def calibration_table(bins: Iterable[tuple[int, int, float, int]], n_bins: int) -> dict[str, object]:
    """Reliability bins from ``(bin, rows, mean confidence, correct)`` rows, bin = floor(score * n_bins)
    (a score of 1.0 falls in the last bin), and the expected calibration error (ECE)."""
    by_bin = {int(b): (int(n), float(conf), int(ok)) for b, n, conf, ok in bins}
    total = sum(n for n, _, _ in by_bin.values())
    table, ece = [], 0.0
    for b in range(n_bins):
        n, conf, ok = by_bin.get(b, (0, 0.0, 0))
        accuracy = _ratio(ok, n)
        table.append({"bin": b, "lower": b / n_bins, "upper": (b + 1) / n_bins, "rows": n,
                      "confidence": conf if n else None, "accuracy": accuracy})
        if n and total:
            ece += n / total * abs(accuracy - conf)
    return {"bins": table, "expected_calibration_error": ece if total else None}


def group_accuracy(groups: Iterable[tuple[object, int, int]]) -> dict[str, object]:
    """Accuracy per group from ``(group, rows, correct)`` rows, and the largest gap between two groups."""
    table = [{"group": None if g is None else str(g), "rows": int(n), "accuracy": _ratio(int(ok), int(n))}
             for g, n, ok in groups]
    table.sort(key=lambda r: (r["group"] is None, r["group"] or ""))
    measured = [r for r in table if r["accuracy"] is not None]
    gap = None
    if len(measured) >= 2:
        best = max(measured, key=lambda r: r["accuracy"])
        worst = min(measured, key=lambda r: r["accuracy"])
        gap = {"value": best["accuracy"] - worst["accuracy"], "best": best["group"], "worst": worst["group"]}
    return {"groups": table, "largest_gap": gap}


def imbalance_ratio(counts: Mapping[str, int]) -> float | None:
    """Rows of the most common class over rows of the rarest (1.0 is balanced); None under two classes."""
    values = [v for v in counts.values() if v]
    return max(values) / min(values) if len(values) >= 2 else None


def histogram_fractions(counts: Mapping[int, int], n_bins: int = INTENSITY_BINS) -> list[float]:
    """Fractions per bin ``0 .. n_bins-1`` from counts per bin (missing bins are 0)."""
    total = sum(counts.values())
    return [counts.get(b, 0) / total if total else 0.0 for b in range(n_bins)]


def population_stability_index(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins of two distributions (fractions); under 0.1 is
    usually read as no shift, over 0.25 as a large one."""
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs the same bins on both sides, got {len(expected)} and {len(actual)}")
    psi = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, _PSI_FLOOR), max(a, _PSI_FLOOR)
        psi += (a - e) * math.log(a / e)
    return psi

"""Figures of the lake's data and a model's results, as matplotlib figures.

The run pages (:mod:`lakeloop.ops.pages`) embed them as PNG; a notebook shows them as they are
(``display(fig)``, or the figure as a cell's last value). Every function returns a
``matplotlib.figure.Figure`` made without pyplot, so nothing registers a global figure and
nothing needs a display; :func:`png` renders one (Agg). The inputs are the plain lists and
dicts of :mod:`lakeloop.metrics` and the run reports, so a figure can be redrawn from a
report alone.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

THUMBNAIL_MAX_PIXELS = 25_000_000  # never decode more than this for a thumbnail (decompression bombs)


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png(fig: "Figure") -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# The validation figure a training history shows per epoch, by task: the first of these it has.
HEADLINE_METRICS = (("val_accuracy", "accuracy"), ("val_micro_f1", "micro-F1"), ("val_rmse", "RMSE"))


def headline_metric(history: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(history key, name) of the task's validation headline: accuracy, micro-F1 or RMSE."""
    first = history[0] if history else {}
    return next(((k, n) for k, n in HEADLINE_METRICS if k in first), HEADLINE_METRICS[0])


def training_curves(history: Sequence[Mapping[str, Any]]) -> "Figure":
    """Training (and validation) loss and the task's validation headline (:func:`headline_metric`) per
    epoch (two panels), learning rate dashed on the loss panel."""
    fig = _figure(8, 3)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if all(h.get("val_loss") is not None for h in history):
        loss_ax.plot(epochs, [h["val_loss"] for h in history], marker=".", label="validation loss")
        loss_ax.legend(loc="upper right")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training loss")
    if all(h.get("learning_rate") is not None for h in history):
        lr_ax = loss_ax.twinx()
        lr_ax.plot(epochs, [h["learning_rate"] for h in history], color="grey", linestyle="--", label="learning rate")
        lr_ax.set_ylabel("learning rate")
    key, name = headline_metric(history)
    acc_ax.plot(epochs, [h.get(key) for h in history], marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel=name, title=f"validation {name}")
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "confusion matrix") -> "Figure":
    """Counts per (true, predicted) class, the diagonal being the correct predictions."""
    size = max(3.5, 0.45 * len(classes) + 1.5)
    fig = _figure(size + 0.8, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if count > peak / 2 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def reliability(bins: Sequence[Mapping[str, Any]], title: str = "calibration") -> "Figure":
    """Accuracy against confidence per bin (the diagonal is perfect calibration), rows per bin below."""
    fig = _figure(4.5, 4.5)
    ax, count_ax = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    used = [b for b in bins if b["rows"]]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], marker="o")
    ax.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1.02))
    count_ax.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["rows"] for b in bins],
                 width=1 / max(1, len(bins)) * 0.9)
    count_ax.set(xlabel="confidence (top score)", ylabel="rows")
    return fig


def bars(values: Mapping[str, float], title: str, xlabel: str = "", highlight: Sequence[str] = ()) -> "Figure":
    """Horizontal bars, one per key (e.g. seconds per step, quarantined rows per reason)."""
    fig = _figure(6, max(1.6, 0.35 * len(values) + 0.9))
    ax = fig.subplots()
    names = list(values)
    colors = ["tab:red" if n in highlight else "tab:blue" for n in names]
    ax.barh(names, [values[n] for n in names], color=colors)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    return fig


def group_accuracy(groups: Sequence[Mapping[str, Any]], gap: Mapping[str, Any] | None, column: str) -> "Figure":
    """Accuracy per group; the best and the worst group (the largest gap) in red."""
    measured = {str(g["group"]): g["accuracy"] for g in groups if g["accuracy"] is not None}
    title = f"accuracy per {column}"
    if gap:
        title += f" (largest gap {gap['value']:.1%})"
    fig = bars(measured, title, "accuracy", highlight=[gap["best"], gap["worst"]] if gap else ())
    fig.axes[0].set_xlim(0, 1)
    return fig


def class_counts(counts: Mapping[str, Mapping[str, int]], title: str = "rows per class") -> "Figure":
    """Rows per class, one bar group per split (or per group)."""
    import numpy as np

    series = list(counts)
    classes = sorted({c for per in counts.values() for c in per}, key=lambda c: (len(c), c))
    fig = _figure(max(5, 0.5 * len(classes) + 2), 3)
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(classes))
    for i, name in enumerate(series):
        ax.bar(x + i * width, [counts[name].get(c, 0) for c in classes], width, label=name)
    ax.set(xticks=x + width * (len(series) - 1) / 2, xticklabels=classes, ylabel="rows", title=title)
    ax.legend(fontsize=8)
    return fig


def distributions(reference: Sequence[float], current: Sequence[float], title: str,
                  labels: tuple[str, str] = ("training set", "this run")) -> "Figure":
    """Two histograms of the same bins side by side (fractions), e.g. training inputs and scored inputs."""
    import numpy as np

    fig = _figure(6, 3)
    ax = fig.subplots()
    x = np.arange(len(reference))
    ax.bar(x - 0.2, reference, 0.4, label=labels[0])
    ax.bar(x + 0.2, current, 0.4, label=labels[1])
    ax.set(xticks=x, xticklabels=[f"{i / len(x):.1f}" for i in x], xlabel="bin (lower edge)", ylabel="fraction",
           title=title)
    ax.legend(fontsize=8)
    return fig


def image_grid(images: Sequence[Any], titles: Sequence[str] = (), columns: int = 8, size: float = 1.3) -> "Figure":
    """A grid of images (encoded file bytes, a PIL image or an array; ``None`` shows as an empty
    cell), each with its title (e.g. the label, or the reason it was quarantined)."""
    rows = max(1, -(-len(images) // columns))
    fig = _figure(size * min(columns, max(1, len(images))), (size + 0.35) * rows)
    axes = fig.subplots(rows, min(columns, max(1, len(images))), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        shown = as_array(images[k])
        if shown is not None:
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255)
        else:
            ax.text(0.5, 0.5, "cannot\nbe shown", ha="center", va="center", fontsize=7, color="grey",
                    transform=ax.transAxes)
        if k < len(titles):
            ax.set_title(str(titles[k])[:40], fontsize=7)
    return fig


def as_array(image: Any, max_side: int = 256) -> Any:
    """An image as a uint8 array for display, at most ``max_side`` pixels a side; None when it cannot
    be decoded (or holds more than :data:`THUMBNAIL_MAX_PIXELS`, which is never decoded)."""
    import numpy as np
    from PIL import Image

    if image is None:
        return None
    if isinstance(image, np.ndarray):
        return image.squeeze() if image.ndim == 3 and image.shape[-1] == 1 else image
    try:
        img = image if isinstance(image, Image.Image) else Image.open(io.BytesIO(bytes(image)))
        if img.width * img.height > THUMBNAIL_MAX_PIXELS:
            return None
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
        img = img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")
        img.thumbnail((max_side, max_side))
        return np.asarray(img)
    except Exception:  # noqa: BLE001 - an undecodable file is shown as such, not raised
        return None


def pixels_array(pixels: bytes, height: int, width: int, channels: int) -> Any:
    """uint8 H x W x C pixel bytes (silver.features' ``pixels``) as an array to show."""
    import numpy as np

    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, channels)


def thumbnail_png(content: bytes | None, max_side: int = 96) -> bytes | None:
    """A small PNG of an image file, or None when it cannot (or must not) be decoded."""
    from PIL import Image

    shown = as_array(content, max_side)
    if shown is None:
        return None
    buffer = io.BytesIO()
    Image.fromarray(shown).save(buffer, format="PNG")
    return buffer.getvalue()

"""Scoring one batch of images with a loaded model: no Spark, no JVM.

The scoring UDF (:mod:`lakeloop.scoring.udf`), the benchmark's bare loop and a GPU box
without a JVM all run this same code. Two input forms are understood:

* ``pixels`` (``silver.features``): already preprocessed uint8 H x W x C bytes. Only the
  normalisation is applied, with the spec recorded in the *model's* metadata; a row whose
  byte length does not match that spec is refused.
* ``content`` (``bronze.images``, or any binary column of encoded image files): decoded
  and preprocessed with :func:`lakeloop.preprocess.image_to_pixels` and the model's spec,
  exactly as ``silver.features`` was built.

A row that cannot be scored (null, undecodable bytes, wrong size) gets ``error`` (a reason
a person can act on) instead of failing the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from lakeloop.preprocess import PreprocessSpec, image_to_pixels, pixel_means, pixels_to_tensor, stored_image
from lakeloop.tabular import encode_inputs, encoded_columns

if TYPE_CHECKING:
    import numpy as np
    import torch

INPUT_PIXELS = "pixels"
INPUT_CONTENT = "content"
INPUT_KINDS = (INPUT_PIXELS, INPUT_CONTENT)
# The fix an undecodable image's error names (a Kafka message's error names another).
DECODE_FIX = "re-ingest the original file"


def model_spec(metadata: Mapping[str, Any]) -> PreprocessSpec:
    """The preprocessing a model was trained with, from its ``metadata.json``."""
    return PreprocessSpec.from_json(metadata["preprocess"])


def model_label(metadata: Mapping[str, Any]) -> str:
    return f"{metadata.get('name', '?')}:{metadata.get('version', '?')}"


def _prepare(
    inputs: Sequence[bytes | bytearray | memoryview | None], input_kind: str, spec: PreprocessSpec, model: str
) -> tuple[list[bytes], list[int], list[str | None]]:
    """Pixel bytes of the rows that can be scored, their positions, and a reason for each other row."""
    n = len(inputs)
    errors: list[str | None] = [None] * n
    expected = spec.pixel_bytes
    # A model trained on encoded images: silver's stored images are decoded like files; an image file
    # (bronze) is first stored as build_features stores it, so it reaches the model as training's did.
    restore = spec.encoded and input_kind == INPUT_CONTENT
    if spec.encoded and input_kind == INPUT_PIXELS:
        input_kind = INPUT_CONTENT
    if input_kind == INPUT_PIXELS and all(v is not None and len(v) == expected for v in inputs):
        # The common case for silver.features: nothing to refuse, so no per-row bookkeeping.
        return list(inputs), list(range(n)), errors
    pixels: list[bytes] = []
    good: list[int] = []
    for i, value in enumerate(inputs):
        if value is None:
            errors[i] = f"no image: the {input_kind} value is null; fix or remove the row in the input table"
            continue
        if input_kind == INPUT_PIXELS:
            if len(value) != expected:
                errors[i] = (
                    f"pixels hold {len(value)} bytes but model {model} expects {spec.height}x{spec.width}x"
                    f"{spec.channels} = {expected} bytes; rebuild silver.features with the model's preprocessing "
                    f"(features.preprocess) or score the raw images instead (--input images)"
                )
                continue
            pixels.append(bytes(value))
        else:
            try:
                data = stored_image(bytes(value), spec) if restore else bytes(value)
                pixels.append(image_to_pixels(data, spec))
            except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, the row is refused with it
                errors[i] = (
                    f"cannot decode image ({type(exc).__name__}: {exc}); the stored bytes are not an image "
                    f"Pillow can read: {DECODE_FIX}"
                )
                continue
        good.append(i)
    return pixels, good, errors


def score_batch(
    model: "torch.nn.Module",
    metadata: Mapping[str, Any],
    inputs: Sequence[bytes | bytearray | memoryview | None],
    input_kind: str,
    device: "str | torch.device" = "cpu",
    input_means: bool = False,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score one batch of images with a loaded model; runs without Spark.

    Parameters
    ----------
    model : the model in eval mode, already on ``device`` (see :func:`lakeloop.models.load_model`).
    metadata : the version's ``metadata.json``; ``classes`` names the outputs and
        ``preprocess`` is the spec the inputs are prepared with.
    inputs : one value per row: uint8 H x W x C pixel bytes (``input_kind="pixels"``) or
        the bytes of an image file (``"content"``); ``None`` for a missing value.
    input_kind : ``"pixels"`` or ``"content"``.
    device : where the forward pass runs, e.g. ``"cpu"`` or ``"cuda:0"``.
    input_means : also return ``input_mean``, each prepared image's mean intensity (0..1),
        the statistic the scoring job compares with the training set's (drift).
    table : for a model of images and table columns (metadata ``table_inputs``): the raw
        columns it reads, one row per input, in order; encoded as in training.

    Returns
    -------
    pandas.DataFrame
        One row per input, in order, with the task's fields (:data:`TASK_RESULT_SCHEMAS`) and
        ``error`` (null, or why the row could not be scored; the other columns are then null).
        A classifier's: ``label`` (class name), ``label_index``, ``score`` (the top softmax
        probability), ``scores`` (all class probabilities, float64). A multilabel model's:
        ``labels`` (those whose sigmoid reaches the model's ``multilabel_threshold``) and
        ``scores`` per label. A regression model's: ``value``, in the target's own units.

    Raises
    ------
    ValueError
        an unknown ``input_kind``, a model whose outputs do not match its classes, or one
        that reads table columns without ``table`` (or with a ``table`` lacking some). Bad
        rows never raise; they get ``error``.
    """
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"score_batch: input_kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    spec = model_spec(metadata)
    pixels, good, errors = _prepare(inputs, input_kind, spec, model_label(metadata))
    extra = _table_inputs(metadata, table, len(inputs))
    outputs = _outputs(model, metadata, pixels, spec, device, extra[good] if extra is not None else None)
    task, threshold, scale = task_settings(metadata)
    if task == "classification":
        out = _predictions(_class_probabilities(outputs, metadata), list(metadata["classes"]), len(inputs), good,
                           errors)
    else:
        out = _at_positions(task_fields(outputs, metadata, task, threshold, scale), len(inputs), good, errors)
    if input_means:
        import numpy as np

        means = np.full(len(inputs), np.nan)
        means[good] = pixel_means(pixels)
        out["input_mean"] = means
    return out


def task_settings(metadata: Mapping[str, Any]) -> tuple[str, float, Mapping[str, float] | None]:
    """A model's task, multilabel threshold and regression target scale (a table's or an image model's)."""
    task = metadata.get("task", "classification")
    settings = metadata.get("table") or metadata.get("image_target") or {}
    return task, settings.get("multilabel_threshold", 0.5), settings.get("target_scale")


def _table_inputs(metadata: Mapping[str, Any], table: pd.DataFrame | None, n: int) -> "np.ndarray | None":
    """The encoded table columns of a model of images and table columns (rows x width); None for others."""
    inputs = metadata.get("table_inputs")
    if not inputs:
        return None
    columns = encoded_columns(inputs["encoding"])
    if table is None or len(table) != n or any(c not in table.columns for c in columns):
        have = "no table" if table is None else f"{len(table)} row(s) of {list(table.columns)}"
        raise ValueError(f"model {model_label(metadata)} reads table column(s) {columns} beside each image; "
                         f"pass them as table= (one row per input; got {have})")
    return encode_inputs(table.reset_index(drop=True), inputs["encoding"])


def _outputs(model: "torch.nn.Module", metadata: Mapping[str, Any], pixels: list[bytes],
             spec: PreprocessSpec, device: "str | torch.device", table: "np.ndarray | None" = None) -> "torch.Tensor":
    """The model's outputs for the prepared rows, float64 on the CPU (rows x outputs)."""
    import torch

    if not pixels:
        return _no_outputs(metadata)
    batch = torch.from_numpy(pixels_to_tensor(pixels, spec)).to(device)
    with torch.inference_mode():
        outputs = model(batch) if table is None else model(batch, torch.from_numpy(table).to(device))
    # float64 on the CPU: the scores written to the lake do not depend on the device's float32
    # reduction order beyond the outputs themselves.
    return outputs.to("cpu", torch.float64)


def _no_outputs(metadata: Mapping[str, Any]) -> "torch.Tensor":
    """The outputs of no rows: 0 x one per class or label (one for regression), float64."""
    import torch

    return torch.zeros(0, max(1, len(metadata["classes"])), dtype=torch.float64)


def _check_outputs(outputs: "torch.Tensor", metadata: Mapping[str, Any]) -> None:
    if len(outputs) and outputs.shape[1] != len(metadata["classes"]):
        raise ValueError(
            f"model {model_label(metadata)} returns {outputs.shape[1]} outputs but its metadata lists "
            f"{len(metadata['classes'])} classes; the registry entry is inconsistent, publish the model again"
        )


def _class_probabilities(outputs: "torch.Tensor", metadata: Mapping[str, Any]) -> "np.ndarray":
    """Softmax class probabilities (float64, rows x classes)."""
    import torch

    _check_outputs(outputs, metadata)
    return torch.softmax(outputs, dim=1).numpy()


def task_fields(outputs: "torch.Tensor", metadata: Mapping[str, Any], task: str, threshold: float,
                scale: Mapping[str, float] | None) -> pd.DataFrame:
    """The task's prediction fields (:data:`TASK_RESULT_SCHEMAS`) of scored rows' outputs (float64)."""
    import numpy as np
    import torch

    from lakeloop.tabular import regression_values

    if task == "regression":
        return pd.DataFrame({"value": regression_values(outputs.numpy()[:, 0], scale) if len(outputs)
                             else np.zeros(0)})
    names = np.asarray(metadata["classes"], dtype=object)
    if task == "multilabel":
        _check_outputs(outputs, metadata)
        probs = torch.sigmoid(outputs).numpy()
        return pd.DataFrame({"labels": [list(names[row]) for row in probs >= threshold], "scores": list(probs)})
    probs = _class_probabilities(outputs, metadata)
    return _predictions(probs, list(names), len(probs), list(range(len(probs))), [None] * len(probs)) \
        .drop(columns=["error"])


def _at_positions(fields: pd.DataFrame, n: int, good: list[int], errors: list[str | None]) -> pd.DataFrame:
    """``n`` rows: ``fields`` at positions ``good`` (nulls elsewhere), and ``error``."""
    if len(good) == n:
        return fields.assign(error=[None] * n)
    out = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in fields.columns})
    for c in fields.columns:
        out.loc[good, c] = pd.Series(list(fields[c]), index=good, dtype=object)
    out["error"] = errors
    return out


def _predictions(probs: "np.ndarray", classes: list[str], n: int, good: list[int],
                 errors: list[str | None]) -> pd.DataFrame:
    """One row per input: the top class of the scored rows (at positions ``good``), ``errors`` for the rest."""
    import numpy as np

    top = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    names = np.asarray(classes, dtype=object)
    if len(good) == n:
        # The common case: every row scored; no per-row Python work beyond the list of arrays.
        return pd.DataFrame({
            "label": names[top] if n else np.zeros(0, dtype=object),
            "label_index": top.astype(np.int32),
            "score": probs[np.arange(n), top] if n else np.zeros(0),
            "scores": list(probs),
            "error": [None] * n,
        })
    label: list[Any] = [None] * n
    label_index = pd.array([None] * n, dtype="Int32")
    score = np.full(n, np.nan)
    scores: list[Any] = [None] * n
    for row, i in enumerate(good):
        label[i] = names[top[row]]
        label_index[i] = int(top[row])
        score[i] = probs[row, top[row]]
        scores[i] = probs[row]
    return pd.DataFrame({"label": label, "label_index": label_index, "score": score, "scores": scores,
                         "error": errors})


# --------------------------------------------------------------------------- table rows

# The prediction fields per task (the struct the table-scoring UDF returns; image scoring adds ``error``).
TASK_RESULT_SCHEMAS = {
    "classification": "label string, label_index int, score double, scores array<double>",
    "multilabel": "labels array<string>, scores array<double>",
    "regression": "value double",
}
# The column a prediction row keeps the input's truth in, per task, and its type.
TRUTH_COLUMNS = {"classification": "true_label", "multilabel": "true_labels", "regression": "true_value"}
TRUTH_TYPES = {"classification": "string", "multilabel": "array<string>", "regression": "double"}
TASK_RESULT_FIELDS = {task: [part.split()[0] for part in schema.split(", ")]
                      for task, schema in TASK_RESULT_SCHEMAS.items()}


def score_rows(model: "torch.nn.Module", metadata: Mapping[str, Any], frame: pd.DataFrame,
               device: "str | torch.device" = "cpu") -> pd.DataFrame:
    """Score table rows with a loaded table model; runs without Spark.

    ``frame`` holds the raw columns the model's encoding reads (``metadata["table"]["encoding"]``,
    see :mod:`lakeloop.tabular`); they are encoded exactly as the training set was. Returns one row
    per input with the task's fields (:data:`TASK_RESULT_SCHEMAS`): ``label``, ``label_index``,
    ``score``, ``scores`` (classification); ``labels`` over ``multilabel_threshold`` and ``scores``
    per label (multilabel); ``value`` in the target's own units (regression). Every row is scored:
    a value that is missing or not a number counts as missing, one never seen in training as
    "unknown", both as the training set's encoding says.

    Raises
    ------
    ValueError
        the frame lacks a column the model reads, or the model's outputs do not match its metadata.
    """
    import torch

    table = metadata["table"]
    missing = [c for c in encoded_columns(table["encoding"]) if c not in frame.columns]
    if missing:
        raise ValueError(f"model {model_label(metadata)} reads column(s) {missing}, which the input lacks "
                         f"(it has {', '.join(map(str, frame.columns))})")
    x = torch.from_numpy(encode_inputs(frame, table["encoding"])).to(device)
    with torch.inference_mode():
        outputs = model(x).to("cpu", torch.float64) if len(frame) else _no_outputs(metadata)
    return task_fields(outputs, metadata, *task_settings(metadata))

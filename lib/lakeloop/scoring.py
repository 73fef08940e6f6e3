"""Batch scoring: a registered model over image rows -> Delta ``gold.predictions``.

Three layers, each usable on its own:

* :func:`score_batch` scores one list of inputs with a loaded model. Pure: no Spark, so
  the UDF, the benchmark's bare loop and a GPU box without a JVM all run the same code.
* An iterator-form pandas UDF around it (:func:`score`, :func:`register_udf`). The model
  is loaded once per Python worker and kept in a per-process cache keyed by the version's
  URI; inputs arrive in Arrow batches of at most ``batch_size`` rows and are scored under
  ``torch.inference_mode()`` on the task's GPU when Spark assigned one, else on the CPU
  with ``torch.set_num_threads(torch_threads_per_task)``.
* :func:`score_table` is the job: score the rows of a lake table that have no prediction
  yet for the model version, MERGE them into ``gold.predictions`` and refused rows into
  ``quarantine.predictions``, and report counts, accuracy, throughput and worker memory.

Two input forms are understood:

* ``pixels`` (``silver.features``): already preprocessed uint8 H x W x C bytes. Only the
  normalisation is applied, with the spec recorded in the *model's* metadata; a row whose
  byte length does not match that spec is refused.
* ``content`` (``bronze.images``, or any binary column of encoded image files): decoded
  and preprocessed with :func:`lakeloop.preprocess.image_to_pixels` and the model's spec,
  exactly as ``silver.features`` was built.

A row that cannot be scored (null, undecodable bytes, wrong size) gets ``error`` (a reason
a person can act on) instead of failing the task.
"""

from __future__ import annotations

import json
import os
import re
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

# Module level, not under TYPE_CHECKING: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop import delta_io, registry
from lakeloop.config import Profile, ScoreConfig, require_uri
from lakeloop.errors import ConfigError, SourceError
from lakeloop.features import CLASSES_PROPERTY, SPEC_PROPERTY, features_uri, lake_table, table_properties
from lakeloop.ingest_images import bronze_images_uri
from lakeloop.preprocess import PreprocessSpec, image_to_pixels, pixels_to_tensor
from lakeloop.report import RunReport, new_run_id

if TYPE_CHECKING:
    import torch
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

INPUT_PIXELS = "pixels"
INPUT_CONTENT = "content"
INPUT_KINDS = (INPUT_PIXELS, INPUT_CONTENT)

DEFAULT_BATCH_SIZE = 512
PREDICTION_FIELDS = ("label", "label_index", "score", "scores", "error")
RESULT_SCHEMA = "label string, label_index int, score double, scores array<double>, error string"
# Per-row facts about the Python worker that scored the row; score_table aggregates them.
DIAGNOSTIC_SCHEMA = (
    "worker_pid int, worker_device string, worker_model_loads int, worker_batches long, worker_max_rss_bytes long"
)
PREDICTION_KEYS = ("image_id", "model_name", "model_version")

ARROW_MAX_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_MAX_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"

_REQUIRED_METADATA = ("architecture", "classes", "preprocess", "input_shape")


def predictions_uri(profile: Profile) -> str:
    return profile.table_uri("gold", "predictions")


def quarantine_predictions_uri(profile: Profile) -> str:
    return profile.table_uri("quarantine", "predictions")


# --------------------------------------------------------------------------- one batch, no Spark


def model_spec(metadata: Mapping[str, Any]) -> PreprocessSpec:
    """The preprocessing a model was trained with, from its ``metadata.json``."""
    return PreprocessSpec.from_json(metadata["preprocess"])


def _model_label(metadata: Mapping[str, Any]) -> str:
    return f"{metadata.get('name', '?')}:{metadata.get('version', '?')}"


def _prepare(
    inputs: Sequence[bytes | bytearray | memoryview | None], input_kind: str, spec: PreprocessSpec, model: str
) -> tuple[list[bytes], list[int], list[str | None]]:
    """Pixel bytes of the rows that can be scored, their positions, and a reason for each other row."""
    n = len(inputs)
    errors: list[str | None] = [None] * n
    expected = spec.pixel_bytes
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
                pixels.append(image_to_pixels(bytes(value), spec))
            except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, the row is refused with it
                errors[i] = (
                    f"cannot decode image ({type(exc).__name__}: {exc}); the stored bytes are not an image "
                    f"Pillow can read: re-ingest the original file"
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
) -> pd.DataFrame:
    """Score one batch of images with a loaded model; runs without Spark.

    Parameters
    ----------
    model : the model in eval mode, already on ``device`` (see
        :func:`lakeloop.models.load_registered`).
    metadata : the version's ``metadata.json``; ``classes`` names the outputs and
        ``preprocess`` is the spec the inputs are prepared with.
    inputs : one value per row: uint8 H x W x C pixel bytes (``input_kind="pixels"``) or
        the bytes of an image file (``"content"``); ``None`` for a missing value.
    input_kind : ``"pixels"`` or ``"content"``.
    device : where the forward pass runs, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns
    -------
    pandas.DataFrame
        One row per input, in order: ``label`` (class name), ``label_index``, ``score``
        (the top softmax probability), ``scores`` (all class probabilities, float64),
        ``error`` (null, or why the row could not be scored; the other columns are then null).

    Raises
    ------
    ValueError
        an unknown ``input_kind``. Bad rows never raise; they get ``error``.
    """
    import numpy as np
    import torch

    if input_kind not in INPUT_KINDS:
        raise ValueError(f"score_batch: input_kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    spec = model_spec(metadata)
    classes = list(metadata["classes"])
    n = len(inputs)
    pixels, good, errors = _prepare(inputs, input_kind, spec, _model_label(metadata))

    if pixels:
        batch = torch.from_numpy(pixels_to_tensor(pixels, spec)).to(device)
        with torch.inference_mode():
            logits = model(batch)
        # Softmax in float64 on the CPU: the scores written to the lake do not depend on the device's
        # float32 reduction order beyond the logits themselves.
        probs = torch.softmax(logits.to("cpu", torch.float64), dim=1).numpy()
        if probs.shape[1] != len(classes):
            raise ValueError(
                f"model {_model_label(metadata)} returns {probs.shape[1]} outputs but its metadata lists "
                f"{len(classes)} classes; the registry entry is inconsistent, publish the model again"
            )
        top = probs.argmax(axis=1)
    else:
        probs = np.zeros((0, len(classes)))
        top = np.zeros(0, dtype=np.int64)

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


# --------------------------------------------------------------------------- per-worker model cache


@dataclass
class CachedModel:
    """A model loaded in this process, with how often it was loaded and used."""

    model: Any
    metadata: dict[str, Any]
    device: str
    loads: int
    batches: int = 0


# Module-level state, the one allowed exception to "no global state": a Python worker is reused across
# tasks (spark.python.worker.reuse, on by default) and this dict outlives each task, so a model
# is read from the registry and built once per worker instead of once per task or batch. It is
# safe because a committed version's URI never changes content (the registry never overwrites
# a version). Keyed by (version URI, device): a reused worker may be handed another GPU.
_MODEL_CACHE: dict[tuple[str, str], CachedModel] = {}
_LOADS: dict[tuple[str, str], int] = {}
_CACHE_LOCK = threading.Lock()
_MAX_CACHED_MODELS = 4  # bounds worker memory when one worker scores many models


def cached_model(
    version: registry.ModelVersion, hadoop_conf: Mapping[str, str] | None, device: str
) -> CachedModel:
    """The model of ``version`` on ``device``, loaded on first use in this process and kept.

    ``loads`` counts how many times this process loaded it: 1 unless it was evicted (more
    than ``_MAX_CACHED_MODELS`` models used by one worker).
    """
    key = (version.uri, device)
    with _CACHE_LOCK:
        entry = _MODEL_CACHE.get(key)
        if entry is not None:
            return entry
        from lakeloop.models import load_registered

        model, metadata = load_registered(version, hadoop_conf)
        model = model.to(device).eval()
        while len(_MODEL_CACHE) >= _MAX_CACHED_MODELS:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _LOADS[key] = _LOADS.get(key, 0) + 1
        entry = _MODEL_CACHE[key] = CachedModel(model, metadata, device, _LOADS[key])
        return entry


def task_device() -> str:
    """``cuda:<address>`` of the GPU Spark assigned to the running task, else ``cpu``.

    Reads ``TaskContext.get().resources()["gpu"]``, which Spark fills when the cluster has
    GPU scheduling (``spark.executor.resource.gpu.amount``, ``spark.task.resource.gpu.amount``).
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{gpus.addresses[0]}"
    return "cpu"


def _peak_rss_bytes() -> int:
    # ru_maxrss is the process's lifetime peak, in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if os.uname().sysname == "Darwin" else int(peak) * 1024


# --------------------------------------------------------------------------- the pandas UDF


@dataclass(frozen=True)
class UdfPlan:
    """What the UDF needs on the executors; pickled with it (small: no weights)."""

    version: registry.ModelVersion
    hadoop_conf: dict[str, str] = field(default_factory=dict)
    input_kind: str = INPUT_CONTENT
    batch_size: int = DEFAULT_BATCH_SIZE
    torch_threads: int = 1
    diagnostics: bool = False


def predict_partition(batches: Iterator[pd.Series], plan: UdfPlan) -> Iterator[pd.DataFrame]:
    """The body of the scoring UDF: model from the per-worker cache, then :func:`score_batch`
    on chunks of at most ``plan.batch_size`` rows of each Arrow batch."""
    import torch

    # Spark runs one task per core; one intra-op thread per task keeps them from oversubscribing.
    torch.set_num_threads(plan.torch_threads)
    device = task_device()
    entry = cached_model(plan.version, plan.hadoop_conf, device)
    size = plan.batch_size
    for series in batches:
        values = series.tolist()
        parts = [score_batch(entry.model, entry.metadata, values[i:i + size], plan.input_kind, device)
                 for i in range(0, len(values), size)]
        out = parts[0] if len(parts) == 1 else (
            pd.concat(parts, ignore_index=True) if parts else
            score_batch(entry.model, entry.metadata, [], plan.input_kind, device))
        entry.batches += len(parts)
        if plan.diagnostics:
            out["worker_pid"] = os.getpid()
            out["worker_device"] = device
            out["worker_model_loads"] = entry.loads
            out["worker_batches"] = entry.batches
            out["worker_max_rss_bytes"] = _peak_rss_bytes()
        yield out


def make_udf(plan: UdfPlan):
    """The pandas UDF scoring one binary column with ``plan``'s model; returns a struct
    (:data:`RESULT_SCHEMA`, plus :data:`DIAGNOSTIC_SCHEMA` with ``plan.diagnostics``)."""
    from pyspark.sql.functions import pandas_udf

    schema = RESULT_SCHEMA + (", " + DIAGNOSTIC_SCHEMA if plan.diagnostics else "")

    @pandas_udf(schema)
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        # Imported in the worker, not captured: cloudpickle would ship a copy of this module's
        # globals with the closure, and the model cache must be the worker's own module dict.
        from lakeloop.scoring import predict_partition

        yield from predict_partition(batches, plan)

    return predict


def resolve_model(
    model_ref: "str | registry.ModelVersion",
    registry_root: str,
    hadoop_conf: Mapping[str, str] | None = None,
) -> tuple[registry.ModelVersion, dict[str, Any]]:
    """Pin ``model_ref`` (``name``, ``name:3``, ``name@alias`` or a ModelVersion) to one
    committed version and read its metadata, on the driver.

    Pinning here means every task of a query scores with the same version even if
    ``latest`` or an alias moves while the query runs.

    Raises
    ------
    ConfigError
        a malformed reference.
    ModelNotFound
        no such committed version or alias.
    SourceError
        metadata missing, altered, or without what scoring needs.
    """
    if isinstance(model_ref, registry.ModelVersion):
        version = model_ref
    else:
        name, ref = registry.parse_model_ref(model_ref)
        version = registry.resolve(registry_root, name, ref, hadoop_conf)
    metadata = registry.read_metadata(version, hadoop_conf)
    missing = [k for k in _REQUIRED_METADATA if k not in metadata]
    if missing:
        raise SourceError(
            f"{version.uri}/metadata.json lacks {', '.join(missing)}, which scoring needs to rebuild the model "
            f"and prepare its inputs; publish the model with lakeloop.training (or the same metadata keys)"
        )
    return version, metadata


def image_column(df: "DataFrame", input_col: str | None = None, setting: str = "input_col") -> tuple[str, str]:
    """The binary image column of ``df`` and its kind (``pixels`` or ``content``).

    Without ``input_col``: ``pixels`` if ``df`` has it, else ``content``. A column named
    ``pixels`` holds preprocessed pixels; any other binary column, encoded image files.

    Raises
    ------
    ConfigError
        no such column, or not binary; the message lists the columns.
    """
    from pyspark.sql.types import BinaryType

    columns = ", ".join(df.columns)
    if input_col is None:
        input_col = next((c for c in (INPUT_PIXELS, INPUT_CONTENT) if c in df.columns), None)
        if input_col is None:
            raise ConfigError(
                f"no image column to score: the input has {columns}; scoring looks for 'pixels' (preprocessed, "
                f"as in silver.features) or 'content' (image file bytes, as in bronze.images). Name yours with "
                f"{setting}=COLUMN"
            )
    elif input_col not in df.columns:
        raise ConfigError(f"{setting} = {input_col!r} is not a column of the input ({columns})")
    data_type = df.schema[input_col].dataType
    if not isinstance(data_type, BinaryType):
        raise ConfigError(
            f"{setting} = {input_col!r} is {data_type.simpleString()}, not binary; scoring takes image file "
            f"bytes or uint8 pixel bytes (cast or pick another column)"
        )
    return input_col, INPUT_PIXELS if input_col == INPUT_PIXELS else INPUT_CONTENT


def _check_batch(batch_size: int, torch_threads: int, prefix: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"{prefix}batch_size = {batch_size!r} must be a whole number >= 1, e.g. 512")
    if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
        raise ConfigError(f"{prefix}torch_threads{'_per_task' if prefix else ''} = {torch_threads!r} must be "
                          f"a whole number >= 1 (1 when Spark runs one task per core)")


def score(
    df: "DataFrame",
    model_ref: "str | registry.ModelVersion",
    *,
    registry_root: str,
    input_col: str | None = None,
    input_kind: str | None = None,
    hadoop_conf: Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    torch_threads: int = 1,
    output_col: str = "prediction",
    flatten: bool = False,
    prefix: str = "",
    diagnostics: bool = False,
) -> "DataFrame":
    """Add a model's predictions to any DataFrame with an image column (for notebooks).

    Parameters
    ----------
    df : rows to score; only the image column is sent to Python.
    model_ref : ``"digits_lenet"`` (latest), ``"digits_lenet:3"``, ``"digits_lenet@production"``
        or a :class:`lakeloop.registry.ModelVersion`. Pinned to one version here.
    registry_root : URI of the model registry, e.g. ``file:/data/lake/models``.
    input_col : the binary column; default ``pixels`` if present, else ``content``.
    input_kind : ``"pixels"`` (preprocessed uint8 bytes) or ``"content"`` (image files);
        default: ``pixels`` for a column named so, else ``content``.
    hadoop_conf : Hadoop settings the executors need to read the registry (``fs.s3a.*`` ...).
    batch_size : rows per forward pass. The Arrow batch size is a session setting read when
        the query runs; set ``spark.sql.execution.arrow.maxRecordsPerBatch`` to match around
        the action (see :func:`scoped_conf`) to keep worker memory at one batch.
    torch_threads : intra-op threads per task (1 when Spark runs one task per core).
    output_col : name of the struct column added (``label, label_index, score, scores, error``).
    flatten : add those five fields as columns instead (named ``prefix + field``).
    diagnostics : also return the worker fields of :data:`DIAGNOSTIC_SCHEMA` (pid, device,
        model loads, batches, peak RSS) in the struct.

    Returns
    -------
    DataFrame
        ``df`` plus the prediction column(s); lazy, like any transformation.

    Raises
    ------
    ConfigError
        no or non-binary image column, bad batch settings, a malformed reference, or flattened
        names that clash with existing columns.
    ModelNotFound, SourceError
        the model cannot be resolved or its metadata is unusable.
    """
    from pyspark.sql import functions as F

    _check_batch(batch_size, torch_threads, "")
    column, kind = image_column(df, input_col)
    kind = input_kind or kind
    if kind not in INPUT_KINDS:
        raise ConfigError(f"input_kind = {kind!r} is not one of {', '.join(INPUT_KINDS)}")
    version, _ = resolve_model(model_ref, registry_root, hadoop_conf)
    plan = UdfPlan(version, dict(hadoop_conf or {}), kind, batch_size, torch_threads, diagnostics)
    predicted = make_udf(plan)(F.col(column))
    if not flatten:
        if output_col in df.columns:
            raise ConfigError(f"output_col = {output_col!r} is already a column of the input; pick another name")
        return df.withColumn(output_col, predicted)
    names = [f"{prefix}{f}" for f in PREDICTION_FIELDS]
    clash = [n for n in names if n in df.columns]
    if clash:
        raise ConfigError(
            f"flattened prediction columns {clash} already exist in the input; pass prefix='predicted_' "
            f"or keep the struct (flatten=False)"
        )
    tmp = "__lakeloop_prediction"
    return df.withColumn(tmp, predicted).select(
        *df.columns, *[F.col(f"{tmp}.{f}").alias(n) for f, n in zip(PREDICTION_FIELDS, names)])


def register_udf(
    spark: "SparkSession",
    name: str,
    model_ref: "str | registry.ModelVersion",
    registry_root: str,
    *,
    input_kind: str = INPUT_CONTENT,
    hadoop_conf: Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    torch_threads: int = 1,
) -> registry.ModelVersion:
    """Register the model as a SQL function: ``SELECT name(content).label FROM ...``.

    The function takes one binary argument (``input_kind``: image file bytes by default,
    ``"pixels"`` for preprocessed pixels) and returns the struct of :data:`RESULT_SCHEMA`.
    The reference is pinned now; register again to pick up a newer version.

    Returns
    -------
    ModelVersion
        the version the function scores with.

    Raises
    ------
    ConfigError, ModelNotFound, SourceError
        as for :func:`score`; also an ``input_kind`` that is not ``pixels``/``content``.
    """
    _check_batch(batch_size, torch_threads, "")
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"register_udf({name!r}): input_kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    if not re.fullmatch(r"[A-Za-z_]\w*", name or ""):
        raise ConfigError(f"register_udf: {name!r} is not a valid SQL function name (letters, digits, _)")
    version, _ = resolve_model(model_ref, registry_root, hadoop_conf)
    spark.udf.register(name, make_udf(UdfPlan(version, dict(hadoop_conf or {}), input_kind, batch_size,
                                              torch_threads)))
    return version


@contextmanager
def scoped_conf(spark: "SparkSession", settings: Mapping[str, str]) -> Iterator[None]:
    """Set runtime Spark settings for the block, then restore what was there (or unset)."""
    before = {key: spark.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, str(value))
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def arrow_batch_settings(batch_size: int, max_batch_bytes: int) -> dict[str, str]:
    """Arrow batches to the Python workers cut at ``batch_size`` rows or ``max_batch_bytes``."""
    return {ARROW_MAX_RECORDS: str(batch_size), ARROW_MAX_BYTES: str(max_batch_bytes)}


# --------------------------------------------------------------------------- the job


def predictions_schema() -> "StructType":
    from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, StringType, StructField, StructType,
                                   TimestampType)

    return StructType([
        StructField("image_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", IntegerType()),
        StructField("label", StringType()),
        StructField("label_index", IntegerType()),
        StructField("score", DoubleType()),
        StructField("scores", ArrayType(DoubleType())),
        StructField("true_label", StringType()),
        StructField("scored_at", TimestampType()),
        StructField("run_id", StringType()),
    ])


def quarantine_schema() -> "StructType":
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

    return StructType([
        StructField("image_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", IntegerType()),
        StructField("error", StringType()),
        StructField("run_id", StringType()),
        StructField("quarantined_at", TimestampType()),
    ])


def input_table_uri(profile: Profile, ref: str) -> str:
    """``features`` -> silver.features, ``images`` -> bronze.images, ``layer.name`` -> that lake
    table, else ``ref`` itself, which must be a URI.

    Raises
    ------
    ConfigError
        ``ref`` is none of those.
    """
    if ref == "features":
        return features_uri(profile)
    if ref == "images":
        return bronze_images_uri(profile)
    uri = lake_table(profile, ref)
    return require_uri(uri, "score.input (features, images, a lake table such as silver.features, or a URI)")


def _check_score_config(cfg: ScoreConfig) -> None:
    _check_batch(cfg.batch_size, cfg.torch_threads_per_task, "score.")
    if cfg.max_batch_bytes < 1 << 20 or cfg.max_batch_bytes >= 1 << 31:
        raise ConfigError(
            f"score.max_batch_bytes = {cfg.max_batch_bytes} must be between 1 MiB and 2 GiB (Spark's Arrow "
            f"limit), e.g. 67108864"
        )


def _spec_warning(spark: "SparkSession", input_uri: str, metadata: Mapping[str, Any]) -> str | None:
    """A warning when a features table was preprocessed differently from what the model expects."""
    properties = table_properties(spark, input_uri)
    if SPEC_PROPERTY not in properties:
        return None
    table_spec, wanted = PreprocessSpec.from_json(properties[SPEC_PROPERTY]), model_spec(metadata)
    geometry = ("height", "width", "channels", "resize")
    if all(getattr(table_spec, g) == getattr(wanted, g) for g in geometry):
        classes = properties.get(CLASSES_PROPERTY)
        if classes and sorted(json.loads(classes)) != sorted(metadata["classes"]):
            return (f"{input_uri} lists classes {classes} but the model predicts {metadata['classes']}; "
                    f"accuracy compares label names")
        return None
    return (
        f"{input_uri} was preprocessed as {table_spec.height}x{table_spec.width}x{table_spec.channels} "
        f"({table_spec.resize}) but model {_model_label(metadata)} expects {wanted.height}x{wanted.width}x"
        f"{wanted.channels} ({wanted.resize}); rows of the wrong size are quarantined and others may be "
        f"prepared differently from training: score the raw images with --input images"
    )


def score_table(
    spark: "SparkSession", profile: Profile, run_id: str | None = None, report: RunReport | None = None
) -> RunReport:
    """Score the input table's rows that have no prediction yet for the model version.

    Reads ``score.*``: ``input`` (``features``, ``images``, a lake table or a Delta URI with
    ``image_id`` and a binary image column), ``model`` (``name``, ``name:V`` or ``name@alias``),
    ``input_column``, ``batch_size``, ``max_batch_bytes``, ``torch_threads_per_task``.

    Writes
    ------
    ``gold.predictions``
        MERGE keyed by (image_id, model_name, model_version): ``label``, ``label_index``,
        ``score``, ``scores``, ``true_label`` (the input's ``label``), ``scored_at``, ``run_id``.
    ``quarantine.predictions``
        rows that could not be scored, with ``error``, same key.

    Incremental by anti-join, not by change data feed
    -------------------------------------------------
    The rows to score are the input (pinned to its current Delta version) minus the keys
    already in gold.predictions *and* in quarantine.predictions for this model version,
    both pinned to their current versions. The anti-join works whatever wrote the input
    (our jobs, another team's, a plain Delta table), needs no change data feed enabled on
    bronze or silver, and survives their VACUUM and rewrites (OPTIMIZE, MERGE updates)
    that a CDF cursor would misread as new rows. Because its key is the target's own key,
    recovery is trivially correct: after a crash (before, between or after the two MERGEs,
    each atomic) the rerun scores exactly what is still missing, and a rerun after success
    finds nothing and commits nothing. Quarantined rows are excluded too, so a broken image
    is reported once, not retried on every run. A new model version has no rows yet, so it
    scores everything alongside the older version without touching its rows.

    Memory
    ------
    Only the image column goes to Python. The Arrow batches sent to a worker are cut at
    ``score.batch_size`` rows or ``score.max_batch_bytes`` bytes, whichever comes first
    (``spark.sql.execution.arrow.maxRecordsPerBatch`` / ``maxBytesPerBatch``, set for this
    query only), so a worker holds about one batch of inputs, its pandas copy and the
    float32 tensor (``batch_size`` x C x H x W x 4 bytes) besides the model, whatever the
    image sizes. The report's ``python_worker_peak_rss_mb`` shows what that came to.

    Raises
    ------
    ConfigError
        bad ``score.*`` settings, or an input without ``image_id`` or an image column.
    SourceError
        the input is not a Delta table yet, or the model's metadata is unusable.
    ModelNotFound
        the model reference names no committed version.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from lakeloop.training import hadoop_conf, registry_root

    cfg = profile.score
    _check_score_config(cfg)
    run_id = run_id or new_run_id("score")
    report = report or RunReport(job="score", run_id=run_id)
    conf = hadoop_conf(profile)
    started = time.perf_counter()
    gold_uri, quarantine_uri = predictions_uri(profile), quarantine_predictions_uri(profile)
    report.outputs.update(predictions=gold_uri, quarantine=quarantine_uri)

    if spark.sparkContext.getConf().get("spark.python.worker.reuse", "true").lower() != "true":
        report.warnings.append("spark.python.worker.reuse is false: every task starts a Python worker and loads "
                               "the model again; remove that setting from the profile")
    input_uri = input_table_uri(profile, cfg.input)
    if not delta_io.is_delta_table(spark, input_uri):
        hint = {"features": "run build_features first", "images": "run ingest_images first"}.get(
            cfg.input, "check score.input")
        raise SourceError(f"score.input {cfg.input!r} -> {input_uri} is not a Delta table; {hint}")
    with report.timed("resolve_model"):
        version, metadata = resolve_model(cfg.model, registry_root(profile), conf)
    report.details["model"] = {"name": version.name, "version": version.version, "uri": version.uri}

    input_version = delta_io.table_version(spark, input_uri)
    source = delta_io.read_table(spark, input_uri, input_version)
    column, kind = image_column(source, cfg.input_column, "score.input_column")
    if "image_id" not in source.columns:
        raise ConfigError(
            f"score.input {input_uri} has no image_id column (it has {', '.join(source.columns)}); "
            f"gold.predictions is keyed by it: add one (e.g. sha2(content, 256)) or score the table in a "
            f"notebook with lakeloop.scoring.score(df, ...)"
        )
    report.details["input"] = {"uri": input_uri, "delta_version": input_version, "column": column, "kind": kind}
    if kind == INPUT_PIXELS:
        warning = _spec_warning(spark, input_uri, metadata)
        if warning:
            report.warnings.append(warning)

    with report.timed("plan"):
        # bronze.images and silver.features are unique by image_id (MERGEd on it); another table may
        # not be, and MERGE needs one source row per key.
        lake_input = cfg.input in ("features", "images")
        sizes = source.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count("image_id").alias("ids"),
            (F.count("image_id") if lake_input else F.countDistinct("image_id")).alias("distinct"),
        ).first()
        n_inputs = sizes["rows"]
        n_null_ids, n_duplicates = sizes["rows"] - sizes["ids"], sizes["ids"] - sizes["distinct"]
        keyed = source.where(F.col("image_id").isNotNull())
        if n_null_ids:
            report.warnings.append(f"{n_null_ids} input row(s) have no image_id and were not scored (nothing to key "
                                   f"their prediction by); fix them in {input_uri}")
        if n_duplicates:
            keyed = keyed.dropDuplicates(["image_id"])
            report.warnings.append(f"{n_duplicates} input row(s) repeat an image_id; one row per id was scored")

        this_version = (F.col("model_name") == F.lit(version.name)) & \
            (F.col("model_version") == F.lit(version.version))
        # Pinned reads: the plan below may be recomputed after this run's own MERGEs, and must not
        # see them (it would then find nothing to write, or count rows twice).
        predicted_ids = delta_io.read_pinned_or_empty(spark, gold_uri, predictions_schema()) \
            .where(this_version).select("image_id")
        quarantined_ids = delta_io.read_pinned_or_empty(spark, quarantine_uri, quarantine_schema()) \
            .where(this_version).select("image_id")
        n_already = keyed.join(predicted_ids, "image_id", "left_semi").count()
        pending = keyed.join(predicted_ids.unionByName(quarantined_ids), "image_id", "left_anti")

    udf = make_udf(UdfPlan(version, conf, kind, cfg.batch_size, cfg.torch_threads_per_task, diagnostics=True))
    true_label = F.col("label").cast("string") if "label" in source.columns else F.lit(None).cast("string")
    scored = pending.select(
        "image_id",
        true_label.alias("true_label"),
        udf(F.col(column)).alias("p"),
        F.current_timestamp().alias("scored_at"),
    )
    # Persisted so the UDF runs once for the counts and both MERGEs. The Arrow batch settings are
    # read when the physical plan is made, which persist() does; set them around it and the count.
    with scoped_conf(spark, arrow_batch_settings(cfg.batch_size, cfg.max_batch_bytes)):
        with report.timed("score"):
            scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
            n_pending = scored.count()
    report.throughput["rows_per_s"] = round(n_pending / report.durations_s["score"], 1) \
        if n_pending and report.durations_s["score"] > 0 else 0.0

    ok = F.col("p.error").isNull()
    labelled = ok & F.col("true_label").isNotNull()
    stats = scored.agg(
        F.count(F.when(ok, 1)).alias("good"),
        F.count(F.when(~ok, 1)).alias("bad"),
        F.count(F.when(labelled, 1)).alias("labelled"),
        F.count(F.when(labelled & (F.col("p.label") == F.col("true_label")), 1)).alias("correct"),
        F.max("p.worker_max_rss_bytes").alias("rss"),
    ).first()
    workers = scored.groupBy("p.worker_pid", "p.worker_device").agg(
        F.max("p.worker_model_loads").alias("loads"), F.max("p.worker_batches").alias("batches")).collect()

    model_cols = [F.lit(version.name).alias("model_name"), F.lit(version.version).cast("int").alias("model_version")]
    good = scored.where(ok).select(
        "image_id", *model_cols, "p.label", "p.label_index", "p.score", "p.scores", "true_label", "scored_at",
        F.lit(run_id).alias("run_id"))
    bad = scored.where(~ok).select(
        "image_id", *model_cols, F.col("p.error").alias("error"), F.lit(run_id).alias("run_id"),
        F.col("scored_at").alias("quarantined_at"))
    with report.timed("write_predictions"):
        if stats["good"]:
            report.details["predictions_merge"] = delta_io.merge_insert_new(
                spark, good, gold_uri, list(PREDICTION_KEYS))
        else:
            # Nothing to add: no commit, but a first run still leaves the table for readers to find.
            delta_io.ensure_table(spark, gold_uri, good.schema)
    if stats["bad"]:
        with report.timed("write_quarantine"):
            delta_io.merge_insert_new(spark, bad, quarantine_uri, list(PREDICTION_KEYS))
        reasons = scored.where(~ok).groupBy(
            F.regexp_extract("p.error", r"^([^(;]+)", 1).alias("reason")).count().collect()
        report.details["quarantine_reasons"] = {r["reason"].strip(): r["count"] for r in reasons}
    scored.unpersist()

    n_inputs_keyed = n_inputs - n_null_ids - n_duplicates
    report.counts.update(
        inputs=n_inputs,
        already_scored=n_already,
        already_quarantined=n_inputs_keyed - n_already - n_pending,
        scored=int(stats["good"]),
        quarantined=int(stats["bad"]),
        python_workers=len(workers),
        model_loads=int(sum(w["loads"] for w in workers)),
    )
    if n_null_ids or n_duplicates:
        report.counts.update(skipped_null_id=n_null_ids, skipped_duplicate_id=n_duplicates)
    report.details["accuracy_this_run"] = round(stats["correct"] / stats["labelled"], 6) \
        if stats["labelled"] else None
    if stats["rss"] is not None:
        report.details["python_worker_peak_rss_mb"] = round(stats["rss"] / 2**20, 1)
    report.details["python_worker_devices"] = sorted({w["worker_device"] for w in workers})
    report.details["batches"] = {"batch_size": cfg.batch_size, "max_batch_bytes": cfg.max_batch_bytes}

    gold_version = delta_io.table_version(spark, gold_uri)
    overall = delta_io.read_table(spark, gold_uri, gold_version).where(this_version).agg(
        F.count("*").alias("rows"),
        F.count(F.when(F.col("true_label").isNotNull(), 1)).alias("labelled"),
        F.count(F.when(F.col("label") == F.col("true_label"), 1)).alias("correct"),
    ).first()
    report.details["predictions_for_version"] = int(overall["rows"])
    report.details["accuracy_model_version"] = round(overall["correct"] / overall["labelled"], 6) \
        if overall["labelled"] else None
    report.details["predictions_delta_version"] = gold_version
    for name in ("accuracy_this_run", "accuracy_model_version"):
        if report.details[name] is not None:
            report.metrics[name] = report.details[name]
    elapsed = time.perf_counter() - started
    report.durations_s["total"] = round(elapsed, 3)
    return report

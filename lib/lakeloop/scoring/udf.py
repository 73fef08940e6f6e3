"""The scoring pandas UDF: a registered model over a binary column, inside Spark.

An iterator-form pandas UDF around :func:`lakeloop.scoring.batch.score_batch`
(:func:`score` for DataFrames, :func:`register_udf` for SQL). The model is loaded once per
Python worker and kept in a per-process cache keyed by the version's URI; inputs arrive in
Arrow batches of at most ``batch_size`` rows and are scored under ``torch.inference_mode()``
on the task's GPU when Spark assigned one, else on the CPU with
``torch.set_num_threads(torch_threads_per_task)``. The job around it is :mod:`lakeloop.scoring.job`.
"""

from __future__ import annotations

import os
import re
import resource
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

# Module level, not under TYPE_CHECKING: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.config import TaskFault
from lakeloop.errors import ConfigError, SourceError
from lakeloop.faults import fail_if_chosen
from lakeloop.io.batches import arrow_batch_settings  # noqa: F401 - where callers have imported it from
from lakeloop.io.delta import scoped_conf  # noqa: F401 - where callers have imported it from
from lakeloop.io.lakefs import REFERENCED_IMAGE, LakeFiles
from lakeloop.layout import parse_model_ref
from lakeloop.registry import ModelVersion, Registry
from lakeloop.scoring.batch import (INPUT_CONTENT, INPUT_KINDS, INPUT_PIXELS, TASK_RESULT_FIELDS, TASK_RESULT_SCHEMAS,
                                    score_batch)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

DEFAULT_BATCH_SIZE = 512
RESULT_SCHEMA = f"{TASK_RESULT_SCHEMAS['classification']}, error string"  # a classifier's struct


def result_schema(task: str) -> str:
    """The struct an image model's UDF returns: the task's fields and ``error``."""
    return f"{TASK_RESULT_SCHEMAS[task]}, error string"


def result_fields(task: str) -> list[str]:
    return [*TASK_RESULT_FIELDS[task], "error"]

# Per-row facts about the Python worker that scored the row; the job aggregates them.
DIAGNOSTIC_SCHEMA = (
    "worker_pid int, worker_device string, worker_model_loads int, worker_batches long, worker_max_rss_bytes long, "
    "input_mean double"
)

_REQUIRED_METADATA = ("classes", "preprocess", "input_shape")
_REQUIRED_TABLE_METADATA = ("classes", "table", "input_shape")


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


def cached_model(registry: Registry, version: ModelVersion, device: str) -> CachedModel:
    """The model of ``version`` on ``device``, loaded on first use in this process and kept.

    ``loads`` counts how many times this process loaded it: 1 unless it was evicted (more
    than ``_MAX_CACHED_MODELS`` models used by one worker).
    """
    key = (version.uri, device)
    with _CACHE_LOCK:
        entry = _MODEL_CACHE.get(key)
        if entry is not None:
            return entry
        from lakeloop.models import load_model

        model, metadata = load_model(registry, version)
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

    registry: Registry
    version: ModelVersion
    input_kind: str = INPUT_CONTENT
    batch_size: int = DEFAULT_BATCH_SIZE
    torch_threads: int = 1
    diagnostics: bool = False
    table_columns: tuple[str, ...] = ()  # a model of images and table columns: the columns it reads
    task: str = "classification"  # the model's (metadata "task"): which fields the UDF returns
    fault: TaskFault | None = None  # the reliability tests' injected task failure (lakeloop.faults)
    # Image files whose null content means "read it from path, checked by image_id" (bronze.images'
    # files ingested by reference): the storage settings that reach them; None for other inputs.
    references: Mapping[str, str] | None = None


# The image's field in the struct the UDF gets when the model also reads table columns (or the
# input may hold files by reference), and the fields that name such a file.
IMAGE_FIELD = "__lakeloop_image"
REFERENCE_FIELDS = {"path": "__lakeloop_path", "image_id": "__lakeloop_image_id"}  # column: struct field


def table_columns(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The table columns a model reads beside each image (``features.table_inputs``); () for none."""
    from lakeloop.tabular import encoded_columns

    inputs = metadata.get("table_inputs")
    return tuple(encoded_columns(inputs["encoding"])) if inputs else ()


def udf_input(column: str, plan: UdfPlan) -> "Column":
    """What the UDF is called on: the image column, or a struct of it and the model's table columns."""
    from pyspark.sql import functions as F

    references = [F.col(c).alias(f) for c, f in REFERENCE_FIELDS.items()] if plan.references is not None else []
    if not plan.table_columns and not references:
        return F.col(column)
    return F.struct(F.col(column).alias(IMAGE_FIELD), *references, *[F.col(c) for c in plan.table_columns])


def check_table_columns(columns: list[str], metadata: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming the model's table columns that ``where`` lacks."""
    missing = [c for c in table_columns(metadata) if c not in columns]
    if missing:
        raise ConfigError(
            f"model {metadata.get('name', '?')}:{metadata.get('version', '?')} reads table column(s) {missing} "
            f"beside each image, and {where} does not have them (it has {', '.join(columns)}); score "
            f"silver.features (score.input: features, built with features.join_columns listing them) or a table "
            f"that has them")


def predict_partition(batches: Iterator["pd.Series | pd.DataFrame"], plan: UdfPlan) -> Iterator[pd.DataFrame]:
    """The body of the scoring UDF: model from the per-worker cache, then :func:`score_batch`
    on chunks of at most ``plan.batch_size`` rows of each Arrow batch (a struct of the image
    and the table columns arrives as a DataFrame)."""
    import torch

    # Spark runs one task per core; one intra-op thread per task keeps them from oversubscribing.
    fail_if_chosen(plan.fault, "score")
    torch.set_num_threads(plan.torch_threads)
    device = task_device()
    entry = cached_model(plan.registry, plan.version, device)
    size = plan.batch_size
    files = LakeFiles(plan.references) if plan.references is not None else None
    for batch in batches:
        values = (batch[IMAGE_FIELD] if isinstance(batch, pd.DataFrame) else batch).tolist()
        references = [batch[f].tolist() for f in REFERENCE_FIELDS.values()] if files is not None else None
        table = batch[list(plan.table_columns)].reset_index(drop=True) if plan.table_columns else None
        parts, refused = [], {}
        for i in range(0, len(values), size):
            # Files held by reference are read a chunk at a time: memory holds one chunk's files.
            chunk = values[i:i + size] if references is None else \
                _read_references(values[i:i + size], [r[i:i + size] for r in references], files, refused, i)
            parts.append(score_batch(entry.model, entry.metadata, chunk, plan.input_kind, device,
                                     input_means=plan.diagnostics,
                                     table=table.iloc[i:i + size] if table is not None else None))
        out = parts[0] if len(parts) == 1 else (
            pd.concat(parts, ignore_index=True) if parts else
            score_batch(entry.model, entry.metadata, [], plan.input_kind, device, input_means=plan.diagnostics,
                        table=table))
        entry.batches += len(parts)
        for row, message in refused.items():
            out.loc[row, "error"] = message
        if plan.diagnostics:
            out["worker_pid"] = os.getpid()
            out["worker_device"] = device
            out["worker_model_loads"] = entry.loads
            out["worker_batches"] = entry.batches
            out["worker_max_rss_bytes"] = _peak_rss_bytes()
            out["input_mean"] = out.pop("input_mean")  # the schema's order
        yield out


def _read_references(values: list, references: list[list], files: LakeFiles, refused: dict[int, str],
                     offset: int) -> list:
    """``values`` with each null content replaced by the file it refers to (``references``: the
    rows' paths and image ids; read from the path, checked against the id); why a file could not
    be used goes into ``refused``, keyed by row number (``offset`` + position)."""
    from lakeloop.errors import SourceChanged

    paths, ids = references
    out = list(values)
    for row, value in enumerate(values):
        if value is None and paths[row] and ids[row]:
            try:
                out[row] = files.read_verified(paths[row], ids[row], REFERENCED_IMAGE)
            except SourceChanged as exc:
                refused[offset + row] = str(exc)
    return out


def make_udf(plan: UdfPlan):
    """The pandas UDF scoring one binary column with ``plan``'s model; returns a struct
    (:func:`result_schema` of the model's task, plus :data:`DIAGNOSTIC_SCHEMA` with ``plan.diagnostics``)."""
    from pyspark.sql.functions import pandas_udf

    schema = result_schema(plan.task) + (", " + DIAGNOSTIC_SCHEMA if plan.diagnostics else "")

    @pandas_udf(schema)
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        # Imported in the worker, not captured: cloudpickle would ship a copy of this module's
        # globals with the closure, and the model cache must be the worker's own module dict.
        from lakeloop.scoring.udf import predict_partition

        yield from predict_partition(batches, plan)

    return predict


def resolve_model(registry: Registry, model_ref: "str | ModelVersion") -> tuple[ModelVersion, dict[str, Any]]:
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
    if isinstance(model_ref, ModelVersion):
        version = model_ref
    else:
        name, ref = parse_model_ref(model_ref)
        version = registry.resolve(name, ref)
    metadata = registry.read_metadata(version)
    required = _REQUIRED_TABLE_METADATA if metadata.get("input_kind") == "table" else _REQUIRED_METADATA
    missing = [k for k in required if k not in metadata]
    if missing:
        raise SourceError(
            f"{version.uri}/metadata.json lacks {', '.join(missing)}, which scoring needs to rebuild the model "
            f"and prepare its inputs; publish the model with lakeloop.training (or the same metadata keys)"
        )
    from lakeloop.models import registered_factory

    registered_factory(metadata)  # names a factory (or a built-in architecture) to rebuild it with
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
    model_ref: "str | ModelVersion",
    *,
    registry: Registry,
    input_col: str | None = None,
    input_kind: str | None = None,
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
    df : rows to score; only the image column (and the table columns a model of images and
        table columns reads) is sent to Python.
    model_ref : ``"digits_lenet"`` (latest), ``"digits_lenet:3"``, ``"digits_lenet@production"``
        or a :class:`~lakeloop.registry.ModelVersion`. Pinned to one version here.
    registry : the model registry, e.g. ``Registry.for_profile(profile)``; the executors
        read the weights through its storage settings.
    input_col : the binary column; default ``pixels`` if present, else ``content``.
    input_kind : ``"pixels"`` (preprocessed uint8 bytes) or ``"content"`` (image files);
        default: ``pixels`` for a column named so, else ``content``.
    batch_size : rows per forward pass. The Arrow batch size is a session setting read when
        the query runs; set ``spark.sql.execution.arrow.maxRecordsPerBatch`` to match around
        the action (see :func:`scoped_conf`) to keep worker memory at one batch.
    torch_threads : intra-op threads per task (1 when Spark runs one task per core).
    output_col : name of the struct column added: ``label, label_index, score, scores, error`` for a
        classifier; ``labels, scores, error`` (multilabel) or ``value, error`` (regression).
    flatten : add those fields as columns instead (named ``prefix + field``).
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
    version, metadata = resolve_model(registry, model_ref)
    check_table_columns(df.columns, metadata, "the DataFrame")
    plan = UdfPlan(registry, version, kind, batch_size, torch_threads, diagnostics, table_columns(metadata),
                   metadata.get("task", "classification"))
    predicted = make_udf(plan)(udf_input(column, plan))
    if not flatten:
        if output_col in df.columns:
            raise ConfigError(f"output_col = {output_col!r} is already a column of the input; pick another name")
        return df.withColumn(output_col, predicted)
    fields = result_fields(plan.task)
    names = [f"{prefix}{f}" for f in fields]
    clash = [n for n in names if n in df.columns]
    if clash:
        raise ConfigError(
            f"flattened prediction columns {clash} already exist in the input; pass prefix='predicted_' "
            f"or keep the struct (flatten=False)"
        )
    tmp = "__lakeloop_prediction"
    return df.withColumn(tmp, predicted).select(
        *df.columns, *[F.col(f"{tmp}.{f}").alias(n) for f, n in zip(fields, names)])


def register_udf(
    spark: "SparkSession",
    name: str,
    model_ref: "str | ModelVersion",
    *,
    registry: Registry,
    input_kind: str = INPUT_CONTENT,
    batch_size: int = DEFAULT_BATCH_SIZE,
    torch_threads: int = 1,
) -> ModelVersion:
    """Register the model as a SQL function: ``SELECT name(content).label FROM ...``.

    The function takes one binary argument (``input_kind``: image file bytes by default,
    ``"pixels"`` for preprocessed pixels) and returns the struct of :func:`result_schema` (a
    classifier's: :data:`RESULT_SCHEMA`).
    The reference is pinned now; register again to pick up a newer version.

    Returns
    -------
    ModelVersion
        the version the function scores with.

    Raises
    ------
    ConfigError, ModelNotFound, SourceError
        as for :func:`score`; also an ``input_kind`` that is not ``pixels``/``content``, and a
        model that reads table columns beside each image (score it with :func:`score`).
    """
    _check_batch(batch_size, torch_threads, "")
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"register_udf({name!r}): input_kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    if not re.fullmatch(r"[A-Za-z_]\w*", name or ""):
        raise ConfigError(f"register_udf: {name!r} is not a valid SQL function name (letters, digits, _)")
    version, metadata = resolve_model(registry, model_ref)
    if table_columns(metadata):
        raise ConfigError(f"register_udf({name!r}): model {version.name}:{version.version} reads table columns "
                          f"{list(table_columns(metadata))} beside each image, and a SQL function takes the image "
                          f"alone; score it with lakeloop.score(df, ...) or the score job")
    spark.udf.register(name, make_udf(UdfPlan(registry, version, input_kind, batch_size, torch_threads,
                                              task=metadata.get("task", "classification"))))
    return version


@dataclass(frozen=True)
class KeyedRows:
    """An input's rows with a key, one row per key, and what was left out on the way."""

    rows: "DataFrame"
    n_inputs: int
    n_without_key: int
    n_repeated: int
    warnings: tuple[str, ...]


def one_row_per_key(source: "DataFrame", key: str, uri: str, unique: bool = False) -> KeyedRows:
    """The rows of ``source`` that have a ``key``, one per key (MERGE needs one source row per key).

    ``unique``: the input is known to be unique by the key (a lake table MERGEd on it), so the
    distinct count, a shuffle, is skipped.
    """
    from pyspark.sql import functions as F

    sizes = source.agg(F.count(F.lit(1)).alias("rows"), F.count(key).alias("keys"),
                       (F.count(key) if unique else F.countDistinct(key)).alias("distinct")).first()
    n_without_key, n_repeated = sizes["rows"] - sizes["keys"], sizes["keys"] - sizes["distinct"]
    rows = source.where(F.col(key).isNotNull())
    warnings = []
    if n_without_key:
        warnings.append(f"{n_without_key} input row(s) have no {key} and were not scored (nothing to key their "
                        f"prediction by); fix them in {uri}")
    if n_repeated:
        rows = rows.dropDuplicates([key])
        warnings.append(f"{n_repeated} input row(s) repeat a {key}; one row per key was scored")
    return KeyedRows(rows, int(sizes["rows"]), int(n_without_key), int(n_repeated), tuple(warnings))


def bounded_chunks(rows: "DataFrame", key: str, cfg: Any) -> tuple[list["DataFrame"], int | None]:
    """The pending rows as the chunks to score and commit one after the other, and how many rows are
    pending in all (``None`` when nothing bounds the run: then it is one chunk, counted as it is scored).

    ``score.max_rows_per_run`` (of ``cfg``, a ScoreConfig) keeps the first rows by ``key``;
    ``score.commit_every_rows`` splits them into that many rows per chunk (about: by a hash of the
    key), each MERGEd on its own. A run killed after some chunks has committed them; the next
    run's plan leaves them out.
    """
    import math

    from pyspark.sql import functions as F

    if cfg.max_rows_per_run is None and cfg.commit_every_rows is None:
        return [rows], None
    total = rows.count()
    take = total
    if cfg.max_rows_per_run is not None and total > cfg.max_rows_per_run:
        take = cfg.max_rows_per_run
        rows = rows.orderBy(key).limit(take)
    n_chunks = max(1, math.ceil(take / cfg.commit_every_rows)) if cfg.commit_every_rows else 1
    if n_chunks == 1:
        return [rows], total
    bucket = F.pmod(F.xxhash64(key), F.lit(n_chunks))
    return [rows.where(bucket == i) for i in range(n_chunks)], total

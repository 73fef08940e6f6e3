"""The exceptions lakeloop raises; each message names the input, the setting and the fix."""

from __future__ import annotations


class LakeloopError(Exception):
    """Base class of every error lakeloop raises on purpose."""


class ConfigError(LakeloopError):
    """Thrown when a profile or command-line override is missing, unknown or malformed."""


class SetupError(LakeloopError):
    """Thrown when the machine lacks something the project setup provides (venv, JVM jars, mvn)."""


class SourceError(LakeloopError):
    """Thrown when an input location cannot be read or holds nothing of the expected kind."""


class SourceChanged(SourceError):
    """Thrown when a file the lake refers to (an image ingested by reference) is gone or holds other bytes."""


class SchemaMismatchError(LakeloopError):
    """Thrown when input columns do not match the declared schema and the config says to fail."""


class JobFailed(LakeloopError):
    """Thrown when a job ends with an outcome the run report marks as a failure."""


class ModelNotFound(LakeloopError):
    """Thrown when a model name, version or alias is not committed in the model registry."""


class QualityError(LakeloopError):
    """Thrown when a data-quality or bias threshold (``quality.*``) is crossed and ``quality.on_violation`` is fail."""


class ModelFactoryError(ConfigError):
    """Thrown when ``train.model`` names a factory that cannot be imported, fails, or returns no ``nn.Module``."""


class PromotionRefused(LakeloopError):
    """Thrown when the promotion gate keeps an alias where it is (the challenger does not beat the holder)."""


class TrainingFailed(LakeloopError):
    """Thrown when a training process started by TorchDistributor fails; names the process's own error."""


class ConcurrentWriteConflict(LakeloopError):
    """Thrown when another run committed to a Delta table while this run wrote to it (Delta refused the commit),
    or when other publishers of a model claimed every version number this run tried."""


def record_failure(exc: BaseException, check: str, item: str = "record") -> str:
    """The quarantine reason of a record whose per-record ``check`` (``"the JSON check"``,
    ``"Pillow's decoder"`` ...) raised ``exc``, an exception the check does not expect (``item``:
    what the input is called, a record or a file).

    Per-record checks catch what they know and turn it into a specific reason; whatever else a
    record provokes (``RecursionError`` from deep nesting, ``MemoryError`` from a size bomb,
    ``OverflowError``, a C extension's ``SystemError``) becomes this reason instead of a failed task,
    so one hostile record never fails its table on every run while the rest never arrive.
    """
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, RecursionError):
        return (f"{check} gave up on this {item} ({detail}): it is nested more deeply than Python can parse; "
                f"have its producer flatten it")
    if isinstance(exc, MemoryError):
        return (f"{check} ran out of memory on this {item} ({detail}): it needs more memory than a Python "
                f"worker has (spark.executor.pyspark.memory); shrink it at its origin, or raise that limit and "
                f"rerun" + (" after touching the file (ingestion takes a file again once it changes)"
                            if item == "file" else ""))
    return (f"{check} failed on this {item} with an error it does not expect ({detail}); the {item} is kept "
            f"here: fix it at its origin, or report the error to the lakeloop developers with this {item}")

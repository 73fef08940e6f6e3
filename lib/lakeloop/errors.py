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
    """Thrown when another run committed to a Delta table while this run wrote to it (Delta refused the commit)."""

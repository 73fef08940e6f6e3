"""The lake's layout: every URI lakeloop reads or writes under ``lake_root``, in one place.

::

    <lake_root>/bronze/images               Delta: accepted images (ingest_images)
               /bronze/<table>              Delta: accepted rows of each ingested table (ingest_tables)
               /quarantine/<table>          Delta: refused inputs of each job, with a reason
               /_ledger/images              Delta: every image file ingestion has seen, and its outcome
               /silver/features             Delta: preprocessed images + joined columns (build_features)
               /gold/predictions            Delta: the scoring job's output
               /_training_sets/v<features version>-<spec key>-<files>/<split>   Parquet read by Petastorm
               /_checkpoints/<model>/<training key>/epoch-NNNN.pt
               /_streams/score/<source>/<model>/v<version>   Structured Streaming checkpoints (score --stream)
               /_streams/ingest_images/source-<hash>          (ingest_images --stream)
               /models/<model>/<version>/   the model registry (lakeloop.registry)
               /_state/<step>/<key>.json     what a step recorded of its last run, to skip unchanged work
               /_reports/<job>/<run id>.json, latest.json   write-only records of runs (no step reads them)

Also the names that become folders in it: model names and aliases (:func:`check_model_name`,
:func:`check_alias`, :func:`parse_model_ref`) and lake table references such as
``bronze.digits_meta`` (:func:`table_ref`). Nothing else in lakeloop builds a lake path.
Pure string work: no Spark, no filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from lakeloop.errors import ConfigError, ModelFactoryError

# No leading "." or "_": Hadoop and Spark listings hide such names, and "." / ".." would escape the root.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[1-9][0-9]*$")
_TABLE_REF = re.compile(r"^([A-Za-z_]\w*)\.([A-Za-z_]\w*)$")
LATEST = "latest"
PRODUCTION = "production"
_MODEL_REF_FORMS = ("write NAME, NAME:VERSION or NAME@ALIAS, e.g. digits_lenet, digits_lenet:3 or "
                    "digits_lenet@production")
# The schemes lakeloop reaches a lake or a source through, with Spark and without it (lakeloop.io.lakefs):
# s3 and s3a (Databricks on AWS writes s3://; open-source Spark needs s3a), Azure's abfss and wasbs,
# Google's gs; and Unity Catalog volumes, written without a scheme as /Volumes/<catalog>/<schema>/<volume>.
LAKE_SCHEMES = ("file", "dbfs", "s3a", "s3", "hdfs", "abfss", "wasbs", "gs")
VOLUMES_ROOT = "/Volumes"


def safe_uri(uri: str) -> str:
    """``uri`` with any ``user:password@`` part masked, for error messages."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1***@", uri) if isinstance(uri, str) else repr(uri)


@dataclass(frozen=True)
class LakeLayout:
    """Every location of one lake, from its root URI (``file:/data/lake``, ``s3a://bucket/lake`` ...).

    ``LakeLayout(profile.lake_root)``; the root is taken as it is (the profile checked its scheme).
    """

    root: str

    def table(self, layer: str, name: str) -> str:
        """A lake table, e.g. ``table("bronze", "images")``."""
        return f"{self.root}/{layer}/{name}"

    # -- ingestion
    @property
    def bronze_images(self) -> str:
        return self.table("bronze", "images")

    @property
    def quarantine_images(self) -> str:
        return self.table("quarantine", "images")

    @property
    def images_ledger(self) -> str:
        """Every file image ingestion has seen, with its outcome: what makes reruns incremental."""
        return self.table("_ledger", "images")

    @property
    def image_label_conflicts(self) -> str:
        """Images whose bytes the source holds under two or more labels, with those paths and labels."""
        return self.table("quarantine", "image_label_conflicts")

    @property
    def forgotten(self) -> str:
        """Tombstones of erased records (``lakeloop forget``): ingestion never takes them in again."""
        return self.table("_ledger", "forgotten")

    def bronze_table(self, name: str) -> str:
        return self.table("bronze", name)

    def quarantine_table(self, name: str) -> str:
        return self.table("quarantine", name)

    # -- features, training, scoring
    @property
    def features(self) -> str:
        return self.table("silver", "features")

    @property
    def quarantine_features(self) -> str:
        return self.table("quarantine", "features")

    @property
    def training_sets(self) -> str:
        """Folder of every materialized training set."""
        return f"{self.root}/_training_sets"

    @staticmethod
    def training_set_lease(training_set: str) -> str:
        """The file a training run rewrites in the training set it reads (``lakeloop maintain`` keeps the set)."""
        return f"{training_set}/_LEASE"

    def training_set(self, features_version: int, spec_key: str, files: int) -> str:
        """The Parquet training set of ``silver.features`` at one version, spec and file count."""
        return f"{self.root}/_training_sets/v{int(features_version)}-{spec_key}-{int(files)}"

    @property
    def checkpoints_root(self) -> str:
        """Folder of every training run's checkpoints, one folder per model."""
        return f"{self.root}/_checkpoints"

    def checkpoints(self, model_name: str, training_key: str) -> str:
        """Checkpoints of one training run (named by everything that decides its result)."""
        return f"{self.root}/_checkpoints/{check_model_name(model_name)}/{training_key}"

    def stream_checkpoint(self, job: str, source: str, model_name: str, version: int) -> str:
        """Checkpoint folder of a streaming query of ``job`` over the table named ``source`` for one
        model version: a new version (or a moved alias) starts its own stream from the first row."""
        return f"{self.root}/_streams/{job}/{source}/{check_model_name(model_name)}/v{int(version)}"

    def ingest_checkpoint(self, source_key: str) -> str:
        """Checkpoint folder of ``ingest_images --stream`` over one source folder (``source_key``
        names it: a hash of its URI)."""
        if not source_key.replace("-", "").isalnum():
            raise ValueError(f"ingest checkpoint key {source_key!r} must be letters, digits and '-'")
        return f"{self.root}/_streams/ingest_images/{source_key}"

    @property
    def registry(self) -> str:
        """Root of the model registry (:class:`lakeloop.registry.Registry`)."""
        return f"{self.root}/models"

    @property
    def predictions(self) -> str:
        return self.table("gold", "predictions")

    @property
    def quarantine_predictions(self) -> str:
        return self.table("quarantine", "predictions")

    # -- a table as training data (features.table): named after its source table
    def table_features(self, name: str) -> str:
        """``silver.<name>_features``: the rows of a source table with their split and target."""
        return self.table("silver", f"{name}_features")

    def table_predictions(self, name: str) -> str:
        """``gold.<name>_predictions``: a model's predictions for those rows, keyed by the table's key."""
        return self.table("gold", f"{name}_predictions")

    # -- run reports
    @property
    def model_evaluations(self) -> str:
        """Per (model, version, split): accuracy, F1, top-k, calibration and per-group figures."""
        return self.table("gold", "model_evaluations")

    def tables(self, ingested_tables: Iterable[str] = (), ledger: bool = False,
               feature_tables: Iterable[str] = ()) -> list[tuple[str, str]]:
        """(layer, name) of every Delta table the jobs write, in pipeline order; ``ingested_tables``:
        the names of ``ingest_tables.tables``; ``ledger``: with the ingest ledger; ``feature_tables``:
        the source tables trained on as tables (``features.table``)."""
        tables = [("bronze", "images"), ("quarantine", "images")] + ([("_ledger", "images")] if ledger else [])
        tables += [(layer, t) for t in ingested_tables for layer in ("bronze", "quarantine")]
        tables += [("silver", "features"), ("quarantine", "features"), ("gold", "predictions"),
                   ("quarantine", "predictions"), ("gold", "model_evaluations")]
        tables += [t for name in feature_tables for t in (("silver", f"{name}_features"),
                                                          ("gold", f"{name}_predictions"))]
        return tables

    def reports(self, job: str) -> str:
        """Folder of a job's run reports (JSON) and their pages (HTML)."""
        return f"{self.root}/_reports/{job}"

    def step_state(self, step: str, key: str) -> str:
        """What ``step`` recorded of its last run over ``key`` (a table name, a model and input):
        :mod:`lakeloop.io.step_state`. Steps read it; run reports are never read back."""
        return f"{self.root}/_state/{step}/{key}.json"

    def latest_report(self, job: str) -> str:
        """The JSON report of a job's latest run (``write_report`` writes it beside the run's own)."""
        return f"{self.reports(job)}/latest.json"

    def tensorboard(self, run_id: str) -> str:
        """TensorBoard event files of one training run."""
        return f"{self.reports('train')}/{run_id}/tensorboard"

    @staticmethod
    def source_name(ref: str) -> str:
        """The name a source table gives its feature and prediction tables: ``bronze.wine`` -> ``wine``,
        a URI -> its last folder."""
        parts = table_ref(ref)
        return parts[1] if parts else ref.rstrip("/").rsplit("/", 1)[-1]

    def resolve_table(self, ref: str) -> str:
        """``bronze.digits_meta`` -> that table's URI in this lake; any other text is returned as it is
        (a Delta table URI)."""
        parts = table_ref(ref)
        return self.table(*parts) if parts else ref


def table_ref(ref: str) -> tuple[str, str] | None:
    """``"bronze.digits_meta"`` -> ``("bronze", "digits_meta")``; None for anything else (a URI)."""
    match = _TABLE_REF.match(ref) if isinstance(ref, str) else None
    return (match.group(1), match.group(2)) if match else None


# --------------------------------------------------------------------------- registry names


def check_model_name(name: str) -> str:
    """Return ``name`` if it can name a model folder, else raise a ConfigError saying what is allowed."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_' and '.', starting with a "
            f"letter or digit, at most 128 characters (e.g. train.model_name: digits_lenet)"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it can name an alias file (not all digits: those are versions)."""
    if not isinstance(alias, str) or not _NAME.match(alias) or alias.isdigit():
        raise ConfigError(
            f"alias {alias!r} is not valid: use letters, digits, '-', '_' and '.', starting with a letter "
            f"or digit and not all digits (those are version numbers), e.g. 'production' or 'staging'"
        )
    return alias


def is_version_number(text: str) -> bool:
    """Whether ``text`` names a version folder (``1``, ``2``, ...)."""
    return bool(_VERSION.match(text))


def parse_model_ref(text: str) -> tuple[str, str]:
    """Split a model reference into ``(name, ref)``.

    ``"digits_lenet"`` -> ``("digits_lenet", "latest")``, ``"digits_lenet:3"`` ->
    ``("digits_lenet", "3")``, ``"digits_lenet@production"`` -> ``("digits_lenet", "production")``.

    Raises
    ------
    ConfigError
        anything else; the message shows the three forms.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"model reference {text!r} is empty; {_MODEL_REF_FORMS}")
    text = text.strip()
    if "@" in text and ":" in text:
        raise ConfigError(f"model reference {text!r} has both ':' and '@'; {_MODEL_REF_FORMS}")
    if ":" in text:
        name, _, ref = text.partition(":")
        if not is_version_number(ref):
            raise ConfigError(
                f"model reference {text!r}: {ref!r} after ':' is not a version number; {_MODEL_REF_FORMS}")
    elif "@" in text:
        name, _, ref = text.partition("@")
        try:
            check_alias(ref)
        except ConfigError as exc:
            raise ConfigError(f"model reference {text!r}: {exc}; {_MODEL_REF_FORMS}") from None
    else:
        name, ref = text, LATEST
    try:
        check_model_name(name)
    except ConfigError as exc:
        raise ConfigError(f"model reference {text!r}: {exc}; {_MODEL_REF_FORMS}") from None
    return name, ref


# Short names of the built-in factories (lakeloop.models.builtin).
BUILTIN_FACTORIES = {
    "lenet5": "lakeloop.models.builtin:lenet5",
    "small_resnet": "lakeloop.models.builtin:small_resnet",
    "resnet18": "lakeloop.models.builtin:resnet18",
    "mlp": "lakeloop.models.builtin:mlp",
}
_FACTORY_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def factory_reference(name: str) -> str:
    """The full ``module:attribute`` reference of a ``train.model`` value (a built-in alias or a reference).

    Raises
    ------
    ModelFactoryError
        neither a built-in name nor of the form ``package.module:factory``.
    """
    if name in BUILTIN_FACTORIES:
        return BUILTIN_FACTORIES[name]
    if not isinstance(name, str) or not _FACTORY_REFERENCE.fullmatch(name):
        raise ModelFactoryError(
            f"train.model = {name!r} is neither a built-in model ({', '.join(BUILTIN_FACTORIES)}) nor a factory "
            f"reference of the form package.module:factory (e.g. my_models.vision:build)"
        )
    return name

"""Training metrics in the tools users already have: TensorBoard event files and MLflow runs.

* :class:`EpochEvents`: rank 0 of a training run writes loss, validation accuracy, learning
  rate and throughput per epoch with TensorBoard's own writer (``torch.utils.tensorboard``)
  to a local folder and copies the event file into the lake after every epoch
  (``_reports/train/<run_id>/tensorboard``), so ``tensorboard --logdir`` shows a run while
  it trains, wherever the lake is (TensorBoard itself reads only local and a few cloud
  file systems). On (``observe.tensorboard``) by default.
* :func:`log_mlflow_run`: when the profile names ``observe.mlflow_tracking_uri``, the driver
  logs the run's parameters, per-epoch metrics, final metrics, the lineage (features table
  and Delta version, training set, registry version, code version) and the model;
  :func:`find_logged_run` tells a rerun whether a published version is in MLflow yet.

Neither is needed when neither is configured; each import happens only when used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from lakeloop.errors import ConfigError
from lakeloop.io.lakefs import LakeFiles

# Per-epoch history keys (lakeloop.training.rank) -> TensorBoard tags / MLflow metric names.
EPOCH_SCALARS = {
    "train_loss": "train/loss",
    "val_accuracy": "validation/accuracy",
    "val_loss": "validation/loss",
    "learning_rate": "train/learning_rate",
    "images_per_s": "train/images_per_s",
}


class EpochEvents:
    """TensorBoard event files of one run: written locally, copied to ``lake_dir`` after each epoch."""

    def __init__(self, lake_dir: str, hadoop_conf: Mapping[str, str]):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.lake_dir = lake_dir
        self._files = LakeFiles(dict(hadoop_conf))
        self._local = tempfile.mkdtemp(prefix="lakeloop-tensorboard-")
        self._writer = SummaryWriter(log_dir=self._local)

    def log_epoch(self, entry: Mapping[str, Any]) -> None:
        """One epoch of the history (``epoch`` counts from 1), then copy the event files to the lake."""
        for key, tag in EPOCH_SCALARS.items():
            if entry.get(key) is not None:
                self._writer.add_scalar(tag, float(entry[key]), int(entry["epoch"]))
        self._writer.flush()
        self._upload()

    def _upload(self) -> None:
        self._files.makedirs(self.lake_dir)
        for path in sorted(Path(self._local).iterdir()):
            self._files.write_bytes_atomic(f"{self.lake_dir}/{path.name}", path.read_bytes())

    def close(self) -> None:
        self._writer.close()
        self._upload()
        shutil.rmtree(self._local, ignore_errors=True)


def open_epoch_events(lake_dir: str | None, hadoop_conf: Mapping[str, str]) -> tuple[EpochEvents | None, str | None]:
    """An :class:`EpochEvents` for ``lake_dir``, or ``(None, why)`` when TensorBoard is off or missing."""
    if lake_dir is None:
        return None, None
    try:
        return EpochEvents(lake_dir, hadoop_conf), None
    except ImportError as exc:
        return None, (f"no TensorBoard event files: {exc}; install tensorboard (requirements/<stack>.txt) or set "
                      f"observe.tensorboard: false")


def _artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: next to a SQLite database (MLflow's own default is
    ``./mlruns`` under the current folder, which differs per process); the server's choice otherwise."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return Path(tracking_uri[len(prefix):]).resolve().parent.joinpath("mlflow-artifacts").as_uri()
    return None


def log_mlflow_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    model: Any = None,
    input_example: Any = None,
) -> dict[str, str]:
    """Log one training run to MLflow; returns its ``run_id``, ``experiment_id`` and ``model_uri``.

    The model is logged with ``mlflow.pytorch`` in the ``pt2`` format (``torch.export``, no
    pickle), traced with ``input_example``. MLflow's usage telemetry is switched off first
    (``MLFLOW_DISABLE_TELEMETRY``): lakeloop reaches no network at run time but what the
    profile names.

    Raises
    ------
    ConfigError
        mlflow is not installed, or the tracking store refuses the run (the message names the URI).
    """
    mlflow, client = _client(tracking_uri)
    with _store_errors(mlflow, tracking_uri, "refused the run"):
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(
            experiment, artifact_location=_artifact_location(tracking_uri))
        run_id = client.create_run(experiment_id, run_name=run_name, tags=dict(tags)).info.run_id
    with _store_errors(mlflow, tracking_uri, "refused the run"), _failed_if_raises(client, run_id):
        client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        for entry in history:
            for key in EPOCH_SCALARS:
                if entry.get(key) is not None:
                    client.log_metric(run_id, key, float(entry[key]), step=int(entry["epoch"]))
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value))
        model_uri = _log_model(mlflow, tracking_uri, run_id, model, input_example) if model is not None else ""
        client.set_terminated(run_id)
    return {"run_id": run_id, "experiment_id": experiment_id, "model_uri": model_uri}


def find_logged_run(tracking_uri: str, experiment: str, tag: str, value: str) -> str | None:
    """The id of a run of ``experiment`` that finished logging and is tagged ``tag = value``
    (``lakeloop.model = digits_lenet:3``); None when there is none (a run that failed halfway does not count).

    Raises
    ------
    ConfigError
        mlflow is not installed, or the tracking store cannot be read (the message names the URI).
    """
    query = f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'"
    mlflow, client = _client(tracking_uri)
    with _store_errors(mlflow, tracking_uri, "cannot be read"):
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], filter_string=query, max_results=1) if found else []
    return runs[0].info.run_id if runs else None


@contextlib.contextmanager
def _store_errors(mlflow: Any, tracking_uri: str, what: str) -> Iterator[None]:
    """MLflow's own errors as a ConfigError naming the tracking URI."""
    try:
        yield
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"MLflow at observe.mlflow_tracking_uri = {tracking_uri} {what}: {exc}") from exc


@contextlib.contextmanager
def _failed_if_raises(client: Any, run_id: str) -> Iterator[None]:
    """A run left half-logged is marked FAILED (:func:`find_logged_run` skips it); the error goes on."""
    try:
        yield
    except Exception:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store that just failed may refuse this too; the first error counts
            pass
        raise


def _client(tracking_uri: str) -> tuple[Any, Any]:
    """``(mlflow, MlflowClient(tracking_uri))``, MLflow's usage telemetry off."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(f"observe.mlflow_tracking_uri is set but mlflow cannot be imported ({exc}); install "
                          f"mlflow-skinny (requirements/<stack>.txt) or unset observe.mlflow_tracking_uri") from exc
    return mlflow, MlflowClient(tracking_uri)


def _log_model(mlflow: Any, tracking_uri: str, run_id: str, model: Any, input_example: Any) -> str:
    import torch

    mlflow.set_tracking_uri(tracking_uri)  # log_model logs through the fluent API's tracking URI
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(model, name="model", serialization_format="pt2",
                                        input_example=input_example,
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    return info.model_uri

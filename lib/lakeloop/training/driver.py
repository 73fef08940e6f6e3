"""Driver side of training: materialize the set, check the cluster, launch TorchDistributor,
publish the model. The per-process work is :func:`lakeloop.training.rank.train_rank`.

Idempotent: a training run is named by a key over its inputs (features version,
preprocessing, settings, number of processes). Its checkpoints live under
``_checkpoints/<model>/<key>/``, so a run killed mid-way and started again resumes from
the newest one; and a finished run is found in the registry by that key, so a rerun
publishes nothing new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lakeloop.config import AugmentConfig, Profile, TrainConfig, init_source, is_secret_setting
from lakeloop.errors import ConfigError, SourceError, TrainingFailed
from lakeloop.layout import LakeLayout, factory_reference
from lakeloop.models.spec import ModelSpec
from lakeloop.registry import WEIGHTS_FILE, ModelVersion, Registry, StagedFile
from lakeloop.report import RunReport
from lakeloop.training.capacity import (  # noqa: F401 - re-exported: importable from here as before
    check_capacity,
    gpu_capacity,
    registered_executors,
)
from lakeloop.training.dataset import TrainingSet, input_statistics, materialize, table_layout
from lakeloop.training.loader import PLAN_VERSION, plan_shards
from lakeloop.training.plan import IdDigest, TrainPlan, failure_dir, id_hashes, recorded_failures
from lakeloop.training.rank import train_rank

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def code_version() -> str:
    """The version of the lakeloop code that runs: the commit stamped into the library zip that
    ``./spark-submit.sh`` ships (``lakeloop/_build.json``), else the installed distribution's version."""
    from importlib import metadata, resources

    try:
        stamp = json.loads(resources.files("lakeloop").joinpath("_build.json").read_text(encoding="utf-8"))
        if stamp.get("commit"):
            return str(stamp["commit"])
    except (OSError, ValueError):
        pass  # not a stamped build: a checkout on PYTHONPATH, or an installed wheel
    try:
        return f"lakeloop-{metadata.version('lakeloop')}"
    except metadata.PackageNotFoundError:
        from lakeloop import __version__

        return f"lakeloop-{__version__}"


def training_key(cfg: TrainConfig, ts: TrainingSet, init: dict[str, Any] | None = None) -> str:
    """Names one training run by everything that decides its result (the starting weights by their
    checksum, so a moved alias or a replaced file is a new run)."""
    # The reader and its prefetch do not change the batches (both readers execute the same plan);
    # the plan's version does, so it is in the key and a resume never mixes two orders.
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("alias", "local_mode", "reader", "prefetch")}
    if not cfg.augment or cfg.augmentation == AugmentConfig():
        # What augmentation was before it had settings: the runs keyed then keep their keys.
        settings.pop("augmentation")
    material = {"settings": settings, "features_version": ts.features_version, "spec": ts.key,
                "root": ts.root, "classes": ts.classes, "feed_plan": PLAN_VERSION}
    if init is not None:
        material["init_sha256"] = init["sha256"]
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def model_spec(cfg: TrainConfig, ts: TrainingSet) -> ModelSpec:
    """What the factory is told: the input's kind and shape (and the table columns' layout), the
    task and its outputs (one per class or label, or one value), train.model_options."""
    return ModelSpec(num_outputs=ts.num_outputs, input_shape=ts.input_shape, input_kind=ts.input_kind, task=ts.task,
                     class_names=tuple(ts.classes), table_features=tuple(table_layout(ts)),
                     options=dict(cfg.model_options))


def resolve_init(profile: Profile, registry: Registry) -> dict[str, Any] | None:
    """The weights ``train.init_from`` names, pinned: their URI and SHA-256, and the parent version
    for a registered model (an alias resolved once, here).

    Raises
    ------
    ModelNotFound
        no such committed version or alias.
    SourceError
        the weights file cannot be read.
    """
    text = profile.train.init_from
    if text is None:
        return None
    source = init_source(text)
    if source[0] == "model":
        parent = registry.resolve(source[1], source[2])
        data = registry.read_weights(parent)  # checked against the version's recorded checksum
        uri = f"{parent.uri}/{WEIGHTS_FILE}"
        lineage = {"model": parent.name, "version": parent.version, "uri": parent.uri, "asked_for": text}
    else:
        uri = source[1]
        try:
            data = registry.files.read_bytes(uri)
        except (FileNotFoundError, IsADirectoryError):
            raise SourceError(f"train.init_from {uri}: no such file; give the URI of a torch.save(state_dict) "
                              f"file, or a registered model as NAME:VERSION or NAME@alias") from None
        lineage = {"weights_file": uri}
    return {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "source": text, "lineage": lineage}


def check_factory(cfg: TrainConfig, spec: ModelSpec) -> dict[str, Any]:
    """Build the model once on the driver, before any process starts: a factory that cannot be
    imported, fails or returns no module is reported here, with the fix."""
    from lakeloop.models import build_model

    model = build_model(cfg.model, spec)
    return {"factory": factory_reference(cfg.model), "parameters": sum(p.numel() for p in model.parameters())}


def class_weights(spark: "SparkSession", ts: TrainingSet, cfg: TrainConfig) -> tuple[float, ...] | None:
    """``balanced`` class weights from the train split: rows / (classes x rows of the class); a class
    without training rows gets 0."""
    if cfg.class_weights == "none":
        return None
    counts = {r["label_index"]: r["count"] for r in
              spark.read.parquet(ts.split_uri("train")).groupBy("label_index").count().collect()}
    total, k = sum(counts.values()), len(ts.classes)
    return tuple(round(total / (k * counts[i]), 6) if counts.get(i) else 0.0 for i in range(k))


def make_plan(profile: Profile, ts: TrainingSet, run_id: str, key: str, init: dict[str, Any] | None = None,
              weights: tuple[float, ...] | None = None) -> TrainPlan:
    """The per-process plan: ``profile.train`` as it is, and what follows from it and the training set
    (the splits' URIs, the shards, the run's folders, the initial weights, the class weights)."""
    cfg = profile.train
    return TrainPlan(
        run_id=run_id,
        train_url=ts.split_uri("train"),
        val_url=ts.split_uri("validation"),
        test_url=ts.split_uri("test"),
        spec_json=ts.spec.to_json() if ts.spec is not None else "",
        classes=ts.classes,
        shards=plan_shards(ts.split_uri("train"), cfg.num_processes, cfg.batch_size, profile.hadoop_conf()),
        checkpoint_dir=LakeLayout(profile.lake_root).checkpoints(cfg.model_name, key),
        train=cfg,
        model=factory_reference(cfg.model),
        model_spec=model_spec(cfg, ts).to_dict(),
        init_weights=init["uri"] if init else None,
        init_weights_sha256=init["sha256"] if init else None,
        init_source=init["source"] if init else None,
        hadoop_conf=profile.hadoop_conf(),
        tensorboard_dir=LakeLayout(profile.lake_root).tensorboard(run_id) if profile.observe.tensorboard else None,
        class_weights=weights,
        task=ts.task,
        feed=ts.feed.to_dict(),
        target_scale=ts.target["std"] if ts.target else 1.0,
        staging_dir=Registry.for_profile(profile).staging_uri(cfg.model_name, run_id),
    )


# A Python exception line in torchrun's output ("ValueError: ..."), as a traceback ends.
_EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Failed|Interrupt)): (.+)$",
                             re.MULTILINE)
# ... that only wrap the process's own: torchrun's, TorchDistributor's, Spark's.
_WRAPPERS = ("ChildFailedError", "PythonException", "Py4JJavaError", "SparkException", "BarrierJobRunFailed")


def process_error(text: str) -> str:
    """The first error a training process raised, from the text of TorchDistributor's failure (its
    message holds the tail of torchrun's output), e.g. ``ConfigError: ...``; else its first line."""
    for match in _EXCEPTION_LINE.finditer(text):
        name, message = match.group(1), match.group(2).strip()
        if name.rsplit(".", 1)[-1] in _WRAPPERS or message.startswith("Command ["):
            continue
        return f"{name.rsplit('.', 1)[-1]}: {message[:500]}"
    return text.strip().splitlines()[0][:500] if text.strip() else "no output"


def run_distributed(plan: TrainPlan) -> dict[str, Any]:
    """Run :func:`train_rank` in ``train.num_processes`` processes (``plan.train``) through TorchDistributor."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from lakeloop.io.lakefs import LakeFiles

    LakeFiles(plan.hadoop_conf).delete_dir(failure_dir(plan))  # an earlier attempt's, not this one's
    cfg = plan.train
    distributor = TorchDistributor(num_processes=cfg.num_processes, local_mode=cfg.local_mode, use_gpu=cfg.use_gpu)
    try:
        result = distributor.run(train_rank, plan)
    except Exception as exc:  # a Py4JJavaError (barrier job) or RuntimeError (local mode) around torchrun's output
        raise TrainingFailed(failure_message(plan, str(exc))) from exc
    if not isinstance(result, dict) or "weights_file" not in result:
        raise RuntimeError(f"training returned no result from rank 0 (got {type(result).__name__})")
    return result


def failure_message(plan: TrainPlan, distributor_error: str) -> str:
    """Why training failed: the first process to fail, its error and the end of its traceback, from
    what the processes recorded (:func:`~lakeloop.training.rank.record_failure`); else the first
    error in TorchDistributor's exception."""
    failures = recorded_failures(plan)
    if not failures:
        return (f"training failed in a TorchDistributor process: {process_error(distributor_error)}. The "
                f"processes' output is printed above (on a cluster also in the executors' logs); the full "
                f"error follows")
    first = failures[0]
    others = "".join(f"; then rank {f['rank']} on {f['host']}: {f['error'][:200]}" for f in failures[1:])
    tail = "".join(first["traceback"].splitlines(keepends=True)[-12:])
    return (f"training failed: rank {first['rank']} on {first['host']} raised {first['error'][:500]}{others}. "
            f"Its traceback is in {first['uri']}; it ends:\n{tail}")


def _metadata(profile: Profile, ts: TrainingSet, result: dict[str, Any], run_id: str,
              statistics: dict[str, Any], plan: TrainPlan, init: dict[str, Any] | None) -> dict[str, Any]:
    """What the registry records about the trained model: enough to rebuild it (factory, spec),
    prepare its inputs, and trace it back to its data, settings, parent weights and code."""
    from lakeloop.models import model_record

    cfg = profile.train
    inputs: dict[str, Any] = {"preprocess": json.loads(ts.spec.to_json())} if ts.spec is not None else {
        "table": {"source": profile.features.table.source, "key": profile.features.table.key,
                  "target": profile.features.table.target, "encoding": ts.encoding, "target_scale": ts.target,
                  "multilabel_threshold": cfg.multilabel_threshold}}
    if ts.input_kind == "image_table":
        inputs["table_inputs"] = {"encoding": ts.encoding}
    if ts.spec is not None and ts.task != "classification":
        # What scoring turns the outputs back with: regression's train mean and std, multilabel's threshold.
        inputs["image_target"] = {"column": profile.features.target, "target_scale": ts.target,
                                  "multilabel_threshold": cfg.multilabel_threshold}
    return {
        "model": model_record(cfg.model, plan.factory_spec()),
        "task": ts.task,
        "input_kind": plan.factory_spec().input_kind,
        "classes": list(ts.classes),
        **inputs,
        "input_shape": list(ts.input_shape),
        "metrics": {"per_epoch": result["history"], "val_accuracy": result["val_accuracy"],
                    "test_accuracy": result["test_accuracy"], "val": result["val"], "test": result["test"],
                    "published_epoch": result["published_epoch"], "epochs_trained": result["epochs_trained"],
                    "stopped_early": result["stopped_early"], "initial_val": result["initial_val"]},
        "lineage": {"init_from": {**init["lineage"], "sha256": init["sha256"], "fit": result["init_fit"]}
                    if init else None},
        "features": {"table": ts.features_uri, "delta_version": ts.features_version,
                     "training_set": ts.root, "rows": ts.rows},
        "training": {**dataclasses.asdict(cfg), "run_id": run_id, "world_size": result["world_size"],
                     "device": result["device"], "resumed_from_epoch": result["resumed_from_epoch"],
                     "class_weights": list(plan.class_weights) if plan.class_weights else None},
        "input_statistics": statistics,
        "code_version": code_version(),
        "torch_version": result["torch_version"],
        "trained_at": datetime.now(timezone.utc).isoformat(),
    }


def _publish(profile: Profile, registry: Registry, ts: TrainingSet, result: dict[str, Any], key: str,
             statistics: dict[str, Any], report: RunReport, plan: TrainPlan,
             init: dict[str, Any] | None) -> tuple[ModelVersion, Any, Any]:
    """Publish the weights rank 0 staged and the metadata, move the alias, drop the run's checkpoints
    and staging folder; returns the version, the model (read back from the registry when MLflow
    logs it, else ``None``) and an example input."""
    import torch

    from lakeloop.models import load_model

    cfg = profile.train
    metadata = _metadata(profile, ts, result, report.run_id, statistics, plan, init)
    version = registry.publish(cfg.model_name, StagedFile(**result["weights_file"]), metadata, idempotency_key=key)
    registry.files.delete_dir(registry.staging_uri(cfg.model_name, report.run_id))  # this run's own
    model = load_model(registry, version)[0] if profile.observe.mlflow_tracking_uri else None
    example = torch.zeros(1, *ts.input_shape)
    if cfg.alias:
        registry.set_alias(cfg.model_name, cfg.alias, version.version, action="train",
                           reason=f"train.alias of run {report.run_id}")
    registry.files.delete_dir(LakeLayout(profile.lake_root).checkpoints(cfg.model_name, key))
    return version, model, example


def _track(report: RunReport, version: ModelVersion, log: Any) -> None:
    """Run ``log`` (MLflow logging of the published ``version``); a failure is a warning, never the run's:
    the model is published and the registry is the record, tracking a view of it that a rerun completes."""
    with report.timed("mlflow"):
        try:
            report.details["mlflow"] = log()
        except Exception as exc:  # noqa: BLE001 - an export error (torch.export, the artifact store) too
            report.warnings.append(f"{version.name}:{version.version} is published but not in MLflow "
                                   f"({type(exc).__name__}: {exc}); run train again with the same settings "
                                   f"to log it")


def _log_published(profile: Profile, ts: TrainingSet, registry: Registry, version: ModelVersion,
                   report: RunReport) -> dict[str, Any]:
    """A rerun finding ``version`` published: log it to MLflow, from the registry, unless a run of it
    finished logging there before (an earlier run's export may have failed after publishing)."""
    import torch

    from lakeloop.models import load_model
    from lakeloop.tracking import find_logged_run

    ref = f"{version.name}:{version.version}"
    logged = find_logged_run(profile.observe.mlflow_tracking_uri, profile.observe.mlflow_experiment,
                             MLFLOW_MODEL_TAG, ref)
    if logged is not None:
        return {"run_id": logged, "logged_before": True}
    model, metadata = load_model(registry, version)
    figures = metadata["metrics"]
    result = {"history": figures["per_epoch"], "val": figures["val"] or {}, "test": figures["test"] or {}}
    return _log_mlflow(profile, ts, result, version, model, torch.zeros(1, *ts.input_shape), report,
                       run_id=metadata["training"]["run_id"])


# The MLflow tag naming the registered version a run logged (NAME:VERSION).
MLFLOW_MODEL_TAG = "lakeloop.model"


def _log_mlflow(profile: Profile, ts: TrainingSet, result: dict[str, Any], version: ModelVersion, model: Any,
                example: Any, report: RunReport, run_id: str | None = None) -> dict[str, str]:
    """The run in MLflow (observe.mlflow_tracking_uri): parameters, per-epoch and final metrics,
    the lineage to the features' Delta version and the registry, and the model. ``run_id``: the
    training run's (default this run's)."""
    from lakeloop.tracking import log_mlflow_run

    run_id = run_id or report.run_id
    lineage = {
        "lakeloop.run_id": run_id,
        MLFLOW_MODEL_TAG: f"{version.name}:{version.version}",
        "lakeloop.model_uri": version.uri,
        "lakeloop.features_table": ts.features_uri,
        "lakeloop.features_delta_version": str(ts.features_version),
        "lakeloop.training_set": ts.root,
        "lakeloop.code_version": code_version(),
    }
    return log_mlflow_run(
        profile.observe.mlflow_tracking_uri, profile.observe.mlflow_experiment, run_id,
        params={k: v for k, v in dataclasses.asdict(profile.train).items() if v is not None},
        history=result["history"],
        metrics=_final_metrics(result),
        # A batch of two: torch.export specialises a dimension whose example size is 1.
        # A model of images and table columns takes two arguments: its run is logged, not the model.
        tags=lineage, model=model if ts.input_kind != "image_table" else None,
        input_example=example.repeat(2, *[1] * (example.dim() - 1)).numpy(),
    )


def _final_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The run's final figures, named as MLflow and the run report show them: ``final_val_<x>``, ``test_<x>``."""
    figures = {f"final_val_{k}": v for k, v in result["val"].items()}
    figures.update({f"test_{k}": v for k, v in result["test"].items()})
    return {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and v == v}


def train(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> ModelVersion:
    """Train ``profile.train`` on the current ``silver.features`` and publish it; return the version.

    A run whose inputs and settings were trained and published before publishes nothing
    and returns that version; one killed mid-way resumes from its newest checkpoint.

    Raises
    ------
    SourceError
        no silver.features, no labelled training rows, or no train.init_from weights file.
    ModelNotFound
        train.init_from names a version or alias that is not committed.
    ModelFactoryError
        train.model cannot be imported, fails, or returns no torch.nn.Module.
    ConfigError
        more processes than the cluster has task slots or the training set has row groups,
        or a GPU run on a cluster without GPU scheduling.
    """
    cfg = profile.train
    report = report or RunReport.start("train")
    registry = Registry.for_profile(profile)
    with report.timed("materialize"):
        ts = materialize(spark, profile)
    report.details["training_set"] = {"root": ts.root, "rows": ts.rows, "reused": ts.reused,
                                      "features_version": ts.features_version}
    init = resolve_init(profile, registry)
    key = training_key(cfg, ts, init)
    report.details["training_key"] = key
    existing = registry.find_by_idempotency_key(cfg.model_name, key)
    if existing is not None:
        report.warnings.append(f"{cfg.model_name} version {existing.version} was already trained from the same "
                               f"inputs and settings; nothing new published")
        report.outputs["model"] = existing.uri
        report.counts.update(published=0, epochs_run=0)
        if profile.observe.mlflow_tracking_uri:
            _track(report, existing, lambda: _log_published(profile, ts, registry, existing, report))
        return existing

    report.details["model"] = check_factory(cfg, model_spec(cfg, ts))
    if init is not None:
        report.details["init_from"] = init["lineage"]
    report.details["capacity"] = check_capacity(spark, cfg)
    plan = make_plan(profile, ts, report.run_id, key, init, class_weights(spark, ts, cfg))
    report.details["shards"] = dataclasses.asdict(plan.shards)
    with report.timed("train"):
        result = run_distributed(plan)
    _report_training(report, result, ts, plan, training_ids_digest(spark, ts))
    with report.timed("publish"):
        statistics = input_statistics(spark, ts)
        version, model, example = _publish(profile, registry, ts, result, key, statistics, report, plan, init)
    report.counts["published"] = 1
    if profile.observe.mlflow_tracking_uri:
        _track(report, version, lambda: _log_mlflow(profile, ts, result, version, model, example, report))
    report.outputs["model"] = version.uri
    return version


def _report_training(report: RunReport, result: dict[str, Any], ts: TrainingSet, plan: TrainPlan,
                     expected: IdDigest) -> None:
    """What the run did: epochs, the published epoch, shards, throughput, the final figures."""
    history = result["history"]
    report.counts.update(epochs_run=result["epochs_trained"] - result["resumed_from_epoch"],
                         resumed_from_epoch=result["resumed_from_epoch"], train_rows=ts.rows["train"])
    report.details["shard_audit"] = audit = _audit_summary(result["shard_audit"], expected)
    if not audit["digests_match"]:
        report.warnings.append(
            f"shard audit: the ranks' first epoch saw {sum(audit['rows_per_rank'])} rows whose ids do not add up "
            f"to the {expected.rows} training rows of {ts.split_uri('train')}: some rows were seen twice or not "
            f"at all; plan the shards again (a training set rewritten during the run?) and train again")
    # Rows of a table, images otherwise (the per-epoch history counts either as images_per_s).
    unit = "rows" if ts.input_kind == "table" else "images"
    report.throughput[f"train_{unit}_per_s"] = round(
        sum(h["images_per_s"] for h in history[-3:]) / max(1, len(history[-3:])), 1) if history else 0.0
    report.details["history"] = history
    report.details.update(published_epoch=result["published_epoch"], stopped_early=result["stopped_early"])
    if result["stopped_early"]:
        report.warnings.append(f"stopped early after epoch {result['epochs_trained']} of {plan.train.epochs}: no better "
                               f"{plan.train.early_stopping_metric} for {plan.train.early_stopping_patience} epochs; "
                               f"published epoch {result['published_epoch']}")
    if result["initial_val"] is not None:
        report.details["initial_val_accuracy"] = result["initial_val"]["accuracy"]
    if plan.tensorboard_dir:
        report.outputs["tensorboard"] = plan.tensorboard_dir
    report.details["val_accuracy"] = result["val_accuracy"]
    report.details["test_accuracy"] = result["test_accuracy"]
    report.details.update(val=result["val"], test=result["test"])
    if result["val_accuracy"] is not None:
        report.metrics.update(val_accuracy=result["val_accuracy"], test_accuracy=result["test_accuracy"])
    else:
        report.metrics.update({k: round(v, 6) for k, v in _final_metrics(result).items() if k.startswith("test_")})


def write_plan(spark: "SparkSession", profile: Profile, path: str, report: RunReport | None = None) -> TrainPlan:
    """Materialize the training set and write the per-process :class:`TrainPlan` to the local
    file ``path`` instead of training (``train --plan-only``): run it with ``lakeloop train-rank --plan``."""
    report = report or RunReport.start("train")
    ts = materialize(spark, profile)
    init = resolve_init(profile, Registry.for_profile(profile))
    check_factory(profile.train, model_spec(profile.train, ts))
    plan = make_plan(profile, ts, report.run_id, training_key(profile.train, ts, init), init,
                     class_weights(spark, ts, profile.train))
    # A plan file is copied to other machines and read by people: credentials stay out of it, and the
    # process that runs it finds them as any S3 client does (the AWS default chain: environment, role).
    left_out = sorted(k for k in plan.hadoop_conf if is_secret_setting(k))
    plan = dataclasses.replace(plan, hadoop_conf={k: v for k, v in plan.hadoop_conf.items() if k not in left_out})
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(plan.to_json())
    report.outputs["plan"] = path
    if left_out:
        report.warnings.append(f"the plan leaves out the credentials {', '.join(left_out)}: where it runs, give them "
                               f"to the AWS default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                               f"AWS_SESSION_TOKEN, or an instance role)")
    return plan


def training_ids_digest(spark: "SparkSession", ts: TrainingSet) -> IdDigest:
    """The :class:`~lakeloop.training.rank.IdDigest` of the training split's ids, computed on the
    executors: a few numbers per partition reach the driver, however many rows there are."""
    import pyarrow as pa

    column = ts.feed.id_column

    def digest(batches):
        part = IdDigest()
        for batch in batches:  # the split's ids are distinct
            part = part.merge(IdDigest.of(id_hashes(batch.column(0).to_pylist())))
        yield pa.RecordBatch.from_pylist([{"rows": part.rows, "sum": str(part.sum), "xor": str(part.xor)}])

    total = IdDigest()
    for row in spark.read.parquet(ts.split_uri("train")).select(column).mapInArrow(
            digest, "rows long, sum string, xor string").collect():
        total = total.merge(IdDigest(row["rows"], int(row["sum"]), int(row["xor"])))
    return total


def _audit_summary(audit: dict[str, dict[str, int]], expected: IdDigest) -> dict[str, Any]:
    """Did the ranks see disjoint shards that together cover the training set (first epoch)? Their
    digests add up to the training set's exactly when each row was seen once."""
    parts = [IdDigest(**digest) for _, digest in sorted(audit.items(), key=lambda item: int(item[0]))]
    seen = IdDigest()
    for part in parts:
        seen = seen.merge(part)
    match = seen == expected
    return {"rows_per_rank": [p.rows for p in parts], "digests_match": match, "overlap": 0 if match else None,
            "covered": expected.rows if match else None, "train_rows": expected.rows}

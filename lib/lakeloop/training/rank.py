"""The per-process training function, runnable without Spark.

TorchDistributor starts it once per process with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``
set; it can also run alone on a GPU box, given a materialized training set:

    lakeloop train-rank --plan plan.json [--out result.pt]      (lakeloop.cli.train_rank)

Each process: joins the process group (gloo on CPU, nccl on GPU), builds the model from its
factory (``train.model``; starting from ``train.init_from``'s weights if set), wraps it in
DDP, resumes from the newest checkpoint if one exists, then per epoch trains on its own
shard of the feed (:mod:`lakeloop.training.loader`: equal steps on every rank, order a function
of seed/epoch/rank, read by ``train.reader``), evaluates the validation split sharded across ranks, keeps the best
epoch's weights, stops early when the validation metric stops improving, and rank 0 writes
a checkpoint. At the end rank 0 writes the weights to publish (the best epoch's, or the last)
into the registry's staging area (``plan.staging_dir``) itself and returns a small manifest:
that file's URI, SHA-256 and size, the metrics, and the shard audit as one count and digest
per rank. Nothing that grows with the model or the training set travels back through Spark,
so neither ``spark.driver.maxResultSize`` nor the driver's memory caps them; the driver
moves the staged file into a version (:meth:`lakeloop.registry.Registry.publish`).
"""

from __future__ import annotations

import atexit
import faulthandler
import hashlib
import io
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lakeloop.config import task_metric
from lakeloop.io.lakefs import LakeFiles
from lakeloop.training.augment import NO_AUGMENTATION
from lakeloop.training.loader import Feed, epoch_batches, shard_batches
from lakeloop.training.plan import (  # noqa: F401 - re-exported: the plan and records, importable from here as before
    CHECKPOINT_PREFIX,
    FAILURES_DIR,
    IdDigest,
    TrainPlan,
    checkpoint_name,
    failure_dir,
    id_hashes,
    latest_checkpoint,
    record_failure,
    recorded_failures,
)


def _optimizer(plan: TrainPlan, model):
    """The factory's ``make_optimizer(model, spec, settings)`` hook if it has one, else train.optimizer."""
    import torch

    from lakeloop.models import find_hook

    hook = find_hook(plan.model, "make_optimizer")
    if hook is not None:
        settings = {"learning_rate": plan.train.learning_rate, "weight_decay": plan.train.weight_decay,
                    "momentum": plan.train.momentum, "epochs": plan.train.epochs}
        return hook(model, plan.factory_spec(), settings)
    if plan.train.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=plan.train.learning_rate, momentum=plan.train.momentum,
                               weight_decay=plan.train.weight_decay, nesterov=True)
    return torch.optim.AdamW(model.parameters(), lr=plan.train.learning_rate, weight_decay=plan.train.weight_decay)


def _scheduler(plan: TrainPlan, optimizer):
    import torch

    if plan.train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, plan.train.epochs))
    if plan.train.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, plan.train.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _loss(plan: TrainPlan, device):
    """The factory's ``make_loss(spec)`` hook if it has one, else the task's: cross-entropy (class-weighted
    if asked), binary cross-entropy per label, or mean squared error (on the standardised target)."""
    import torch

    from lakeloop.models import find_hook

    hook = find_hook(plan.model, "make_loss")
    if hook is not None:
        return hook(plan.factory_spec())
    if plan.task == "multilabel":
        return torch.nn.BCEWithLogitsLoss()
    if plan.task == "regression":
        return torch.nn.MSELoss()
    weight = torch.tensor(plan.class_weights, dtype=torch.float32, device=device) if plan.class_weights else None
    return torch.nn.CrossEntropyLoss(weight=weight)


def _batch_counts(plan: TrainPlan, outputs, targets) -> "Any":
    """What one batch adds to the split's figures, as a float64 vector summed over batches and ranks:
    confusion counts (classification); true/false positives and false negatives per label
    (multilabel); rows, |error|, error², target and target² in the target's units (regression)."""
    import torch

    outputs, targets = outputs.detach().float().cpu(), targets.cpu()
    if plan.task == "classification":
        k = len(plan.classes)
        return torch.bincount(targets * k + outputs.argmax(dim=1), minlength=k * k).double()
    if plan.task == "multilabel":
        threshold = plan.train.multilabel_threshold
        predicted, truth = torch.sigmoid(outputs) >= threshold, targets >= 0.5
        return torch.cat([(predicted & truth).sum(0), (predicted & ~truth).sum(0), (~predicted & truth).sum(0)]).double()
    error, truth = (outputs - targets).double() * plan.target_scale, targets.double() * plan.target_scale
    return torch.stack([torch.tensor(float(len(truth)), dtype=torch.float64), error.abs().sum(),
                        (error * error).sum(), truth.sum(), (truth * truth).sum()])


def _summary(plan: TrainPlan, counts: list[float], per_label: bool = False) -> dict[str, Any]:
    """The task's headline figures from the summed counts; with ``per_label``, a multilabel model's
    precision, recall, F1 and support per label too (``per_label``, a list)."""
    from lakeloop.metrics import classification_summary, multilabel_summary, regression_summary

    if plan.task == "classification":
        k = len(plan.classes)
        matrix = [[int(c) for c in counts[i * k:(i + 1) * k]] for i in range(k)]
        summary = classification_summary(matrix, plan.classes)
        return {"accuracy": summary["accuracy"] if summary["rows"] else float("nan"),
                "macro_f1": summary["macro_f1"]}
    if plan.task == "multilabel":
        k = len(plan.classes)
        tp, fp, fn = ([int(c) for c in counts[j * k:(j + 1) * k]] for j in range(3))
        summary = multilabel_summary(tp, fp, fn, plan.classes)
        return {"micro_f1": summary["micro_f1"], "macro_f1": summary["macro_f1"],
                **({"per_label": summary["per_label"]} if per_label else {})}
    summary = regression_summary(int(counts[0]), *counts[1:])
    return {k: summary[k] for k in ("mae", "rmse", "r2")}


def _evaluate(trainer: "_Trainer", url: str, feed: Feed, plan: TrainPlan, proc: "_Process",
              per_label: bool = False) -> dict:
    """The task's figures (:func:`_summary`), the loss and the factory's ``batch_metrics`` over the whole
    split: each rank scores its shard; counts and row-weighted sums are added across ranks."""
    import torch
    import torch.distributed as dist

    model = trainer.model
    model.eval()
    sums: dict[str, float] = {"loss": 0.0, "rows": 0.0}
    counts = None
    with torch.inference_mode():
        for x, y, _ in shard_batches(url, feed, rank=proc.rank, world=proc.world, batch_size=256,
                                     reader=plan.train.reader, prefetch=plan.train.prefetch,
                                     hadoop_conf=plan.hadoop_conf):
            outputs = model(*model_inputs(x, proc.device))
            targets = torch.from_numpy(y).to(proc.device)
            n = len(y)
            batch = _batch_counts(plan, outputs, targets)
            counts = batch if counts is None else counts + batch
            sums["loss"] += float(trainer.loss_fn(outputs.float(), targets)) * n
            sums["rows"] += n
            if trainer.batch_metrics is not None:
                for name, value in trainer.batch_metrics(outputs, targets).items():
                    sums[name] = sums.get(name, 0.0) + float(value) * n
    parts: list[Any] = [(sums, counts.tolist() if counts is not None else None)]
    if proc.world > 1:
        parts = [None] * proc.world
        dist.all_gather_object(parts, (sums, counts.tolist() if counts is not None else None))
    model.train()
    vectors = [v for _, v in parts if v is not None]
    total = [sum(values) for values in zip(*vectors)] if vectors else \
        _batch_counts(plan, *_empty_batch(plan)).tolist()
    out = _summary(plan, total, per_label)
    rows = sum(part["rows"] for part, _ in parts)
    for name in sorted({name for part, _ in parts for name in part} - {"rows"}):
        out[name] = sum(part.get(name, 0.0) for part, _ in parts) / rows if rows else float("nan")
    return out


def model_inputs(x: "Any", device: "Any") -> tuple:
    """A batch's arguments to ``model(...)`` on ``device``: ``(images,)``, ``(rows,)`` or ``(images, table)``."""
    import torch

    return tuple(torch.from_numpy(a).to(device) for a in (x if isinstance(x, tuple) else (x,)))


def _empty_batch(plan: TrainPlan):
    """Outputs and targets of no rows, shaped for the task (a split with no rows still has figures)."""
    import torch

    k = 1 if plan.task == "regression" else len(plan.classes)
    targets = torch.zeros(0, dtype=torch.int64) if plan.task == "classification" else torch.zeros(0, k)
    return torch.zeros(0, k), targets


@dataclass
class _Process:
    """Where this process runs: its rank in the group and its device."""

    rank: int
    world: int
    local_rank: int
    device: Any
    use_cuda: bool


def _join_group(plan: TrainPlan) -> _Process:
    """Read the rank torchrun set, pick the device, join the process group (gloo on CPU, nccl on GPU)."""
    import torch
    import torch.distributed as dist

    # Set by torchrun, which TorchDistributor uses to start each process.
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world != plan.shards.world_size:
        raise RuntimeError(
            f"the plan was made for {plan.shards.world_size} processes but this run has {world}; "
            f"make the plan with train.num_processes={world}"
        )
    torch.set_num_threads(max(1, plan.train.torch_threads))
    use_cuda = plan.train.use_gpu and torch.cuda.is_available()
    if plan.train.use_gpu and not use_cuda:
        raise RuntimeError(f"train.use_gpu is true but rank {rank} sees no CUDA device; check the executors' GPUs")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Process(rank, world, local_rank, device, use_cuda)


@dataclass
class _Trainer:
    """The model and what steps it (optimizer, schedule, gradient scaler, loss), the epochs done,
    and the early-stopping state: the best epoch so far, its weights, epochs since it."""

    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    amp: bool
    loss_fn: Any
    batch_metrics: Any
    history: list[dict[str, Any]]
    start_epoch: int
    best: dict[str, Any] = field(default_factory=dict)  # epoch, value, state
    stale_epochs: int = 0
    stopped_early: bool = False
    init_fit: dict[str, Any] | None = None
    initial_val: dict[str, float] | None = None


def _start_weights(plan: TrainPlan, model) -> dict[str, Any] | None:
    """Load train.init_from's weights into the fresh ``model`` (checked against the recorded SHA-256)."""
    import hashlib

    from lakeloop.models import fit_state_dict, load_state_dict_bytes

    if not plan.init_weights:
        return None
    data = LakeFiles(plan.hadoop_conf).read_bytes(plan.init_weights)
    if plan.init_weights_sha256 and hashlib.sha256(data).hexdigest() != plan.init_weights_sha256:
        raise RuntimeError(f"train.init_from {plan.init_source}: {plan.init_weights} changed after the run was "
                           f"planned; train again")
    return fit_state_dict(model, load_state_dict_bytes(data), plan.init_source or plan.init_weights)


def _build_trainer(plan: TrainPlan, feed: Feed, proc: _Process) -> _Trainer:
    """A fresh model (same initial weights on every rank), resumed from the newest checkpoint if any."""
    import torch

    from lakeloop.models import build_model, find_hook

    files = LakeFiles(plan.hadoop_conf)
    torch.manual_seed(plan.train.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(plan.model, plan.factory_spec())
    init_fit = _start_weights(plan, model)
    model.to(proc.device)
    optimizer = _optimizer(plan, model)
    amp = proc.use_cuda and plan.train.amp
    trainer = _Trainer(model, optimizer, _scheduler(plan, optimizer), torch.amp.GradScaler("cuda", enabled=amp),
                       amp, _loss(plan, proc.device), find_hook(plan.model, "batch_metrics"), [], 0,
                       init_fit=init_fit)
    found = latest_checkpoint(plan)
    if found is not None:
        state = torch.load(io.BytesIO(files.read_bytes(found[1])), map_location="cpu", weights_only=False)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.scaler.load_state_dict(state["scaler"])
        trainer.history = state["history"]
        trainer.start_epoch = state["epoch"] + 1
        trainer.best, trainer.stale_epochs = state["best"], state["stale_epochs"]
        trainer.stopped_early = state["stopped_early"]
        trainer.init_fit, trainer.initial_val = state["init_fit"], state["initial_val"]
    elif init_fit is not None:
        # Where the run starts from: the parent's validation figures, before any step.
        trainer.initial_val = _evaluate(trainer, plan.val_url, feed, plan, proc)
    return trainer


def _train_epoch(plan: TrainPlan, feed: Feed, proc: _Process, trainer: _Trainer, ddp, epoch: int,
                 audit: bool) -> tuple[float, int, IdDigest | None]:
    """One epoch over this rank's shard; returns (summed loss, rows seen, the digest of the distinct ids
    seen if asked for: 8 bytes a row until the epoch ends, since equal steps repeat a few rows)."""
    import numpy as np
    import torch

    ddp.train()
    loss_sum, seen, hashes = 0.0, 0, []
    for x, y, ids in epoch_batches(
        plan.train_url, plan.shards, feed, rank=proc.rank, epoch=epoch, seed=plan.train.seed,
        augmentation=plan.train.augmentation if plan.train.augment
        else NO_AUGMENTATION,
        reader=plan.train.reader, prefetch=plan.train.prefetch, hadoop_conf=plan.hadoop_conf,
    ):
        inputs, targets = model_inputs(x, proc.device), torch.from_numpy(y).to(proc.device)
        trainer.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=trainer.amp):
            loss = trainer.loss_fn(ddp(*inputs), targets)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        loss_sum += float(loss.detach()) * len(y)
        seen += len(y)
        if audit:
            hashes.append(id_hashes(ids.tolist()))
    trainer.scheduler.step()
    if not audit:
        return loss_sum, seen, None
    return loss_sum, seen, IdDigest.of(np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64))


def _shard_audit(proc: _Process, digest: IdDigest) -> dict[int, dict[str, int]]:
    """How many rows each rank saw in its first epoch of this run, and their ids' digest: the driver
    checks they add up to the training set's (disjoint shards that cover it)."""
    import torch.distributed as dist

    gathered: list[Any] = [asdict(digest)]
    if proc.world > 1:
        gathered = [None] * proc.world
        dist.all_gather_object(gathered, asdict(digest))
    return dict(enumerate(gathered))


def _save_checkpoint(plan: TrainPlan, trainer: _Trainer, epoch: int) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(), "scaler": trainer.scaler.state_dict(),
                "history": trainer.history, "best": trainer.best, "stale_epochs": trainer.stale_epochs,
                "stopped_early": trainer.stopped_early, "init_fit": trainer.init_fit,
                "initial_val": trainer.initial_val}, buffer)
    files = LakeFiles(plan.hadoop_conf)
    files.makedirs(plan.checkpoint_dir)
    files.write_bytes_atomic(f"{plan.checkpoint_dir}/{checkpoint_name(epoch)}", buffer.getvalue())


def _track_best(plan: TrainPlan, trainer: _Trainer) -> None:
    """Keep the best epoch's weights; count the epochs since, and stop once they reach the patience.

    Every rank sees the same (all-reduced) validation figures, so every rank decides alike."""
    last = trainer.history[-1]
    metric, higher_is_better = task_metric(plan.task, plan.train.early_stopping_metric)
    value = last.get(metric)
    if value is None or value != value:  # not measurable this epoch (a constant target's R², no rows)
        value = -math.inf if higher_is_better else math.inf
    better = (not trainer.best or (value > trainer.best["value"] if higher_is_better
                                   else value < trainer.best["value"]))
    if better:
        state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
        trainer.best = {"epoch": last["epoch"], "value": value, "state": state}
        trainer.stale_epochs = 0
    else:
        trainer.stale_epochs += 1
    if plan.train.early_stopping_patience is not None and trainer.stale_epochs >= plan.train.early_stopping_patience:
        trainer.stopped_early = True


def _run_epochs(plan: TrainPlan, feed: Feed, proc: _Process, trainer: _Trainer) -> dict[int, dict[str, int]]:
    """Train the remaining epochs (or until early stopping): evaluate after each, rank 0 reports,
    logs (TensorBoard) and checkpoints; returns the shard audit."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = (DistributedDataParallel(trainer.model, device_ids=[proc.local_rank] if proc.use_cuda else None)
           if proc.world > 1 else trainer.model)
    shard_audit: dict[int, dict[str, int]] = {}
    events = _open_events(plan) if proc.rank == 0 else None
    try:
        for epoch in range(trainer.start_epoch, plan.train.epochs):
            if trainer.stopped_early:
                break
            shard_audit = _run_epoch(plan, feed, proc, trainer, ddp, epoch, shard_audit, events)
    finally:
        if events is not None:
            events.close()
    return shard_audit


def _open_events(plan: TrainPlan):
    """Rank 0's TensorBoard writer, with the epochs a resumed run already has (one folder per run)."""
    from lakeloop.tracking import open_epoch_events

    events, why = open_epoch_events(plan.tensorboard_dir, plan.hadoop_conf)
    if why:
        print(f"[lakeloop train {plan.run_id}] {why}", flush=True)
    return events


def _run_epoch(plan: TrainPlan, feed: Feed, proc: _Process, trainer: _Trainer, ddp, epoch: int,
               shard_audit: dict[int, dict[str, int]], events) -> dict[int, dict[str, int]]:
    """Train and evaluate one epoch; rank 0 prints, logs and checkpoints it."""
    import torch
    import torch.distributed as dist

    started = time.perf_counter()
    first = epoch == trainer.start_epoch
    loss_sum, seen, digest = _train_epoch(plan, feed, proc, trainer, ddp, epoch, audit=first)
    totals = torch.tensor([loss_sum, seen], dtype=torch.float64)
    if proc.world > 1:
        dist.all_reduce(totals)
    if first:
        shard_audit = _shard_audit(proc, digest)
    val = _evaluate(trainer, plan.val_url, feed, plan, proc)
    elapsed = time.perf_counter() - started
    trainer.history.append({
        "epoch": epoch + 1,
        "train_loss": round(float(totals[0] / totals[1]), 5),
        **{f"val_{name}": round(value, 5) for name, value in val.items() if value is not None},
        "learning_rate": trainer.optimizer.param_groups[0]["lr"],
        "seconds": round(elapsed, 3),
        "images_per_s": round(float(totals[1]) / elapsed, 1),
    })
    _track_best(plan, trainer)
    if proc.rank == 0:
        last = trainer.history[-1]
        metric = task_metric(plan.task, plan.train.early_stopping_metric)[0]
        stop = f"; no better {metric} for {trainer.stale_epochs} epochs: stopping" if trainer.stopped_early else ""
        shown = f"{metric.replace('_', ' ')} {last[metric]:.4f}" if last.get(metric) is not None else f"{metric} -"
        print(f"[lakeloop train {plan.run_id}] epoch {epoch + 1}/{plan.train.epochs}: loss {last['train_loss']:.4f}, "
              f"{shown}, {last['images_per_s']:,.0f} rows/s{stop}", flush=True)
        _save_checkpoint(plan, trainer, epoch)
        if events is not None:
            for entry in trainer.history if first else [last]:
                events.log_epoch(entry)
    if proc.world > 1:
        dist.barrier()
    return shard_audit


def train_rank(plan: TrainPlan) -> dict[str, Any] | None:
    """Train one process's part of a distributed run; rank 0 stages the weights (:func:`stage_weights`)
    and returns their manifest and the metrics.

    A process that fails writes its error and traceback to :func:`failure_dir` before raising.

    In a process torchrun launched (``TORCHELASTIC_RUN_ID`` set) a C-level crash prints every
    thread's Python stack (:mod:`faulthandler`), and a process whose work succeeded ends without
    the native teardown at interpreter exit (:func:`exit_after_success`)."""
    launched = "TORCHELASTIC_RUN_ID" in os.environ
    if launched:
        faulthandler.enable(all_threads=True)
    try:
        result = _train_rank(plan)
    except Exception as exc:
        record_failure(plan, os.environ.get("RANK", "0"), exc)
        raise
    if launched:
        atexit.register(exit_after_success)
    return result


def exit_after_success() -> None:
    """End a rank process that did its work (registered with :mod:`atexit` once it has), skipping
    the C++ teardown that follows interpreter exit: a native thread pool destroyed there while its
    threads still ran aborted a finished rank now and then ("terminate called without an active
    exception", SIGABRT, seen twice on 2026-12-07 after the last epoch), and its peers then waited
    at torchrun's exit barrier and the run failed. TorchDistributor's launcher writes the function's
    return value before the interpreter exits, so nothing is lost; a launcher that raised after the
    function returned still exits 1."""
    failed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(1 if failed is not None else 0)


def stage_weights(plan: TrainPlan, model: Any) -> dict[str, Any]:
    """Write ``model``'s state dict to ``weights.pt`` in the plan's staging folder; returns its
    ``uri``, ``sha256`` and ``bytes`` (a :class:`lakeloop.registry.StagedFile`'s fields)."""
    from lakeloop.models import state_dict_bytes
    from lakeloop.registry import WEIGHTS_FILE

    data = state_dict_bytes(model)
    uri = f"{plan.staging_dir or plan.checkpoint_dir}/{WEIGHTS_FILE}"
    LakeFiles(plan.hadoop_conf).write_bytes_atomic(uri, data)
    return {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _train_rank(plan: TrainPlan) -> dict[str, Any] | None:
    import numpy as np
    import torch
    import torch.distributed as dist

    proc = _join_group(plan)
    feed = plan.feed_spec()
    trainer = _build_trainer(plan, feed, proc)
    shard_audit = _run_epochs(plan, feed, proc, trainer)
    last_epoch = trainer.history[-1]["epoch"] if trainer.history else 0
    if plan.train.publish_epoch == "best" and trainer.best:
        trainer.model.load_state_dict(trainer.best["state"])
    published_epoch = trainer.best["epoch"] if plan.train.publish_epoch == "best" and trainer.best else last_epoch
    # The published weights' figures, kept in the metadata: per label too.
    val = _evaluate(trainer, plan.val_url, feed, plan, proc, per_label=True)
    test = _evaluate(trainer, plan.test_url, feed, plan, proc, per_label=True)
    result = None if proc.rank != 0 else {
        "weights_file": stage_weights(plan, trainer.model),
        "history": trainer.history,
        "val_accuracy": val.get("accuracy"),
        "test_accuracy": test.get("accuracy"),
        "val": val,
        "test": test,
        "published_epoch": published_epoch,
        "epochs_trained": last_epoch,
        "stopped_early": trainer.stopped_early,
        "init_fit": trainer.init_fit,
        "initial_val": trainer.initial_val,
        "resumed_from_epoch": trainer.start_epoch,
        "world_size": proc.world,
        "device": str(proc.device),
        "shard_audit": {str(k): v for k, v in shard_audit.items()},
        "numpy_version": np.__version__,
        "torch_version": torch.__version__,
    }
    if proc.world > 1:
        # TorchDistributor's local_mode keeps the result of whichever rank writes it last (every rank
        # writes the same file), so there every rank returns rank 0's result.
        if plan.train.local_mode:
            shared = [result]
            dist.broadcast_object_list(shared, src=0)
            result = shared[0]
        dist.barrier()
        dist.destroy_process_group()
    return result

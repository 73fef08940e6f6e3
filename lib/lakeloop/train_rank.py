"""The per-process training function, runnable without Spark.

TorchDistributor starts it once per process with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``
set; it can also run alone on a GPU box, given a materialized training set:

    python -m lakeloop.train_rank --plan plan.json [--out result.pt]

Each process: joins the process group (gloo on CPU, nccl on GPU), builds the model, wraps
it in DDP, resumes from the newest checkpoint if one exists, then per epoch trains on its
own Petastorm shard (:mod:`lakeloop.loader`: equal steps on every rank, order a function
of seed/epoch/rank), evaluates the validation split sharded across ranks, and rank 0
writes a checkpoint. Rank 0 returns the weights and metrics; the driver publishes them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lakeloop import lakefs
from lakeloop.loader import ShardPlan, epoch_batches, shard_batches
from lakeloop.preprocess import PreprocessSpec

CHECKPOINT_PREFIX = "epoch-"
AUGMENT_MAX_SHIFT = 2


@dataclass(frozen=True)
class TrainPlan:
    """Everything a training process needs; plain data, so it pickles and round-trips as JSON."""

    run_id: str
    train_url: str
    val_url: str
    test_url: str
    spec_json: str
    classes: tuple[str, ...]
    shards: ShardPlan
    checkpoint_dir: str
    architecture: str = "lenet5"
    pretrained_weights: str | None = None
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 0.003
    weight_decay: float = 0.0001
    momentum: float = 0.9
    lr_schedule: str = "cosine"
    augment: bool = True
    seed: int = 7
    reader_pool: str = "dummy"
    reader_workers: int = 1
    use_gpu: bool = False
    amp: bool = True
    torch_threads: int = 1
    hadoop_conf: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainPlan":
        data = json.loads(text)
        data["shards"] = ShardPlan(**{**data["shards"], "rows_per_rank": tuple(data["shards"]["rows_per_rank"])})
        data["classes"] = tuple(data["classes"])
        return cls(**data)


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:04d}.pt"


def latest_checkpoint(plan: TrainPlan) -> tuple[int, str] | None:
    """(epoch, uri) of the newest complete checkpoint in the plan's folder, if any."""
    names = [n for n in lakefs.list_dir(plan.checkpoint_dir, plan.hadoop_conf)
             if n.startswith(CHECKPOINT_PREFIX) and n.endswith(".pt")]
    if not names:
        return None
    newest = max(names)
    return int(newest[len(CHECKPOINT_PREFIX):-3]), f"{plan.checkpoint_dir}/{newest}"


def _optimizer(plan: TrainPlan, params):
    import torch

    if plan.optimizer == "sgd":
        return torch.optim.SGD(params, lr=plan.learning_rate, momentum=plan.momentum,
                               weight_decay=plan.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)


def _scheduler(plan: TrainPlan, optimizer):
    import torch

    if plan.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, plan.epochs))
    if plan.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, plan.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _evaluate(model, url: str, spec: PreprocessSpec, plan: TrainPlan, rank: int, world: int, device) -> float:
    """Accuracy over the whole split: each rank scores its shard, counts are summed across ranks."""
    import torch
    import torch.distributed as dist

    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y, _ in shard_batches(url, spec, rank=rank, world=world, batch_size=256,
                                     pool=plan.reader_pool, workers=plan.reader_workers, hadoop_conf=plan.hadoop_conf):
            logits = model(torch.from_numpy(x).to(device))
            correct += int((logits.argmax(dim=1).cpu() == torch.from_numpy(y)).sum())
            total += len(y)
    counts = torch.tensor([correct, total], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(counts)
    model.train()
    return float(counts[0] / counts[1]) if counts[1] else float("nan")


def train_rank(plan: TrainPlan) -> dict[str, Any] | None:
    """Train one process's part of a distributed run; rank 0 returns weights and metrics."""
    import warnings

    # petastorm 0.12 uses pyarrow 14's legacy ParquetDataset API (DESIGN.md): known and harmless.
    warnings.filterwarnings("ignore", category=FutureWarning)
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lakeloop.models import build_model, load_state_dict_bytes, state_dict_bytes

    # Set by torchrun, which TorchDistributor uses to start each process.
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world != plan.shards.world_size:
        raise RuntimeError(
            f"the plan was made for {plan.shards.world_size} processes but this run has {world}; "
            f"make the plan with train.num_processes={world}"
        )
    torch.set_num_threads(max(1, plan.torch_threads))
    use_cuda = plan.use_gpu and torch.cuda.is_available()
    if plan.use_gpu and not use_cuda:
        raise RuntimeError(f"train.use_gpu is true but rank {rank} sees no CUDA device; check the executors' GPUs")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")

    spec = PreprocessSpec.from_json(plan.spec_json)
    torch.manual_seed(plan.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    pretrained = None
    if plan.pretrained_weights:
        pretrained = load_state_dict_bytes(lakefs.read_bytes(plan.pretrained_weights, plan.hadoop_conf))
    model = build_model(plan.architecture, len(plan.classes), spec.channels, spec.height, spec.width, pretrained)
    model.to(device)
    optimizer = _optimizer(plan, model.parameters())
    scheduler = _scheduler(plan, optimizer)
    amp = use_cuda and plan.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    found = latest_checkpoint(plan)
    if found is not None:
        state = torch.load(io.BytesIO(lakefs.read_bytes(found[1], plan.hadoop_conf)), map_location="cpu",
                           weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
    resumed_from = start_epoch

    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None) if world > 1 else model
    loss_fn = torch.nn.CrossEntropyLoss()
    shard_audit: dict[int, list[str]] = {}
    for epoch in range(start_epoch, plan.epochs):
        started = time.perf_counter()
        ddp.train()
        loss_sum, seen, epoch_ids = 0.0, 0, []
        for x, y, ids in epoch_batches(
            plan.train_url, plan.shards, spec, rank=rank, epoch=epoch, seed=plan.seed,
            max_shift=AUGMENT_MAX_SHIFT if plan.augment else 0, pool=plan.reader_pool, workers=plan.reader_workers,
            hadoop_conf=plan.hadoop_conf,
        ):
            inputs, targets = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                loss = loss_fn(ddp(inputs), targets)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
            if epoch == resumed_from:
                epoch_ids.extend(ids.tolist())
        scheduler.step()
        totals = torch.tensor([loss_sum, seen], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(totals)
        if epoch == resumed_from:
            # Which rows each rank saw in its first epoch of this run: proof the shards are disjoint.
            gathered: list[Any] = [None] * world
            if world > 1:
                dist.all_gather_object(gathered, sorted(set(epoch_ids)))
            else:
                gathered = [sorted(set(epoch_ids))]
            shard_audit = {r: ids_r for r, ids_r in enumerate(gathered)}
        val_accuracy = _evaluate(model, plan.val_url, spec, plan, rank, world, device)
        elapsed = time.perf_counter() - started
        history.append({
            "epoch": epoch + 1,
            "train_loss": round(float(totals[0] / totals[1]), 5),
            "val_accuracy": round(val_accuracy, 5),
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": round(elapsed, 3),
            "images_per_s": round(float(totals[1]) / elapsed, 1),
        })
        if rank == 0:
            last = history[-1]
            print(f"[lakeloop train {plan.run_id}] epoch {epoch + 1}/{plan.epochs}: loss {last['train_loss']:.4f}, "
                  f"val accuracy {last['val_accuracy']:.4f}, {last['images_per_s']:,.0f} images/s", flush=True)
            buffer = io.BytesIO()
            torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "history": history},
                       buffer)
            lakefs.makedirs(plan.checkpoint_dir, plan.hadoop_conf)
            lakefs.write_bytes_atomic(f"{plan.checkpoint_dir}/{checkpoint_name(epoch)}", buffer.getvalue(),
                                      plan.hadoop_conf)
        if world > 1:
            dist.barrier()

    val_accuracy = _evaluate(model, plan.val_url, spec, plan, rank, world, device)
    test_accuracy = _evaluate(model, plan.test_url, spec, plan, rank, world, device)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return None
    return {
        "weights": state_dict_bytes(model),
        "history": history,
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "resumed_from_epoch": resumed_from,
        "world_size": world,
        "device": str(device),
        "shard_audit": {str(k): v for k, v in shard_audit.items()},
        "numpy_version": np.__version__,
        "torch_version": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakeloop.train_rank", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="TrainPlan JSON (written by jobs/train.py --plan-only)")
    parser.add_argument("--out", help="where to write rank 0's result (torch.save)")
    args = parser.parse_args(argv)
    with open(args.plan, encoding="utf-8") as handle:
        plan = TrainPlan.from_json(handle.read())
    result = train_rank(plan)
    if result is not None:
        summary = {k: v for k, v in result.items() if k not in ("weights", "shard_audit")}
        print(json.dumps(summary, indent=2))
        if args.out:
            import torch

            torch.save(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

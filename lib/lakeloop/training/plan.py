"""What the training driver hands each process and what both read back from shared storage: the
:class:`TrainPlan` (plain data, pickled or a JSON file), the checkpoints' names, the failures the
processes record, and the digest of the ids each rank saw (:class:`IdDigest`).

:mod:`lakeloop.training.rank` is the per-process function; :mod:`lakeloop.training.driver` the driver.
Both re-export these names from where they were first defined (``lakeloop.training.rank``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lakeloop.config import TrainConfig, build_settings
from lakeloop.io.lakefs import LakeFiles
from lakeloop.models.spec import ModelSpec
from lakeloop.preprocess import PreprocessSpec
from lakeloop.training.loader import Feed, ShardPlan

CHECKPOINT_PREFIX = "epoch-"
# Where a failing process writes its error, in the run's checkpoint folder (shared storage the
# driver can read): TorchDistributor's launcher exits 0 whatever torchrun did, so the driver's
# exception says only "TorchDistributor failed during training" and the cause is in the
# processes' output, on a cluster in the executors' logs.
FAILURES_DIR = "failures"


@dataclass(frozen=True)
class TrainPlan:
    """Everything a training process needs: the run's ``train.*`` settings as the profile gave them
    (``train``, a :class:`~lakeloop.config.TrainConfig`) and what the driver worked out from them and
    the training set. Plain data, so it pickles and round-trips as JSON."""

    run_id: str
    train_url: str
    val_url: str
    test_url: str
    spec_json: str
    classes: tuple[str, ...]
    shards: ShardPlan
    checkpoint_dir: str
    # The profile's train.* settings (epochs, optimizer, seed, reader, early stopping ...): the ranks
    # read them from here, so no default is declared twice.
    train: TrainConfig = field(default_factory=TrainConfig)
    model: str = "lenet5"  # train.model as a factory reference ("package.module:factory")
    model_spec: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None  # a state-dict file (a registered version's weights.pt, or the user's)
    init_weights_sha256: str | None = None
    init_source: str | None = None  # what init_from named, for the lineage
    hadoop_conf: dict[str, str] = field(default_factory=dict)
    tensorboard_dir: str | None = None
    class_weights: tuple[float, ...] | None = None  # train.class_weights: balanced, from the train split
    task: str = "classification"  # the training set's task
    feed: dict[str, Any] = field(default_factory=dict)  # a Feed; empty: images, as spec_json says
    target_scale: float = 1.0  # regression: the target's train std, to report errors in its own units
    # Where rank 0 writes the weights to publish: the registry's staging folder of this run
    # (Registry.staging_uri); empty in a plan from before, then the run's checkpoint folder.
    staging_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainPlan":
        data = json.loads(text)
        data["shards"] = ShardPlan(**{**data["shards"], "rows_per_rank": tuple(data["shards"]["rows_per_rank"])})
        data["classes"] = tuple(data["classes"])
        if data.get("class_weights") is not None:
            data["class_weights"] = tuple(data["class_weights"])
        if "train" not in data:  # a plan file from before, its train.* settings written flat
            flat = {f.name for f in fields(TrainConfig)} - {f.name for f in fields(cls)}
            data["train"] = {**{k: data.pop(k) for k in flat if k in data},
                             **{k: data[k] for k in ("model", "task") if k in data}}
        data["train"] = build_settings(TrainConfig, data["train"], "train")
        return cls(**data)

    def feed_spec(self) -> Feed:
        """How this run's training set becomes tensors."""
        return Feed.from_dict(self.feed) if self.feed else Feed.for_images(PreprocessSpec.from_json(self.spec_json))

    def factory_spec(self) -> ModelSpec:
        """The :class:`ModelSpec` the model factory is called with."""
        return ModelSpec.from_dict(self.model_spec)


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:04d}.pt"


def latest_checkpoint(plan: TrainPlan) -> tuple[int, str] | None:
    """(epoch, uri) of the newest complete checkpoint in the plan's folder, if any."""
    names = [n for n in LakeFiles(plan.hadoop_conf).list_dir(plan.checkpoint_dir)
             if n.startswith(CHECKPOINT_PREFIX) and n.endswith(".pt")]
    if not names:
        return None
    newest = max(names)
    return int(newest[len(CHECKPOINT_PREFIX):-3]), f"{plan.checkpoint_dir}/{newest}"


def id_hashes(ids: "Any") -> "Any":
    """Each id's 64-bit BLAKE2b hash (of its text), as a numpy ``uint64`` array."""
    import numpy as np

    return np.fromiter((int.from_bytes(hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest(), "little")
                        for value in ids), dtype=np.uint64, count=len(ids))


@dataclass(frozen=True)
class IdDigest:
    """Rows and an order-independent digest of their ids: the sum (mod 2**64) and the xor of the ids'
    hashes (:func:`id_hashes`). Digests of disjoint parts add up (:meth:`merge`) to the digest of the
    whole, so the ranks' digests match the training set's exactly when together they saw every row
    and no row twice (up to a 64-bit collision): a few numbers per rank, never a list of ids."""

    rows: int = 0
    sum: int = 0
    xor: int = 0

    @classmethod
    def of(cls, hashes: "Any") -> "IdDigest":
        """The digest of distinct ids' hashes."""
        import numpy as np

        if not len(hashes):
            return cls()
        return cls(len(hashes), int(hashes.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(hashes)))

    def merge(self, other: "IdDigest") -> "IdDigest":
        return IdDigest(self.rows + other.rows, (self.sum + other.sum) % 2**64, self.xor ^ other.xor)


def failure_dir(plan: TrainPlan) -> str:
    return f"{plan.checkpoint_dir}/{FAILURES_DIR}"


def record_failure(plan: TrainPlan, rank: str, exc: BaseException) -> None:
    """Write ``rank-<rank>.json`` (when, which host, the error, its traceback) to :func:`failure_dir`;
    a failure to write is printed, never raised over the error itself."""
    import socket
    import traceback

    record = {"rank": rank, "host": socket.gethostname(), "failed_at": time.time(),
              "error": f"{type(exc).__name__}: {exc}",
              "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    try:
        LakeFiles(plan.hadoop_conf).write_bytes_atomic(f"{failure_dir(plan)}/rank-{rank}.json",
                                                       json.dumps(record).encode("utf-8"))
    except Exception as write_error:  # noqa: BLE001 - the training error matters more
        print(f"[lakeloop] rank {rank} could not record its failure in {failure_dir(plan)}: {write_error}",
              file=sys.stderr)


def recorded_failures(plan: TrainPlan) -> list[dict[str, Any]]:
    """The failures the run's processes recorded, the first to fail first."""
    files = LakeFiles(plan.hadoop_conf)
    records = []
    for name in files.list_dir(failure_dir(plan)):
        if name.startswith("rank-") and name.endswith(".json"):
            record = json.loads(files.read_bytes(f"{failure_dir(plan)}/{name}"))
            records.append({**record, "uri": f"{failure_dir(plan)}/{name}"})
    return sorted(records, key=lambda r: r["failed_at"])

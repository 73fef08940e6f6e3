"""Feeding one training process from a Petastorm reader: its own shard, equal steps, a
reproducible order. Runs without Spark (inside TorchDistributor's processes, or alone).

Three Petastorm pains, and what this module does about them:

* Uneven shards hang DDP or end in ``NoDataAvailableError`` (uber/petastorm#508).
  Petastorm gives row group ``i`` to shard ``i % shard_count``; :func:`plan_shards` reads
  the row-group sizes from the Parquet footers in Petastorm's own order and sets
  ``steps_per_epoch = ceil(largest shard / batch)``. Every rank reads its shard, starting a
  further pass when it runs out, and stops after exactly that many full batches, so all
  ranks take the same number of steps; a smaller shard repeats a few of its rows, nothing
  is dropped.
* Shuffling is not reproducible with a seed (uber/petastorm#798). With the ``dummy`` pool
  (default) the reader is single-threaded, and the row-group and row shuffles are seeded
  with ``(seed, epoch, pass)``, one reader per pass; the shard is picked by rank, and augmentation draws from a
  generator seeded with ``(seed, epoch, rank)``. An epoch's batches are then a function of
  (seed, epoch, rank). The ``thread`` pool is faster and not reproducible.
* A ``TransformSpec`` costs a pandas round trip per row group and a Python object per row
  (Arrow -> pandas -> per-row function -> pandas -> Arrow). The reader here loads the raw
  columns, and each row group is turned into tensors whole (:class:`BatchTransform`): its
  pixels viewed as one uint8 array, shifted and normalised with vectorised numpy, then cut
  into batches as views, with one copy per row group.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from lakeloop.errors import ConfigError
from lakeloop.preprocess import PreprocessSpec, pixels_to_array
from lakeloop.config import AugmentConfig
from lakeloop.training.augment import after_decoding, augment_batch, decode_batch

if TYPE_CHECKING:
    import numpy as np

# Columns of a materialized training set (lakeloop.training.dataset.materialize_training_set).
ID_COLUMN, LABEL_COLUMN, PIXELS_COLUMN = "image_id", "label_index", "pixels"
# ... and of a table's (materialize_table_training_set): float32 input vectors, float32 targets.
ROW_ID_COLUMN, INPUTS_COLUMN, TARGET_COLUMN = "row_id", "inputs", "target"


@dataclass(frozen=True)
class Feed:
    """What a training set's columns hold, and how a batch of them becomes tensors.

    Images: ``pixels`` (uint8 H x W x C bytes) normalised with the preprocessing spec, and a
    class index (or, for a multilabel or regression image model, ``target_width`` float32 values);
    with ``table_width``, also ``inputs``: that many encoded table values per image
    (the model then gets ``(images, table)``). Tables: ``inputs`` (float32 bytes, already
    encoded) as they are, and a class index or ``target_width`` float32 values (a regression
    value, or 0/1 per label).
    """

    input_shape: tuple[int, ...]
    input_column: str = PIXELS_COLUMN
    target_column: str = LABEL_COLUMN
    target_width: int = 0  # 0: one class index per row (int64); k: k float32 values per row
    preprocess_json: str | None = None  # pixels: how they are normalised; None: inputs are float32 already
    id_column: str = ID_COLUMN
    table_width: int = 0  # images with table columns: the width of their encoded ``inputs``

    @classmethod
    def for_images(cls, spec: PreprocessSpec, table_width: int = 0, target_width: int = 0) -> "Feed":
        return cls((spec.channels, spec.height, spec.width), target_column=TARGET_COLUMN if target_width else
                   LABEL_COLUMN, target_width=target_width, preprocess_json=spec.to_json(), table_width=table_width)

    @property
    def columns(self) -> list[str]:
        """The training-set columns a reader loads."""
        return [self.id_column, self.target_column, self.input_column, *([INPUTS_COLUMN] if self.table_width else [])]

    @classmethod
    def for_table(cls, width: int, target_width: int) -> "Feed":
        return cls((width,), INPUTS_COLUMN, TARGET_COLUMN if target_width else LABEL_COLUMN, target_width,
                   None, ROW_ID_COLUMN)

    @property
    def spec(self) -> PreprocessSpec | None:
        return PreprocessSpec.from_json(self.preprocess_json) if self.preprocess_json else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Feed":
        return cls(**{**data, "input_shape": tuple(data["input_shape"])})


def float32_rows(values, width: "int | tuple[int, ...]") -> "np.ndarray":
    """Binary cells of float32 bytes (a reader chunk's column) as one ``N x width`` float32 array."""
    import numpy as np

    shape = width if isinstance(width, tuple) else (width,)
    # bytearray: a writable buffer, so torch.from_numpy gets memory it may own.
    return np.frombuffer(bytearray(b"".join(values)), dtype=np.float32).reshape(len(values), *shape)


def as_feed(feed: "Feed | PreprocessSpec") -> Feed:
    """A :class:`Feed`; a preprocessing spec stands for an image training set's."""
    return feed if isinstance(feed, Feed) else Feed.for_images(feed)


@dataclass(frozen=True)
class ShardPlan:
    """How a dataset splits over ``world_size`` ranks, and how many steps each takes per epoch."""

    world_size: int
    batch_size: int
    rows_per_rank: tuple[int, ...]
    row_groups: int
    steps_per_epoch: int

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_rank)


def dataset_url(uri: str) -> str:
    """A lake URI in the form Petastorm/pyarrow open: ``file:/x`` -> ``file:///x``."""
    if uri.startswith("file:") and not uri.startswith("file://"):
        return "file://" + uri[len("file:"):]
    return uri


def row_group_sizes(url: str, hadoop_conf: Mapping[str, str] | None = None) -> list[int]:
    """Rows per row group, in the order Petastorm enumerates (and shards) them.

    ``hadoop_conf`` (``fs.s3a.*`` settings) is how an ``s3a://`` URL is reached; see
    :mod:`lakeloop.io.petastorm_fs`. The functions below take it for the same reason.
    """
    from petastorm.etl import dataset_metadata
    from petastorm.fs_utils import get_filesystem_and_path_or_paths
    from pyarrow import parquet as pq

    from lakeloop.io.petastorm_fs import petastorm_filesystem

    with warnings.catch_warnings():
        # Petastorm's own calls into pyarrow 14's legacy dataset API (DESIGN.md): known, harmless.
        warnings.simplefilter("ignore", FutureWarning)
        fs, path = get_filesystem_and_path_or_paths(dataset_url(url), filesystem=petastorm_filesystem(url, hadoop_conf))
        dataset = pq.ParquetDataset(path, filesystem=fs, validate_schema=False, metadata_nthreads=4)
        pieces = dataset_metadata.load_row_groups(dataset)
    sizes, footers = [], {}
    for piece in pieces:
        if piece.path not in footers:
            with fs.open(piece.path, "rb") as handle:
                footers[piece.path] = pq.ParquetFile(handle).metadata
        sizes.append(footers[piece.path].row_group(piece.row_group).num_rows)
    return sizes


def plan_shards(url: str, world_size: int, batch_size: int, hadoop_conf: Mapping[str, str] | None = None) -> ShardPlan:
    """Rows per rank and the common number of steps per epoch.

    Raises
    ------
    ConfigError
        fewer row groups than ranks (a rank would get nothing), or an empty dataset.
    """
    sizes = row_group_sizes(url, hadoop_conf)
    if len(sizes) < world_size:
        raise ConfigError(
            f"training set {url} has {len(sizes)} row groups but {world_size} training processes were asked for; "
            f"every process needs at least one. Raise features.training_set_files or lower train.num_processes"
        )
    per_rank = tuple(sum(sizes[i] for i in range(rank, len(sizes), world_size)) for rank in range(world_size))
    if min(per_rank) == 0:
        raise ConfigError(f"training set {url} leaves a process without rows ({list(per_rank)}); it may be empty")
    steps = math.ceil(max(per_rank) / batch_size)
    return ShardPlan(world_size, batch_size, per_rank, len(sizes), steps)


class BatchTransform:
    """A reader chunk (one row group) -> ``(model inputs, targets, ids)``, the whole chunk at once:
    pixels normalised (augmented first, :mod:`lakeloop.training.augment`) into float32
    ``N x C x H x W``; table inputs, and the ``inputs`` of images with table columns, viewed as
    float32 as they are. ``augmentation`` None: shifts of up to ``max_shift`` pixels only."""

    def __init__(self, feed: "Feed | PreprocessSpec", max_shift: int = 0, seed: tuple[int, ...] = (0,),
                 augmentation: AugmentConfig | None = None):
        import numpy as np

        self.feed = as_feed(feed)
        self.spec = self.feed.spec
        self.augmentation = augmentation if augmentation is not None else AugmentConfig(shift=max_shift)
        self.rng = np.random.default_rng(list(seed))

    def inputs(self, chunk) -> "np.ndarray | tuple[np.ndarray, np.ndarray]":
        values = getattr(chunk, self.feed.input_column)
        if self.spec is None:
            return float32_rows(values, self.feed.input_shape)
        if self.spec.encoded:  # encoded files: decoded (and cropped, flipped) one by one, the rest batched
            batch = decode_batch(values, self.spec, self.augmentation, self.rng)
            images = augment_batch(batch, self.spec, after_decoding(self.augmentation), self.rng)
        else:
            images = augment_batch(pixels_to_array(values, self.spec), self.spec, self.augmentation, self.rng)
        return (images, float32_rows(getattr(chunk, INPUTS_COLUMN), self.feed.table_width)) if self.feed.table_width \
            else images

    def targets(self, chunk) -> "np.ndarray":
        """int64 class indices, or float32 ``N x target_width``."""
        import numpy as np

        values = getattr(chunk, self.feed.target_column)
        return float32_rows(values, self.feed.target_width) if self.feed.target_width else \
            np.asarray(values).astype(np.int64)

    def __call__(self, chunk) -> tuple:
        import numpy as np

        return self.inputs(chunk), self.targets(chunk), np.asarray(getattr(chunk, self.feed.id_column))


def _reader(url: str, feed: Feed, *, seed: int | None, shuffle: bool, num_epochs: int | None,
            rank: int | None, world: int | None, pool: str, workers: int,
            hadoop_conf: Mapping[str, str] | None = None):
    from petastorm import make_batch_reader

    from lakeloop.io.petastorm_fs import petastorm_filesystem

    with warnings.catch_warnings():
        # Petastorm's own calls into pyarrow 14's legacy dataset API (DESIGN.md): known, harmless.
        warnings.simplefilter("ignore", FutureWarning)
        return make_batch_reader(
            dataset_url(url),
            schema_fields=feed.columns,
            reader_pool_type=pool,
            workers_count=workers,
            shuffle_row_groups=shuffle,
            shuffle_rows=shuffle,
            seed=seed,
            num_epochs=num_epochs,
            cur_shard=rank,
            shard_count=world,
            filesystem=petastorm_filesystem(url, hadoop_conf),
        )


def epoch_batches(
    url: str,
    plan: ShardPlan,
    feed: "Feed | PreprocessSpec",
    *,
    rank: int,
    epoch: int,
    seed: int,
    max_shift: int = 0,
    pool: str = "dummy",
    workers: int = 1,
    hadoop_conf: Mapping[str, str] | None = None,
    augmentation: AugmentConfig | None = None,
) -> Iterator[tuple["np.ndarray", "np.ndarray", "np.ndarray"]]:
    """Exactly ``plan.steps_per_epoch`` batches of ``plan.batch_size`` for ``rank`` in ``epoch``,
    augmented with ``augmentation`` (None: shifts of up to ``max_shift`` pixels only).

    Yields ``(inputs float32 N x <input shape>, targets, ids str N)``; inputs are
    ``(images, table N x table_width)`` when the feed has table columns; targets are int64 class
    indices, or float32 ``N x target_width`` (see :class:`Feed`).
    """
    feed = as_feed(feed)
    transform = BatchTransform(feed, max_shift, seed=(seed, epoch, rank), augmentation=augmentation)
    need, size = plan.steps_per_epoch * plan.batch_size, plan.batch_size
    left, emitted = None, 0  # rows read but not yet in a batch (fewer than a batch)
    for pass_no in range(need):  # a smaller shard takes a second (partial) pass
        # One reader per pass with num_epochs=1: Petastorm's ventilator re-shuffles at an epoch
        # boundary as often as its queue is full, which makes num_epochs=None irreproducible.
        with _reader(url, feed, seed=(seed * 100_003 + epoch) * 1_009 + pass_no, shuffle=True, num_epochs=1,
                     rank=rank, world=plan.world_size, pool=pool, workers=workers, hadoop_conf=hadoop_conf) as reader:
            for chunk in reader:
                part, start = transform(chunk), 0
                if left is not None:
                    missing = size - len(left[1])
                    if len(part[1]) < missing:  # a row group smaller than what the batch still needs
                        left = _concat([left, part])
                        continue
                    # The batch that straddles two row groups is the only one copied.
                    yield _concat([left, _part_rows(part, 0, missing)])
                    start, emitted = missing, emitted + size
                while len(part[1]) - start >= size and emitted < need:
                    yield _part_rows(part, start, start + size)  # views of the row group's arrays
                    start, emitted = start + size, emitted + size
                if emitted >= need:
                    return
                left = _part_rows(part, start, None) if start < len(part[1]) else None


def shard_batches(
    url: str, feed: "Feed | PreprocessSpec", *, rank: int, world: int, batch_size: int, pool: str = "dummy", workers: int = 1,
    hadoop_conf: Mapping[str, str] | None = None,
) -> Iterator[tuple["np.ndarray", "np.ndarray", "np.ndarray"]]:
    """One pass over ``rank``'s shard, unshuffled, no augmentation (evaluation); last batch may be short.

    A split of fewer row groups than ranks (a small validation or test split) is shared by as many
    ranks as it has row groups; the others get nothing, as does every rank of an empty split.
    """
    feed = as_feed(feed)
    transform = BatchTransform(feed)
    world = min(world, len(row_group_sizes(url, hadoop_conf)))
    if rank >= world:
        return
    shard = dict(rank=rank, world=world) if world > 1 else dict(rank=None, world=None)
    with _reader(url, feed, seed=None, shuffle=False, num_epochs=1, pool=pool, workers=workers,
                 hadoop_conf=hadoop_conf, **shard) as reader:
        for chunk in reader:
            x, y, i = transform(chunk)
            for start in range(0, len(y), batch_size):
                yield _rows(x, start, start + batch_size), y[start:start + batch_size], i[start:start + batch_size]


def _concat(parts: list) -> tuple:
    """``(inputs, targets, ids)`` parts joined: inputs are arrays, or ``(images, table)`` tuples."""
    import numpy as np

    def join(arrays):
        return tuple(join(column) for column in zip(*arrays)) if isinstance(arrays[0], tuple) else np.concatenate(arrays)

    return tuple(join(column) for column in zip(*parts))


def _rows(x: "np.ndarray | tuple[np.ndarray, ...]", start: int, stop: int | None):
    return tuple(a[start:stop] for a in x) if isinstance(x, tuple) else x[start:stop]


def _part_rows(part: tuple, start: int, stop: int | None) -> tuple:
    """Rows ``start:stop`` of an ``(inputs, targets, ids)`` part, as views."""
    x, y, i = part
    return _rows(x, start, stop), y[start:stop], i[start:stop]

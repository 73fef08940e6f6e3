"""Feeding one training process: its own row groups, equal steps, a reproducible order. Runs
without Spark (inside TorchDistributor's processes, or alone).

The feed is a plan and a reader. The plan is computed here from the Parquet footers alone
(:func:`row_groups`, :func:`plan_shards`, :func:`pass_order`):

* Row group ``i`` of the training set (its files in path order, each file's row groups in
  order) belongs to rank ``i % world``. ``steps_per_epoch = ceil(largest shard / batch)``:
  every rank reads its shard, starting a further pass when it runs out, and stops after
  exactly that many full batches, so all ranks take the same number of steps (uneven shards
  would hang DDP); a smaller shard repeats a few of its rows, nothing is dropped.
* In pass ``p`` of epoch ``e`` a rank reads its row groups in an order, and each row group's
  rows in a permutation, drawn from ``(seed, e, rank, p)``; augmentation draws from a
  generator seeded with ``(seed, e, rank)``. An epoch's batches are a function of
  ``(seed, epoch, rank)``, whatever the reader and however fast it is.

A reader (:mod:`lakeloop.training.readers`) only executes the plan: given a row group and a
permutation it returns the columns, ``arrow`` on pyarrow alone (every supported pyarrow;
``file:``, ``s3a:``, ``hdfs:``, WebHDFS and ``dbfs:`` through :mod:`lakeloop.io.lakefs`),
``petastorm`` through Petastorm's ``make_batch_reader`` (the *spark40* stack only). Both give
the same batches. :data:`PLAN_VERSION` names the plan's rules; it is part of the training
key, so a resumed run never continues in another order.

Each row group is turned into tensors whole (:class:`BatchTransform`): its pixels viewed as
one uint8 array, shifted and normalised with vectorised numpy, then cut into batches as
views, with one copy per row group. A prefetch thread fetches (decodes) the next row groups
while the training step runs on the current one.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from lakeloop.errors import ConfigError, SourceError
from lakeloop.preprocess import PreprocessSpec, pixels_to_array
from lakeloop.config import AugmentConfig
from lakeloop.training.augment import after_decoding, augment_batch, decode_batch
from lakeloop.training.readers import RowGroup, chunk, open_reader

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
    """Binary cells of float32 bytes (a reader chunk's column: byte strings, or a uint8 ``N x bytes``
    array) as one ``N x width`` float32 array that torch may own (writable)."""
    import numpy as np

    shape = width if isinstance(width, tuple) else (width,)
    if isinstance(values, np.ndarray) and values.dtype == np.uint8:
        rows = np.ascontiguousarray(values).view(np.float32).reshape(len(values), *shape)
        return rows if rows.flags.writeable else rows.copy()
    # bytearray: a writable buffer, so torch.from_numpy gets memory it may own.
    return np.frombuffer(bytearray(b"".join(values)), dtype=np.float32).reshape(len(values), *shape)


def as_feed(feed: "Feed | PreprocessSpec") -> Feed:
    """A :class:`Feed`; a preprocessing spec stands for an image training set's."""
    return feed if isinstance(feed, Feed) else Feed.for_images(feed)


# The rules of the plan below (which rank reads which row group, in which order, in which row
# order). Change it whenever a rule changes: it is part of the training key
# (lakeloop.training.driver.training_key), so a resumed run never mixes two orders.
PLAN_VERSION = 2


@dataclass(frozen=True)
class ShardPlan:
    """How a dataset splits over ``world_size`` ranks, and how many steps each takes per epoch."""

    world_size: int
    batch_size: int
    rows_per_rank: tuple[int, ...]
    row_groups: int
    steps_per_epoch: int
    version: int = PLAN_VERSION

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_rank)


def data_files(url: str, hadoop_conf: Mapping[str, str] | None = None) -> tuple[Any, list[str]]:
    """The filesystem serving ``url`` and the data files of the Parquet set there, in path order
    (names starting with ``_`` or ``.``, such as ``_SUCCESS`` and checksums, are not data).

    Raises
    ------
    SourceError
        no such folder, or it cannot be listed.
    """
    from pyarrow.fs import FileSelector, FileType

    from lakeloop.io import lakefs

    fs, root = lakefs.filesystem_for(url, hadoop_conf)
    try:
        infos = fs.get_file_info(FileSelector(root, recursive=True))
    except (OSError, ValueError) as exc:
        raise SourceError(f"training set {url} cannot be listed ({exc}); run build_features to write it") from exc
    files = sorted(i.path for i in infos if i.type == FileType.File
                   and not any(part.startswith(("_", ".")) for part in i.path[len(root):].split("/")))
    return fs, files


def row_groups(url: str, hadoop_conf: Mapping[str, str] | None = None) -> list[RowGroup]:
    """Every row group of the Parquet set at ``url``, in the plan's order: files in path order,
    each file's row groups in order. Read from the footers alone.

    ``hadoop_conf`` (``fs.s3a.*`` settings) is how an ``s3a://`` URL is reached
    (:func:`lakeloop.io.lakefs.filesystem_for`); the functions below take it for the same reason.

    Raises
    ------
    SourceError
        the set cannot be listed, or a file is not Parquet.
    """
    from pyarrow import parquet as pq

    fs, files = data_files(url, hadoop_conf)
    groups = []
    for path in files:
        try:
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise SourceError(f"training set {url}: {path} is not a readable Parquet file ({exc}); "
                              f"run build_features again to rewrite the set") from exc
        groups.extend(RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups))
    return groups


def rank_row_groups(groups: list[RowGroup], rank: int, world: int) -> list[RowGroup]:
    """The row groups ``rank`` of ``world`` reads: every ``world``-th, from the ``rank``-th."""
    return groups[rank::world]


def plan_shards(url: str, world_size: int, batch_size: int, hadoop_conf: Mapping[str, str] | None = None) -> ShardPlan:
    """Rows per rank and the common number of steps per epoch.

    Raises
    ------
    ConfigError
        fewer row groups than ranks (a rank would get nothing), or an empty dataset.
    """
    groups = row_groups(url, hadoop_conf)
    if len(groups) < world_size:
        raise ConfigError(
            f"training set {url} has {len(groups)} row groups but {world_size} training processes were asked for; "
            f"every process needs at least one. Raise features.training_set_files or lower train.num_processes"
        )
    per_rank = tuple(sum(g.rows for g in rank_row_groups(groups, rank, world_size)) for rank in range(world_size))
    if min(per_rank) == 0:
        raise ConfigError(f"training set {url} leaves a process without rows ({list(per_rank)}); it may be empty")
    steps = math.ceil(max(per_rank) / batch_size)
    return ShardPlan(world_size, batch_size, per_rank, len(groups), steps)


def pass_order(groups: list[RowGroup], *, seed: int, epoch: int, rank: int,
               pass_no: int) -> list[tuple[RowGroup, "np.ndarray"]]:
    """A rank's row groups in the order pass ``pass_no`` of ``epoch`` reads them, each with the
    permutation of its rows, both drawn from ``(seed, epoch, rank, pass_no)``."""
    import numpy as np

    # A list seeds numpy's SeedSequence, which takes any non-negative integer: every train.seed the
    # profile accepts (0 to 2**63 - 1) is valid here, with no arithmetic that could leave a range.
    rng = np.random.default_rng([PLAN_VERSION, seed, epoch, rank, pass_no])
    return [(groups[i], rng.permutation(groups[i].rows)) for i in rng.permutation(len(groups))]


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
        import numpy as np

        values = getattr(chunk, self.feed.input_column)
        if self.spec is None:
            return float32_rows(values, self.feed.input_shape)
        if self.spec.encoded:  # encoded files: decoded (and cropped, flipped) one by one, the rest batched
            if isinstance(values, np.ndarray) and values.dtype == np.uint8:  # files that happen to be one size
                values = [row.tobytes() for row in values]
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


def _transformed(reader, order, transform: BatchTransform, prefetch: int) -> Iterator[tuple]:
    """Each row group of ``order`` read, its rows put in the plan's order and transformed. With
    ``prefetch``, one thread fetches up to that many row groups ahead (Parquet decoding, which runs
    without the GIL); the conversion to numpy, the row order and the transform stay in this
    thread, in order, so their random draws are those of a run without prefetch, and the two
    threads do not queue for the GIL."""
    fetched = ((reader.fetch(group), rows) for group, rows in order)
    for columns, rows in (prefetched(fetched, prefetch) if prefetch > 0 else fetched):
        yield transform(chunk(columns, rows))


def prefetched(items: Iterator, depth: int) -> Iterator:
    """``items``, produced up to ``depth`` ahead by one background thread. An exception there is
    raised here; a consumer that stops early stops the thread."""
    import queue
    import threading

    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            buffer.put((done, exc))

    thread = threading.Thread(target=produce, name="lakeloop-feed-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


def epoch_batches(
    url: str,
    plan: ShardPlan,
    feed: "Feed | PreprocessSpec",
    *,
    rank: int,
    epoch: int,
    seed: int,
    max_shift: int = 0,
    reader: str = "arrow",
    prefetch: int = 2,
    hadoop_conf: Mapping[str, str] | None = None,
    augmentation: AugmentConfig | None = None,
) -> Iterator[tuple["np.ndarray", "np.ndarray", "np.ndarray"]]:
    """Exactly ``plan.steps_per_epoch`` batches of ``plan.batch_size`` for ``rank`` in ``epoch``,
    augmented with ``augmentation`` (None: shifts of up to ``max_shift`` pixels only), read by
    ``reader`` (``arrow`` or ``petastorm``, :func:`lakeloop.training.readers.open_reader`).

    Yields ``(inputs float32 N x <input shape>, targets, ids str N)``; inputs are
    ``(images, table N x table_width)`` when the feed has table columns; targets are int64 class
    indices, or float32 ``N x target_width`` (see :class:`Feed`).

    Raises
    ------
    ConfigError
        the plan was made by another version of these rules, or the set no longer matches it.
    """
    feed = as_feed(feed)
    if plan.version != PLAN_VERSION:
        raise ConfigError(f"the shard plan of {url} is of version {plan.version}, this lakeloop reads version "
                          f"{PLAN_VERSION}; start the training run again (a new run gets a new plan)")
    groups = row_groups(url, hadoop_conf)
    if len(groups) != plan.row_groups:
        raise ConfigError(f"training set {url} has {len(groups)} row groups, its plan {plan.row_groups}: the set was "
                          f"rewritten during the run; train again")
    mine = rank_row_groups(groups, rank, plan.world_size)
    transform = BatchTransform(feed, max_shift, seed=(seed, epoch, rank), augmentation=augmentation)
    need, size = plan.steps_per_epoch * plan.batch_size, plan.batch_size
    left, emitted = None, 0  # rows read but not yet in a batch (fewer than a batch)
    with open_reader(reader, url, feed.columns, hadoop_conf) as source:
        for pass_no in range(need):  # a smaller shard takes a second (partial) pass
            order = pass_order(mine, seed=seed, epoch=epoch, rank=rank, pass_no=pass_no)
            with contextlib.closing(_transformed(source, order, transform, prefetch)) as parts:
                for part in parts:
                    start = 0
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
    url: str, feed: "Feed | PreprocessSpec", *, rank: int, world: int, batch_size: int, reader: str = "arrow",
    prefetch: int = 2, hadoop_conf: Mapping[str, str] | None = None,
) -> Iterator[tuple["np.ndarray", "np.ndarray", "np.ndarray"]]:
    """One pass over ``rank``'s shard, in the set's order, no augmentation (evaluation); the last
    batch may be short.

    A split of fewer row groups than ranks (a small validation or test split) is shared by as many
    ranks as it has row groups; the others get nothing, as does every rank of an empty split.
    """
    feed = as_feed(feed)
    transform = BatchTransform(feed)
    groups = row_groups(url, hadoop_conf)
    world = min(world, len(groups))
    if rank >= world:
        return
    with open_reader(reader, url, feed.columns, hadoop_conf) as source:
        order = [(group, None) for group in rank_row_groups(groups, rank, world)]
        with contextlib.closing(_transformed(source, order, transform, prefetch)) as parts:
            for x, y, i in parts:
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

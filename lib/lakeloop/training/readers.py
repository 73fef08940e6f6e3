"""The two readers that execute the feed's plan (:mod:`lakeloop.training.loader`): given one row
group and a permutation of its rows, the columns the training step needs.

* ``arrow`` (default): pyarrow alone. Footers and row groups are read through the filesystem
  :func:`lakeloop.io.lakefs.filesystem_for` gives (``file:``, ``s3a:``, ``hdfs:``, WebHDFS,
  ``dbfs:``); a binary column whose cells are all one size (pixels, float32 vectors) is viewed
  as one ``N x bytes`` uint8 array over Arrow's data buffer, without a copy. Runs on every
  pyarrow lakeloop supports.
* ``petastorm``: Petastorm's ``make_batch_reader`` on the one file of the row group, sharded so
  that the reader yields exactly that row group (``cur_shard`` = its index in the file), with
  no shuffle of its own. Kept for the *spark40* stack, where Petastorm still imports
  (``pip install 'lakeloop[petastorm]'``); newer pyarrow and numpy 2 removed APIs it uses.

Both return the same columns for the same plan, so a run's batches do not depend on the reader
(``tests/test_feed.py`` hashes two epochs of both). Everything Petastorm needs, including the
legacy filesystem adapter (:mod:`lakeloop.io.petastorm_fs`), is imported only here, only
when that reader is asked for.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from lakeloop.errors import ConfigError, SetupError, SourceError

if TYPE_CHECKING:
    import numpy as np

READERS = ("arrow", "petastorm")


@dataclass(frozen=True)
class RowGroup:
    """One row group of a training set: its file (the path inside the filesystem
    :func:`lakeloop.io.lakefs.filesystem_for` gives for the set's URI), its index in the file, its rows."""

    path: str
    index: int
    rows: int



def dataset_url(uri: str) -> str:
    """A lake URI in the form Petastorm opens: ``file:/x`` -> ``file:///x``."""
    if uri.startswith("file:") and not uri.startswith("file://"):
        return "file://" + uri[len("file:"):]
    return uri




def column_values(values: Any) -> "np.ndarray":
    """A column as numpy: binary cells all of one size as one uint8 ``N x size`` array (a view of
    Arrow's buffer where there is one), other binary cells as an object array of ``bytes``,
    anything else as numpy gives it."""
    import numpy as np
    import pyarrow as pa

    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            return _binary_view(array)
        return array.to_numpy(zero_copy_only=False)
    values = np.asarray(values)
    if values.dtype == object and len(values) and isinstance(values[0], (bytes, bytearray)):
        sizes = {len(v) for v in values}
        if len(sizes) == 1:
            return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), sizes.pop())
    return values


def _binary_view(array) -> "np.ndarray":
    import numpy as np
    import pyarrow as pa

    n = len(array)
    if n == 0 or array.null_count:
        return np.array(array.to_pylist(), dtype=object)
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[array.offset:array.offset + n + 1]
    size = int(offsets[1] - offsets[0])
    if size == 0 or not np.all(np.diff(offsets) == size):
        return np.array(array.to_pylist(), dtype=object)
    return np.frombuffer(data, dtype=np.uint8)[int(offsets[0]):int(offsets[-1])].reshape(n, size)


def chunk(columns: Mapping[str, Any], rows: "np.ndarray | None") -> SimpleNamespace:
    """A row group's columns (name -> values) as the feed's chunk: numpy columns
    (:func:`column_values`), rows taken in the order ``rows`` gives (None: as stored)."""
    return take_rows(SimpleNamespace(**{name: column_values(v) for name, v in columns.items()}), rows)


def take_rows(part: SimpleNamespace, rows: "np.ndarray | None") -> SimpleNamespace:
    """A chunk with its rows in the order ``rows`` gives (one copy per column); None: as it is."""
    if rows is None:
        return part
    return SimpleNamespace(**{name: v[rows] for name, v in vars(part).items()})


class ArrowReader:
    """Row groups read with pyarrow through the lake's filesystem; files opened once per reader."""

    def __init__(self, url: str, columns: Sequence[str], hadoop_conf: Mapping[str, str] | None = None):
        from lakeloop.io import lakefs

        self.url, self.columns = url, list(columns)
        self.fs, _ = lakefs.filesystem_for(url, hadoop_conf)
        self._files: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def _file(self, path: str):
        from pyarrow import parquet as pq

        if path not in self._files:
            handle = self._stack.enter_context(self.fs.open_input_file(path))
            self._files[path] = pq.ParquetFile(handle)
        return self._files[path]

    def fetch(self, group: RowGroup) -> dict[str, Any]:
        """Row group ``group``'s columns as Arrow read them (the part a prefetch thread does: Parquet
        decoding runs without the GIL); :func:`chunk` makes them the feed's chunk.

        Raises
        ------
        SourceError
            the file cannot be read, lacks a column the feed needs, or changed since the plan.
        """
        try:
            table = self._file(group.path).read_row_group(group.index, columns=self.columns)
        except (OSError, ValueError, KeyError) as exc:
            raise SourceError(f"training set {self.url}: row group {group.index} of {group.path} cannot be read "
                              f"({exc}); run build_features again to rewrite the set") from exc
        if table.num_rows != group.rows:
            raise SourceError(f"training set {self.url}: {group.path} changed during the run (row group "
                              f"{group.index} has {table.num_rows} rows, the plan {group.rows}); train again")
        return {name: table.column(name) for name in self.columns}

    def read(self, group: RowGroup, rows: "np.ndarray | None") -> SimpleNamespace:
        """Row group ``group``'s columns, its rows in the order ``rows`` gives (None: as stored)."""
        return chunk(self.fetch(group), rows)

    def close(self) -> None:
        self._stack.close()
        self._files.clear()


class PetastormReader:
    """Row groups read by Petastorm's ``make_batch_reader``, one reader per row group, so that
    Petastorm executes the plan's order rather than its own."""

    def __init__(self, url: str, columns: Sequence[str], hadoop_conf: Mapping[str, str] | None = None):
        try:
            import petastorm  # noqa: F401
            from lakeloop.io.petastorm_fs import petastorm_filesystem
        except ImportError as exc:
            raise SetupError(
                f"train.reader = 'petastorm' but Petastorm cannot be imported here ({exc}). It runs on the spark40 "
                f"stack only (pyarrow < 15, numpy < 2: ./dev/setup.sh --stack spark40, or pip install "
                f"'lakeloop[petastorm]' beside Spark 4.0); use train.reader=arrow (the default) elsewhere"
            ) from exc
        from lakeloop.io import lakefs

        self.url, self.columns, self.hadoop_conf = url, list(columns), hadoop_conf
        self.fs, root = lakefs.filesystem_for(url, hadoop_conf)
        self._root, self._url_root = root.rstrip("/"), url.rstrip("/")
        self._filesystem = petastorm_filesystem(url, hadoop_conf)
        self._groups_in_file: dict[str, int] = {}

    def _file_url(self, path: str) -> str:
        return dataset_url(self._url_root + path[len(self._root):])

    def _row_groups_in(self, path: str) -> int:
        from pyarrow import parquet as pq

        if path not in self._groups_in_file:
            with self.fs.open_input_file(path) as handle:
                self._groups_in_file[path] = pq.ParquetFile(handle).metadata.num_row_groups
        return self._groups_in_file[path]

    def fetch(self, group: RowGroup) -> dict[str, Any]:
        """As :meth:`ArrowReader.fetch`, through ``make_batch_reader``."""
        from petastorm import make_batch_reader

        count = self._row_groups_in(group.path)
        with warnings.catch_warnings():
            # Petastorm's own calls into pyarrow 14's legacy dataset API: known, harmless.
            warnings.simplefilter("ignore", FutureWarning)
            with make_batch_reader(self._file_url(group.path), schema_fields=self.columns, reader_pool_type="dummy",
                                   shuffle_row_groups=False, shuffle_rows=False, num_epochs=1,
                                   cur_shard=group.index if count > 1 else None, shard_count=count if count > 1 else None,
                                   filesystem=self._filesystem) as reader:
                parts = [part._asdict() for part in reader]
        columns = {name: _joined([p[name] for p in parts]) for name in self.columns}
        got = len(next(iter(columns.values()))) if columns else 0
        if got != group.rows:
            raise SourceError(f"training set {self.url}: Petastorm read {got} rows of row group {group.index} of "
                              f"{group.path}, the plan {group.rows}; train again, or use train.reader=arrow")
        return columns

    def read(self, group: RowGroup, rows: "np.ndarray | None") -> SimpleNamespace:
        """As :meth:`ArrowReader.read`."""
        return chunk(self.fetch(group), rows)

    def close(self) -> None:
        self._groups_in_file.clear()


def _joined(parts: list) -> Any:
    import numpy as np

    if not parts:
        return np.array([], dtype=object)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


@contextlib.contextmanager
def open_reader(kind: str, url: str, columns: Sequence[str],
                hadoop_conf: Mapping[str, str] | None = None) -> Iterator["ArrowReader | PetastormReader"]:
    """The reader ``kind`` names (``train.reader``), closed on exit.

    Raises
    ------
    ConfigError
        an unknown reader.
    SetupError
        ``petastorm`` where Petastorm cannot be imported (any stack but *spark40*).
    """
    if kind not in READERS:
        raise ConfigError(f"train.reader = {kind!r} is not a reader; use one of {', '.join(READERS)}")
    reader = ArrowReader(url, columns, hadoop_conf) if kind == "arrow" else PetastormReader(url, columns, hadoop_conf)
    try:
        yield reader
    finally:
        reader.close()

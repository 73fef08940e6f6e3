"""Finding and reading the image files of a source folder, every one of them.

Spark's file listing (``binaryFile``) is fast and reads no bytes, but it passes over, without
a word, every file and folder whose name starts with ``_`` or ``.`` (a camera's
``_DSC0001.JPG``, a ``_drafts/`` folder, a ``.thumb.jpg``), and it skips empty files. So:

* :func:`list_source_files` takes Spark's listing, adds back the empty files Spark's scan
  skips, and adds the files under names Spark hides, found with the pyarrow filesystem of
  :mod:`lakeloop.io.lakefs` (the same storage settings). Each row says whether Spark can read
  it (``spark_readable``) and whether a component of its name starts with ``.`` (``dot_name``).
* :func:`read_files` reads the bytes of the listed files: through ``binaryFile`` those Spark
  can read (never a file over the size limit: the ``length`` filter is pushed into the scan),
  and the others on the executors with the pyarrow filesystem, in a pandas UDF.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterator, Literal

# pandas at module level: pandas UDF type hints are resolved in this module's globals.
import pandas as pd

from lakeloop.errors import SourceError
from lakeloop.io import hadoop
from lakeloop.io.lakefs import LakeFiles, filesystem_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FILE_KEYS = ("path", "length", "modification_time")
_DENIED = re.compile(r"AccessDeniedException: (\S+): Permission denied")
LISTING_SCHEMA = ("path string, length long, modification_time timestamp, spark_readable boolean, "
                  "dot_name boolean")


def extension_glob(extensions: tuple[str, ...]) -> str:
    """``("png", "jpg")`` -> ``*.{[pP][nN][gG],[jJ][pP][gG]}``: Hadoop globs are case-sensitive.

    The profile checked the entries (letters and digits, an optional leading dot)."""
    parts = []
    for ext in extensions:
        ext = ext.lower().lstrip(".")
        parts.append("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in ext))
    return "*.{" + ",".join(parts) + "}"


def hidden_by_spark(relative: str) -> bool:
    """Whether Spark's listing passes over ``relative`` (a path below the source): a component
    starting with ``_`` (without ``=``, which marks a partition folder) or ``.``."""
    return any((part.startswith("_") and "=" not in part) or part.startswith(".") for part in relative.split("/"))


def require_source(spark: "SparkSession", source: str) -> None:
    """Raise a SourceError when the image source folder ``source`` does not exist."""
    if not hadoop.exists(spark, source):
        raise SourceError(
            f"image source {source} does not exist; check ingest_images.source "
            f"(or pass --source URI) and that the folder is reachable from Spark"
        )


def list_source_files(spark: "SparkSession", source: str, extensions: tuple[str, ...],
                      files: LakeFiles | None = None) -> "DataFrame":
    """All files under ``source`` (recursively) whose ending is in ``extensions``, any case,
    whatever their names.

    Columns: ``path``, ``length``, ``modification_time``, ``spark_readable``, ``dot_name``.
    No file content is read. ``files`` reaches the source without Spark (default: no storage
    settings, enough for ``file:``); the result is persisted: unpersist it when done.

    Raises
    ------
    SourceError
        if ``source`` does not exist.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    require_source(spark, source)
    try:
        listing = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", extension_glob(extensions))
            .load(source)
        )
    except Exception as exc:
        denied = _DENIED.search(str(exc))
        if denied is None:
            raise
        # Its files cannot even be named, so none can be accounted for: the run stops here.
        raise SourceError(
            f"cannot list {denied.group(1)} under the image source {source}: permission denied for the user "
            f"running the job; grant it read and execute permission (chmod a+rx) or move the folder out of "
            f"ingest_images.source"
        ) from exc
    # Cached before the count below: the listing is scanned once, however often it is used.
    scanned = listing.select("path", "length", F.col("modificationTime").alias("modification_time"),
                             F.lit(True).alias("spark_readable"), F.lit(False).alias("dot_name")
                             ).persist(StorageLevel.MEMORY_AND_DISK)
    extra = _empty_files(spark, listing, scanned) + files_by_pyarrow(files or LakeFiles(), source, extensions)
    if not extra:
        return scanned
    # One cached frame for the caller to unpersist; the scan itself is read from its own cache.
    whole = scanned.unionByName(spark.createDataFrame(extra, LISTING_SCHEMA)).persist(StorageLevel.MEMORY_AND_DISK)
    whole.count()
    scanned.unpersist()
    return whole


def _empty_files(spark: "SparkSession", listing: "DataFrame", scanned: "DataFrame") -> list[tuple]:
    """Spark's file scans skip zero-length files, but an empty upload is an input like any other
    and must reach quarantine: find them in the file index."""
    indexed = listing.inputFiles()
    if len(indexed) == scanned.count():
        return []
    shown = {r.path for r in scanned.select("path").collect()}
    missing = [uri for uri in indexed if hadoop.path_from_index(uri) not in shown]
    return [(path, length, mtime, True, False) for path, length, mtime in hadoop.empty_files(spark, missing)]


def files_by_pyarrow(files: LakeFiles, source: str, extensions: tuple[str, ...],
                      which: Literal["hidden", "passed_over", "all"] = "hidden") -> list[tuple]:
    """(path, length, mtime, spark_readable, dot_name) of the files under ``source``, listed with
    pyarrow: those Spark's listing hides (``hidden``, ``spark_readable`` false); those and the
    empty files Spark's scans never hand over (``passed_over``); or every file (``all``).

    Paths are the source URI plus the path below it, the form the rest of lakeloop uses;
    times are truncated to milliseconds, as Hadoop's are.
    """
    from pyarrow.fs import FileSelector, FileType

    fs, root = files.filesystem(source)
    endings = tuple("." + e.lower().lstrip(".") for e in extensions)
    found = []
    for info in fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
        relative = info.path[len(root):].lstrip("/")
        hidden = hidden_by_spark(relative)
        wanted = which == "all" or hidden or (which == "passed_over" and info.size == 0)
        if info.type != FileType.File or not relative.lower().endswith(endings) or not wanted:
            continue
        mtime = info.mtime.astimezone(timezone.utc).replace(tzinfo=None) if info.mtime else datetime(1970, 1, 1)
        mtime = mtime.replace(microsecond=mtime.microsecond // 1000 * 1000)
        dot = any(part.startswith(".") for part in relative.split("/"))
        found.append((f"{source.rstrip('/')}/{relative}", int(info.size), mtime, not hidden, dot))
    return found + broken_links(source, extensions)


def broken_links(source: str, extensions: tuple[str, ...]) -> list[tuple]:
    """Listing rows (as :func:`files_by_pyarrow`'s) of the symbolic links under a local ``source``
    whose target does not exist: no listing shows them, yet each is an input the user put there
    and must reach quarantine. Sizes and times are the link's own. Other file systems have none."""
    import os

    root = _local_path(source)
    if root is None:
        return []
    endings = tuple("." + e.lower().lstrip(".") for e in extensions)
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if name.lower().endswith(endings) and _is_broken_link(path):
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                mtime = datetime.fromtimestamp(int(os.lstat(path).st_mtime * 1000) / 1000, timezone.utc)
                found.append((f"{source.rstrip('/')}/{relative}", 0, mtime.replace(tzinfo=None), False,
                              any(part.startswith(".") for part in relative.split("/"))))
    return found


def local_refusals(paths: list[str]) -> dict[str, tuple[str, str]]:
    """Of these ``file:`` paths, those no read can succeed on, as path -> (reason, message): a
    symbolic link to nothing (``broken_link``), a file the job's user may not read
    (``unreadable``). Spark would fail the whole scan on either. Other paths are skipped."""
    import os

    refused = {}
    for path in paths:
        local = _local_path(path)
        if local is None:
            continue
        if _is_broken_link(local):
            refused[path] = ("broken_link", f"broken symbolic link: it points to {os.readlink(local)}, which does "
                                            f"not exist; fix the link or remove it from the source folder")
            continue
        try:
            with open(local, "rb"):
                pass
        except PermissionError:
            refused[path] = ("unreadable", f"permission denied: the user running the job (uid {os.geteuid()}) may "
                                           f"not read it; grant read permission (chmod a+r) and touch it, and the "
                                           f"next run takes it again; or move it out of the source folder")
        except OSError:
            pass  # vanished since listing, or another error: the read reports it
    return refused


def _local_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI (as :func:`lakeloop.io.lakefs.filesystem_for` reads it), else None."""
    return filesystem_for(uri)[1] if uri.startswith("file:") else None


def _is_broken_link(path: str) -> bool:
    import os

    return os.path.islink(path) and not os.path.exists(path)


def read_in_bounded_batches(frames: Iterator[pd.DataFrame], hadoop_conf: dict[str, str],
                            max_batch_bytes: int) -> Iterator[pd.DataFrame]:
    """The body of the reader of files Spark's scan cannot see: each file of ``frames``
    (``path, length, modification_time``) read whole with :class:`~lakeloop.io.lakefs.LakeFiles`,
    one at a time, and handed back in frames of at most ``max_batch_bytes`` of content (or one
    file, when a file alone is larger): memory stays near one batch however many files a batch of
    paths names. A file deleted since listing is left out (the next run takes it)."""
    from lakeloop.io.lakefs import LakeFiles

    files = LakeFiles(hadoop_conf)
    rows: list[tuple] = []
    size = 0
    for frame in frames:
        for path, length, modified in zip(frame["path"], frame["length"], frame["modification_time"]):
            if rows and size + int(length) > max_batch_bytes:
                yield pd.DataFrame(rows, columns=[*FILE_KEYS, "content"])
                rows, size = [], 0
            try:
                content = files.read_bytes(path)
            except FileNotFoundError:
                continue  # vanished since listing: left for the next run, like Spark's scan does
            rows.append((path, length, modified, content))
            size += len(content)
    if rows:
        yield pd.DataFrame(rows, columns=[*FILE_KEYS, "content"])


def _read_paths(spark: "SparkSession", paths: list[str]) -> "DataFrame | None":
    """``binaryFile`` over these files; those deleted since they were listed are left out (they are
    left for the next run, like a file changed since). None when none is left."""
    from pyspark.errors import AnalysisException

    def load(some: list[str]) -> "DataFrame":
        # ignoreMissingFiles: a file deleted between this plan and the read is skipped, not an error.
        return spark.read.format("binaryFile").option("ignoreMissingFiles", "true") \
            .load([hadoop.literal_glob(p) for p in some])

    try:
        return load(paths)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" not in str(exc):
            raise
    present = [p for p in paths if hadoop.exists(spark, p)]
    return load(present) if present else None


def read_files(
    spark: "SparkSession", files: "DataFrame", source: str | None = None, extensions: tuple[str, ...] = (),
    max_file_bytes: int = 2**31 - 1, lake_files: LakeFiles | None = LakeFiles(),
    max_batch_bytes: int = 32 * 1024 * 1024,
) -> "DataFrame":
    """Bytes of the listed ``files``: ``path, length, modification_time, content``.

    Only (path, length, modification_time) seen at listing time are kept: a file rewritten
    since is left for the next run. Files over ``max_file_bytes`` are never read. Empty files
    are not read (Spark's scan skips them); they get empty ``content``. With ``source`` (and
    its ``extensions``) the files Spark can read are scanned as one folder, which is much
    faster than handing Spark thousands of single paths; without it, path by path (an
    incremental run). Files Spark cannot read (hidden names) are read with ``lake_files``
    (default: no storage settings, enough for ``file:``) in batches of at most
    ``max_batch_bytes`` (:func:`read_in_bounded_batches`); pass None when there are none, and
    that branch is left out of the plan.
    """
    from pyspark.sql import functions as F

    wanted = files.where(F.col("length") <= max_file_bytes)
    empty = wanted.where("length = 0").select(*FILE_KEYS, F.lit(bytearray()).alias("content"))
    if lake_files is not None:
        conf = dict(lake_files.hadoop_conf)
        python_read = wanted.where("length > 0 AND NOT spark_readable").select(*FILE_KEYS).mapInPandas(
            lambda frames: read_in_bounded_batches(frames, conf, max_batch_bytes),
            "path string, length long, modification_time timestamp, content binary")
        empty = empty.unionByName(python_read)
    spark_paths = wanted.where("length > 0 AND spark_readable")
    if source is not None:
        reader = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                  .option("pathGlobFilter", extension_glob(extensions)).load(source))
    else:
        paths = [row.path for row in spark_paths.select("path").collect()]
        if not paths:
            return empty
        reader = _read_paths(spark, paths)
        if reader is None:
            return empty
    # The length filter is pushed into the scan: a file over the limit is never opened.
    read = reader.where(F.col("length") <= max_file_bytes).select(
        "path", "length", F.col("modificationTime").alias("modification_time"), "content"
    ).join(spark_paths.select(*FILE_KEYS), on=list(FILE_KEYS), how="left_semi")
    return read.unionByName(empty)

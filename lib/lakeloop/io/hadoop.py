"""File operations on any Hadoop URI (file:, hdfs:, s3a:, ...) through Spark's own Hadoop
FileSystem, so they use exactly the schemes and credentials the session is set up with.

The only module of lakeloop that reaches into the JVM (``spark.sparkContext._jvm``); the
processes without a SparkSession use :mod:`lakeloop.io.lakefs` instead.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _jvm(spark: "SparkSession"):
    return spark.sparkContext._jvm


def _hadoop_conf(spark: "SparkSession"):
    return spark.sparkContext._jsc.hadoopConfiguration()


def _fs_and_path(spark: "SparkSession", uri: str):
    path = _jvm(spark).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(_hadoop_conf(spark)), path


def exists(spark: "SparkSession", uri: str) -> bool:
    """Whether a file or folder exists at ``uri``."""
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.exists(path))


def glob_exists(spark: "SparkSession", pattern: str) -> bool:
    """Whether anything matches ``pattern``, a URI that may hold Hadoop globs (``s3a://b/in/*.csv``)."""
    fs, path = _fs_and_path(spark, pattern)
    matches = fs.globStatus(path)
    return matches is not None and len(matches) > 0


def file_states(spark: "SparkSession", pattern: str) -> list[tuple[str, int, int]]:
    """(path, bytes, modified ms) of every file ``pattern`` names (a file, a folder: every file under it,
    or a Hadoop glob of either), sorted by path: together they change whenever a file is added,
    removed, rewritten or touched."""
    fs, path = _fs_and_path(spark, pattern)
    states = []
    for match in fs.globStatus(path) or []:
        if not match.isDirectory():
            states.append((str(match.getPath().toString()), int(match.getLen()), int(match.getModificationTime())))
            continue
        files = fs.listFiles(match.getPath(), True)
        while files.hasNext():
            found = files.next()
            states.append((str(found.getPath().toString()), int(found.getLen()), int(found.getModificationTime())))
    return sorted(states)


def qualify(spark: "SparkSession", uri: str) -> str:
    """The fully qualified form Spark reports paths in (``file:///x`` -> ``file:/x``), without a trailing ``/``."""
    fs, path = _fs_and_path(spark, uri)
    return str(fs.makeQualified(path).toString()).rstrip("/")


def literal_glob(path: str) -> str:
    """``path`` with Hadoop glob characters escaped: Spark's readers take their paths as globs, and
    a file named ``a[1].png`` must be read as it is."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def path_from_index(uri: str) -> str:
    """``file:///a%20b/x.png`` (the form of Spark's file index, ``inputFiles()``) -> ``file:/a b/x.png``
    (the form of a scan's path column, ``binaryFile``'s ``path``)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    if parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"
    return f"{parts.scheme}:{unquote(parts.path)}"


def empty_files(spark: "SparkSession", uris: list[str]) -> list[tuple[str, int, datetime]]:
    """``(qualified path, 0, modification time)`` of those ``uris`` (URI-encoded, as Spark's file
    index gives them) that are zero-length files; the time is naive UTC, as Spark's are."""
    jvm = _jvm(spark)
    rows = []
    for uri in uris:
        path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri))
        fs = path.getFileSystem(_hadoop_conf(spark))
        status = fs.getFileStatus(path)
        if status.getLen() == 0:
            mtime = datetime.fromtimestamp(status.getModificationTime() / 1000, tz=timezone.utc)
            rows.append((str(fs.makeQualified(path).toString()), 0, mtime.replace(tzinfo=None)))
    return rows


def write_text(spark: "SparkSession", uri: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``uri``, replacing what is there."""
    fs, path = _fs_and_path(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(spark: "SparkSession", uri: str) -> str:
    """Read a whole UTF-8 file at ``uri``."""
    fs, path = _fs_and_path(spark, uri)
    stream = fs.open(path)
    try:
        jvm = _jvm(spark)
        out = jvm.java.io.ByteArrayOutputStream()
        jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, out, 65536, False)
        return bytes(out.toByteArray()).decode("utf-8")
    finally:
        stream.close()


def delete(spark: "SparkSession", uri: str, recursive: bool = True) -> bool:
    """Delete ``uri``; returns whether something was deleted."""
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.delete(path, recursive))


def copy_from_local(spark: "SparkSession", local_dir: str, uri: str,
                    hadoop_conf: Mapping[str, str] | None = None) -> None:
    """Copy the local folder ``local_dir`` (recursively) to ``uri``, e.g. raw files into HDFS.

    ``hadoop_conf`` adds Hadoop settings for this copy only (a fresh client is made for it).

    Raises
    ------
    FileExistsError
        something is already at ``uri``: nothing is overwritten.
    """
    jvm = _jvm(spark)
    conf = jvm.org.apache.hadoop.conf.Configuration(_hadoop_conf(spark))
    for key, value in (hadoop_conf or {}).items():
        conf.set(key, str(value))
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = jvm.org.apache.hadoop.fs.FileSystem.newInstance(path.toUri(), conf)
    try:
        if fs.exists(path):
            raise FileExistsError(f"{uri} already exists; copy_from_local writes only to a new location")
        fs.copyFromLocalFile(False, False, jvm.org.apache.hadoop.fs.Path(f"file:{local_dir}"), path)
    finally:
        fs.close()


def list_children(spark: "SparkSession", uri: str) -> list[tuple[str, bool, datetime]]:
    """(name, is_folder, modified UTC) of what is directly in the folder ``uri``; ``[]`` if it does not exist."""
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        return []
    return [(str(s.getPath().getName()), bool(s.isDirectory()),
             datetime.fromtimestamp(s.getModificationTime() / 1000, tz=timezone.utc)) for s in fs.listStatus(path)]


def count_files(spark: "SparkSession", uri: str, suffix: str = ".parquet", skip_folder: str = "_delta_log") -> int:
    """Files under ``uri`` (recursively, but not in folders named ``skip_folder``) whose names end in
    ``suffix``: the data files a Delta table holds on storage, referenced or not (its log's
    checkpoint files are Parquet too, hence the skip)."""
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        return 0
    files, n = fs.listFiles(path, True), 0
    while files.hasNext():
        found = files.next().getPath()
        if str(found.getName()).endswith(suffix) and f"/{skip_folder}/" not in str(found.toUri().getPath()):
            n += 1
    return n

"""Small file operations on any Hadoop URI (file:, hdfs:, s3a:, ...) through Spark's own
Hadoop FileSystem, so they use exactly the schemes and credentials Spark is set up with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _fs_and_path(spark: "SparkSession", uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return path.getFileSystem(conf), path


def exists(spark: "SparkSession", uri: str) -> bool:
    """Whether a file or folder exists at ``uri``."""
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.exists(path))


def write_text(spark: "SparkSession", uri: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``uri``, replacing what is there."""
    fs, path = _fs_and_path(spark, uri)
    stream = fs.create(path, True)
    try:
        data = text.encode("utf-8")
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_text(spark: "SparkSession", uri: str) -> str:
    """Read a whole UTF-8 file at ``uri``."""
    fs, path = _fs_and_path(spark, uri)
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm
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
    jvm = spark.sparkContext._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark.sparkContext._jsc.hadoopConfiguration())
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

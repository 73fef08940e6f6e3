"""Write the JVM class archive a profile's local driver starts from (``jvm.class_archive``).

    lakeloop jars archive [--profile P ...] [--force]        (lakeloop.cli.jars)

Run by the setup after the jars are resolved. A Spark driver loads and links thousands of
classes (Spark's, Delta's, Parquet's) before a job's first query; Java's class data sharing maps
them from an archive instead. The archive is written by a JVM at exit
(``-XX:ArchiveClassesAtExit``), so this starts a session, does the work every job does (a Delta
table created, merged into and read back, Parquet and binaryFile scans, a shuffle, a pandas UDF)
and stops the JVM cleanly. The file lies beside the jar cache, named by the Spark version and the
jars (:func:`lakeloop.runtime.jars.class_archive_path`); sessions use it when it is there.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lakeloop.config import Profile
from lakeloop.errors import SetupError
from lakeloop.runtime.jars import class_archive_path, resolved_jars
from lakeloop.runtime.session import DRIVER_JAVA_OPTIONS, build_session, java_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EXIT_TIMEOUT_S = 300


def warm_up(spark: "SparkSession", folder: Path) -> None:
    """The kinds of work every lakeloop job does, on a few rows under ``folder``."""
    from PIL import Image

    table = f"delta.`{folder / 'table'}`"
    spark.range(100).selectExpr("id", "cast(id AS string) AS name").write.format("delta").save(str(folder / "table"))
    spark.sql(f"MERGE INTO {table} t USING (SELECT id, 'new' AS name FROM range(50, 150)) s ON t.id = s.id "
              f"WHEN NOT MATCHED THEN INSERT *")
    spark.sql(f"SHOW TBLPROPERTIES {table}").collect()
    rows = spark.read.format("delta").load(str(folder / "table"))
    rows.groupBy((rows.id % 3).alias("k")).count().collect()
    rows.mapInPandas(lambda frames: (f.assign(name=f["name"].str.upper()) for f in frames), rows.schema).count()
    rows.write.parquet(str(folder / "parquet"))
    spark.read.parquet(str(folder / "parquet")).join(rows, "id", "left_anti").count()
    (folder / "images").mkdir()
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    (folder / "images" / "a.png").write_bytes(buffer.getvalue())
    spark.read.format("binaryFile").load(str(folder / "images")).select("path", "length").collect()


def write_archive(profile: Profile, force: bool = False) -> Path | None:
    """Write the profile's class archive unless it exists (or the profile has none); return its path.

    Raises
    ------
    SetupError
        the JVM did not exit, or exited without writing the archive.
    """
    if not profile.jvm.class_archive:
        return None
    archive = class_archive_path(profile.jvm, resolved_jars(profile.jvm))
    if archive.is_file() and not force:
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.stem}.{time.time_ns()}.partial")
    options = profile.spark.conf.get(DRIVER_JAVA_OPTIONS)
    own = with_driver_options(profile, java_options(options, partial, write=True))
    try:
        spark = build_session(own, app_name="lakeloop-class-archive")
        jvm = spark.sparkContext._gateway.proc  # the JVM pyspark started for this process
        with tempfile.TemporaryDirectory(prefix="lakeloop-class-archive-") as folder:
            warm_up(spark, Path(folder))
            spark.stop()
        jvm.stdin.close()  # its gateway exits on end of input, cleanly: then the JVM writes the archive
        try:
            jvm.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            jvm.kill()
            raise SetupError(f"the JVM writing {archive} did not exit in {EXIT_TIMEOUT_S} s; run the setup "
                             f"again") from exc
        if not partial.is_file():
            raise SetupError(f"the JVM exited ({jvm.returncode}) without writing {partial}; the jobs run without "
                             f"a class archive (set jvm.class_archive: false to stop trying)")
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)  # a half-written one, after a failure
    return archive


def with_driver_options(profile: Profile, driver_options: str) -> Profile:
    """``profile`` with other driver JVM options, on a local master, without reading an archive."""
    import dataclasses

    conf = {**profile.spark.conf, DRIVER_JAVA_OPTIONS: driver_options}
    # Local whatever the profile's master: the archive holds the driver's classes, and a
    # cluster profile's cluster need not be up while the setup runs.
    return dataclasses.replace(profile, spark=dataclasses.replace(profile.spark, conf=conf, master="local[2]"),
                               jvm=dataclasses.replace(profile.jvm, class_archive=False))

"""The one place a SparkSession is made, from a profile.

``spark_settings(profile)`` is also what ``spark-submit.sh`` turns into ``--conf`` flags,
so a job run through spark-submit, a test and a notebook get the same Spark settings.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from lakeloop.config import Profile
from lakeloop.runtime.jars import class_archive_path, resolved_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Delta's SQL extension and catalog: what delta-spark's configure_spark_with_delta_pip
# sets, minus its spark.jars.packages (we hand Spark pre-resolved jars instead).
DELTA_SETTINGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def spark_settings(profile: Profile) -> dict[str, str]:
    """Spark settings for a profile: Delta, the resolved JVM jars, then the profile's own."""
    settings = dict(DELTA_SETTINGS)
    jars = resolved_jars(profile.jvm)
    if jars:
        settings["spark.jars"] = ",".join(jars)
    own = {k: v for k, v in profile.spark.conf.items() if v is not None}
    settings.update(own)
    if own.get("spark.jars") and jars:
        settings["spark.jars"] = ",".join(jars + [own["spark.jars"]])
    archive = class_archive_path(profile.jvm, jars) if profile.jvm.class_archive else None
    if archive is not None and archive.is_file():
        settings[DRIVER_JAVA_OPTIONS] = java_options(settings.get(DRIVER_JAVA_OPTIONS), archive)
    return settings


DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def java_options(options: str | None, archive: Path, write: bool = False) -> str:
    """The driver's JVM options with the class archive: read from it, or (``write``) written at exit."""
    flag = "-XX:ArchiveClassesAtExit" if write else "-XX:SharedArchiveFile"
    # The JVM says nothing when it refuses an archive (another Java) and starts without it.
    return " ".join(filter(None, [options, f"{flag}={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]))


def build_session(profile: Profile, app_name: str | None = None) -> "SparkSession":
    """Get or create the SparkSession a profile describes.

    Inside ``spark-submit`` or on Databricks a session may already exist; then its
    static settings win and only runtime settings from the profile are applied.

    Raises
    ------
    SetupError
        if the profile's JVM packages were never resolved (run ./dev/setup.sh).
    """
    from pyspark.sql import SparkSession

    settings = spark_settings(profile)
    builder = SparkSession.builder.appName(app_name or profile.spark.app_name)
    if profile.spark.master:
        builder = builder.master(profile.spark.master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    worker_python = settings.get("spark.pyspark.python")
    if SparkSession.getActiveSession() is not None:
        worker_python = None  # the running context chose its workers' interpreter already
    with _worker_python(worker_python):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(profile.spark.log_level)
    return spark


@contextmanager
def _worker_python(python: str | None) -> Iterator[None]:
    """``PYSPARK_PYTHON`` set to ``python`` while the context starts, then put back as it was.

    spark-submit turns ``spark.pyspark.python`` into the workers' interpreter; a context made
    in-process (tests, notebooks) reads only ``PYSPARK_PYTHON``, once, when it starts.
    """
    if not python:
        yield
        return
    before = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = python
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = before

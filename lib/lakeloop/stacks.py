"""The supported stacks: one Spark line each, with the JVM jars and the Databricks Runtime that go with it.

=========  ==========  ====================================  ===========================  ======
stack      Spark line  Delta jar                             Databricks Runtime           Python
=========  ==========  ====================================  ===========================  ======
current    4.1         io.delta:delta-spark_4.1_2.13:4.4.0   18 (LTS), ``18.x`` keys      3.12
spark40    4.0         io.delta:delta-spark_2.13:4.0.0       17.3 LTS, ``17.x`` keys      3.11
=========  ==========  ====================================  ===========================  ======

The installed pyspark picks the stack (:func:`installed_stack`): profiles name the jars as
``{delta}``, ``{kafka}`` and ``{hadoop_aws}`` (:mod:`lakeloop.config` expands them from
:meth:`Stack.placeholders`), so one profile serves both. Pure data: importing this module
imports no Spark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lakeloop.errors import ConfigError, SetupError

SPARK_EXTRA = "pip install 'lakeloop[spark]'"


@dataclass(frozen=True)
class Stack:
    """One supported Spark line and what must match it."""

    name: str
    # The pyspark versions of this line: "4.1" matches 4.1.0, 4.1.4, ...
    spark_line: str
    # JVM coordinates (group:artifact:version), each resolved from Maven Central by
    # lakeloop.runtime.jars.
    delta: str
    kafka: str
    # The hadoop-client-api version pyspark ships; hadoop-aws (and the dev minicluster) must match it.
    hadoop: str
    # The Databricks Runtimes that ship this Spark line: the major version their spark_version keys
    # start with (``18.x-...``, ``18.1.x-...``), the runtimes in words, and the default keys.
    databricks_major: str
    databricks_runtimes: str
    databricks_cpu: str
    databricks_gpu: str
    # The Python the stack is tested on (the one of its Databricks Runtime).
    python: str

    @property
    def hadoop_aws(self) -> str:
        """Hadoop's s3a connector at the version of pyspark's Hadoop client."""
        return f"org.apache.hadoop:hadoop-aws:{self.hadoop}"

    def placeholders(self) -> dict[str, str]:
        """Profile placeholder (without braces) -> the coordinates it stands for on this stack."""
        return {"delta": self.delta, "kafka": self.kafka, "hadoop_aws": self.hadoop_aws}

    def matches_runtime(self, spark_version: str) -> bool:
        """Whether a Databricks ``spark_version`` key (``18.x-cpu-ml-scala2.13``, ``17.3.x-...``) is of this line."""
        return re.match(rf"^{re.escape(self.databricks_major)}\.(\d+\.)?x-", spark_version) is not None


CURRENT = Stack(
    name="current",
    spark_line="4.1",
    # Delta 4.4.0, not 4.1.0: 4.1.0's jar calls catalyst's IgnoreCachedData, which pyspark 4.1.4 no
    # longer has (NoClassDefFoundError on ALTER TABLE ... SET TBLPROPERTIES); 4.4.0 is built on
    # Scala 2.13.17, as pyspark 4.1.4 is. The delta-spark wheel of requirements/current.txt matches.
    delta="io.delta:delta-spark_4.1_2.13:4.4.0",
    # 4.1.1, not 4.1.4: the newest 4.1 connector whose dependencies all resolve from Maven Central
    # (its companion spark-token-provider-kafka-0-10 is not there at 4.1.0, 4.1.2 or 4.1.3, and
    # the connector itself not at 4.1.4). The connector runs on any 4.1 patch release.
    kafka="org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1",
    hadoop="3.4.2",
    databricks_major="18",
    databricks_runtimes="Databricks Runtime 18 (LTS, Spark 4.1)",
    # Databricks' docs describe Runtime 18 (Spark 4.1.0) as one unified release, 18.0 to 18.2 then dated
    # updates (https://docs.databricks.com/aws/en/release-notes/runtime/18), but name no spark_version
    # key for it; 18.0.x is the key of its first feature release, whose own notes page is marked
    # end-of-support (.../release-notes/runtime/18.0). Check `databricks clusters spark-versions`.
    databricks_cpu="18.0.x-cpu-ml-scala2.13",
    databricks_gpu="18.0.x-gpu-ml-scala2.13",
    python="3.12",
)

SPARK40 = Stack(
    name="spark40",
    spark_line="4.0",
    delta="io.delta:delta-spark_2.13:4.0.0",
    # 4.0.0: spark-token-provider-kafka-0-10 is on Maven Central at 4.0.0 only in the 4.0 line;
    # the connector runs on any 4.0 patch release.
    kafka="org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0",
    hadoop="3.4.1",
    databricks_major="17",
    databricks_runtimes="Databricks Runtime 17.3 LTS (17.x, Spark 4.0)",
    databricks_cpu="17.3.x-cpu-ml-scala2.13",
    databricks_gpu="17.3.x-gpu-ml-scala2.13",
    python="3.11",
)

STACKS: tuple[Stack, ...] = (CURRENT, SPARK40)
DEFAULT = CURRENT


def supported() -> str:
    """The supported lines in words, for error messages."""
    return ", ".join(f"pyspark {s.spark_line}.x ({s.name})" for s in STACKS)


def stack_for_pyspark(version: str) -> Stack:
    """The stack of a pyspark version string (``4.1.4`` -> current, ``4.0.1`` -> spark40).

    Raises
    ------
    ConfigError
        a version of no supported line; the message names the supported ones and the fix.
    """
    for stack in STACKS:
        if re.match(rf"^{re.escape(stack.spark_line)}(\.|$)", version.strip()):
            return stack
    raise ConfigError(
        f"pyspark {version} is not supported: lakeloop supports {supported()}. Install one of them: "
        f"{SPARK_EXTRA} (the current stack, pyspark {DEFAULT.spark_line}), or the pins of "
        f"requirements/<stack>.txt"
    )


def installed_stack() -> Stack:
    """The stack of the pyspark installed beside lakeloop.

    Raises
    ------
    SetupError
        pyspark is not installed.
    ConfigError
        the installed pyspark is of no supported line.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("pyspark")
    except PackageNotFoundError:
        raise SetupError(f"pyspark is not installed in this Python; install it with {SPARK_EXTRA} "
                         f"(or ./dev/setup.sh in a checkout)") from None
    return stack_for_pyspark(installed)


def packages_folder() -> str:
    """The site-packages folder the installed pyspark (and the rest of the pinned stack) lies in;
    without pyspark, this Python's own.

    Not always this Python's purelib: a checkout's ``.venv`` (``./dev/setup.sh``) is a small venv
    holding that checkout alone, over the machine's shared environment, whose folder this names.
    """
    import sysconfig
    from importlib import metadata

    # The installed distribution, not the imported module: under spark-submit, pyspark is imported
    # from $SPARK_HOME/python/lib/pyspark.zip, which is not where its jars lie.
    try:
        return str(Path(metadata.distribution("pyspark").locate_file("")).resolve())
    except metadata.PackageNotFoundError:
        return sysconfig.get_paths()["purelib"]


def stack_for_runtime(spark_version: str) -> Stack | None:
    """The stack a Databricks ``spark_version`` key belongs to, or None for any other runtime."""
    return next((s for s in STACKS if s.matches_runtime(spark_version)), None)

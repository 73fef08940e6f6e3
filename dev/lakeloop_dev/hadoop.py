"""A real HDFS and YARN on loopback, from Apache Hadoop's own minicluster, for development and
the integration tests (``./dev/services.sh start hadoop``).

One JVM runs ``dev/hadoop/MiniHadoop.java`` (a single-file program, compiled by ``java`` when
it starts) over ``org.apache.hadoop:hadoop-client-minicluster`` — the NameNode, a DataNode,
a ResourceManager and two NodeManagers of the Hadoop version pyspark's client is (3.4.2 for
pyspark 4.1, 3.4.1 for 4.0: :attr:`lakeloop.stacks.Stack.hadoop`) — with pyspark's own Hadoop
client jars. The NameNode's RPC and HTTP (WebHDFS) ports come
from ``conf/hdfs-test.yaml`` (``lake_root`` and ``spark.hadoop.dfs.namenode.http-address``),
so the server and the profile cannot disagree. When it is up, the launcher writes
``core-site.xml``, ``hdfs-site.xml`` and ``yarn-site.xml`` into ``<state>/hadoop/conf``:
the ``HADOOP_CONF_DIR`` for ``spark-submit --master yarn`` (:attr:`MiniHadoop.conf_dir`).

Blocks and metadata live in ``<state>/hadoop/base`` and survive a restart (the NameNode is
formatted only the first time).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lakeloop.errors import SetupError
from lakeloop_dev.processes import PidFileService, java, port_open, pyspark_home, spawn, state_dir, tail, wait_until

HDFS_PROFILE = "hdfs-test"
# Beside the minicluster's classes (shaded over the hadoop-client-api/-runtime jars pyspark ships,
# so of the same Hadoop version), YARN's ResourceManager wants BouncyCastle's PKIX classes (with
# bcprov, which Spark 4.0 ships and 4.1 does not: then it is kept from Maven's) and the
# javax.xml.bind API with its javax-era runtime (Java 17 has neither; Spark's jaxb-runtime is the
# jakarta one, hence "keep").
MINICLUSTER_SUPPORT_PACKAGES = (
    "org.bouncycastle:bcpkix-jdk18on:1.80",
    "javax.xml.bind:jaxb-api:2.3.1",
    "org.glassfish.jaxb:jaxb-runtime:2.3.9",
)
KEEP_BESIDE_SPARK = ("jaxb-runtime",)
LAUNCHER = Path(__file__).resolve().parents[1] / "hadoop" / "MiniHadoop.java"
MARKER = "MiniHadoop.java"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class HdfsSettings:
    """Where the test HDFS listens; read from a profile."""

    host: str
    rpc_port: int
    http_port: int

    @property
    def uri(self) -> str:
        return f"hdfs://{self.host}:{self.rpc_port}"

    def hadoop_conf(self) -> dict[str, str]:
        """The settings :mod:`lakeloop.io.lakefs` needs to reach this HDFS without libhdfs."""
        return {"lakeloop.hdfs.client": "webhdfs", "dfs.namenode.http-address": f"{self.host}:{self.http_port}"}


def hdfs_settings(profile_name: str = HDFS_PROFILE) -> HdfsSettings:
    """The NameNode's host and ports from ``conf/<profile>.yaml``.

    Raises
    ------
    SetupError
        the lake is not on ``hdfs://127.0.0.1:PORT`` or the HTTP address is not ``127.0.0.1:PORT``.
    """
    from lakeloop.config import load_profile

    profile = load_profile(profile_name)
    lake = urllib.parse.urlparse(profile.lake_root)
    http = (profile.spark.conf.get("spark.hadoop.dfs.namenode.http-address") or "").rpartition(":")
    if lake.scheme != "hdfs" or lake.hostname != "127.0.0.1" or not lake.port:
        raise SetupError(f"profile {profile_name}: lake_root must be hdfs://127.0.0.1:PORT/..., found "
                         f"{profile.lake_root!r}")
    if http[0] != "127.0.0.1" or not http[2].isdigit():
        raise SetupError(f"profile {profile_name}: spark.hadoop.dfs.namenode.http-address must be 127.0.0.1:PORT")
    return HdfsSettings("127.0.0.1", lake.port, int(http[2]))


def minicluster_packages() -> tuple[str, ...]:
    """The minicluster's JVM packages, at the Hadoop version of the installed pyspark's client.

    Raises
    ------
    SetupError
        pyspark is not installed.
    ConfigError
        the installed pyspark is of no supported stack.
    """
    from lakeloop.stacks import installed_stack

    hadoop = installed_stack().hadoop
    return (f"org.apache.hadoop:hadoop-client-minicluster:{hadoop}", *MINICLUSTER_SUPPORT_PACKAGES)


def minicluster_classpath() -> str:
    """The launcher's class path: the minicluster jars (fetched once with Maven), then pyspark's."""
    from lakeloop.config import JvmSettings
    from lakeloop.runtime import jars

    fetched = jars.resolve(JvmSettings(packages=minicluster_packages()), keep=KEEP_BESIDE_SPARK)
    return ":".join([*fetched, str(pyspark_home() / "jars" / "*")])


class MiniHadoop(PidFileService):
    """The HDFS (and YARN) minicluster process; ``start()`` reuses one already answering."""

    NAME = "minihadoop"
    MARKER = MARKER

    def __init__(self, settings: HdfsSettings, root: Path, yarn: bool = True, nodemanagers: int = 2,
                 nm_memory_mb: int = 6144):
        super().__init__(root)
        self.settings = settings
        self.yarn = yarn
        self.nodemanagers = nodemanagers
        self.nm_memory_mb = nm_memory_mb

    @property
    def conf_dir(self) -> Path:
        """``HADOOP_CONF_DIR`` for clients of this cluster (written once it is up)."""
        return self.root / "conf"

    def hdfs_healthy(self) -> bool:
        """WebHDFS answers and the NameNode has left safe mode with a live DataNode."""
        url = (f"http://{self.settings.host}:{self.settings.http_port}/jmx"
               f"?qry=Hadoop:service=NameNode,name=FSNamesystemState")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                beans = json.loads(resp.read().decode()).get("beans") or [{}]
        except (urllib.error.URLError, OSError, ValueError):
            return False
        state = beans[0]
        return state.get("NumLiveDataNodes", 0) >= 1 and state.get("FSState") == "Operational"

    def healthy(self) -> bool:
        return self.hdfs_healthy() and (not self.yarn or (self.conf_dir / "yarn-site.xml").is_file())

    def _ready(self) -> bool:
        return (self.conf_dir / "READY").is_file() and self.healthy()

    def _launch(self):
        """Start the launcher JVM in its own process group; returns its Popen."""
        for port in (self.settings.rpc_port, self.settings.http_port):
            if port_open(self.settings.host, port):
                raise SetupError(f"127.0.0.1:{port} is in use by something that is not the lakeloop Hadoop "
                                 f"minicluster; stop it (./dev/services.sh stop hadoop) or free the port")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "READY").unlink(missing_ok=True)
        java_bin = java()
        # NodeManagers start containers with $JAVA_HOME/bin/java: give them this JDK.
        env = {**os.environ, "JAVA_HOME": os.environ.get("JAVA_HOME") or str(Path(java_bin).resolve().parents[1])}
        env.pop("PYTHONPATH", None)
        cmd = [java_bin, "-Xmx1536m", "--add-opens", "java.base/java.lang=ALL-UNNAMED",
               "-cp", minicluster_classpath(), str(LAUNCHER),
               "--base", str(self.root / "base"), "--conf-dir", str(self.conf_dir),
               "--nn-port", str(self.settings.rpc_port), "--nn-http-port", str(self.settings.http_port)]
        if self.yarn:
            cmd += ["--yarn", "--nodemanagers", str(self.nodemanagers), "--nm-memory-mb", str(self.nm_memory_mb)]
        # MiniYARNCluster keeps its NodeManagers' folders under ./target: start it in its state folder.
        proc = spawn(cmd, self.log, self.pid_file, env, cwd=self.root)
        self.owned = True
        return proc

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "MiniHadoop":
        """Start the minicluster, or reuse a healthy one.

        Raises
        ------
        SetupError
            a port is taken by something else, or the cluster did not come up (with its log).
        """
        if self.pid() is not None and self._ready():
            return self
        proc = self._launch() if self.pid() is None else None
        if wait_until(self._ready, timeout_s, interval_s=1.0, alive=lambda: proc is None or proc.poll() is None):
            return self
        self.stop()
        raise SetupError(f"the Hadoop minicluster did not come up within {timeout_s:.0f} s (log {self.log}):\n"
                         f"{tail(self.log, 30)}")

    def up_line(self) -> str:
        return (f"HDFS up at {self.settings.uri} (WebHDFS http://127.0.0.1:{self.settings.http_port})"
                f"{', YARN up' if self.yarn else ''}; HADOOP_CONF_DIR={self.conf_dir}, log {self.log}")

    def status_line(self) -> str:
        return f"{'up' if self.healthy() else 'down'} at {self.settings.uri} (pid {self.pid() or '-'}, state {self.root})"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the minicluster if its pid file names a live one; returns whether one was stopped."""
        stopped = super().stop(timeout_s)
        if stopped:
            (self.conf_dir / "READY").unlink(missing_ok=True)
        return stopped


def default_minihadoop(yarn: bool = True) -> MiniHadoop:
    """The minicluster ``conf/hdfs-test.yaml`` describes, with its state in ``<state>/hadoop``."""
    return MiniHadoop(hdfs_settings(), state_dir() / "hadoop", yarn=yarn)

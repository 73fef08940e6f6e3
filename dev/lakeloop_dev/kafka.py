"""A real Kafka broker on loopback, for development and the Kafka tests (``./dev/services.sh start kafka``).

One JVM runs Apache Kafka (``org.apache.kafka:kafka_2.13``, fetched once from Maven Central with
its dependencies, :data:`BROKER_PACKAGES`) in KRaft mode: a single node that is both the
controller and the broker, no ZooKeeper. The broker listens on the port of
``score.kafka.bootstrap_servers`` in ``conf/kafka-test.yaml``, the controller on the next port,
so the server and the profile cannot disagree. Topics are created on first write (two
partitions each). Its log folder (``<state>/kafka/data``) is formatted the first time and kept
across restarts, like a real broker's.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from lakeloop.errors import SetupError
from lakeloop_dev.processes import PidFileService, java, port_open, spawn, state_dir, tail, wait_until

KAFKA_PROFILE = "kafka-test"
# Kafka 4 runs its brokers on Java 17; the slf4j binding gives the broker a log (it has none without).
BROKER_PACKAGES = ("org.apache.kafka:kafka_2.13:4.1.1", "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3")
START_TIMEOUT_S = 120.0
_READY_LINE = "Kafka Server started"
_LOG4J = """rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


@dataclass(frozen=True)
class KafkaSettings:
    """Where the test broker listens; read from a profile."""

    host: str
    port: int

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1


def kafka_settings(profile_name: str = KAFKA_PROFILE) -> KafkaSettings:
    """The broker's host and port from ``conf/<profile>.yaml`` (``score.kafka.bootstrap_servers``).

    Raises
    ------
    SetupError
        the profile names no single loopback ``127.0.0.1:PORT``.
    """
    from lakeloop.config import load_profile

    servers = load_profile(profile_name).score.kafka.bootstrap_servers or ""
    host, _, port = servers.partition(":")
    if host != "127.0.0.1" or not port.isdigit():
        raise SetupError(f"profile {profile_name}: score.kafka.bootstrap_servers must be one 127.0.0.1:PORT for the "
                         f"loopback broker, found {servers!r}")
    return KafkaSettings(host, int(port))


def broker_classpath() -> str:
    """The broker's class path: Kafka and every dependency (fetched once with Maven), none of Spark's."""
    from lakeloop.config import JvmSettings
    from lakeloop.runtime import jars

    return ":".join(jars.resolve(JvmSettings(packages=BROKER_PACKAGES), keep=jars.KEEP_ALL))


class KafkaBroker(PidFileService):
    """The single-node KRaft broker process; ``start()`` reuses one already answering."""

    NAME = "kafka"
    MARKER = "kafka.Kafka"

    def __init__(self, settings: KafkaSettings, root: Path):
        super().__init__(root)
        self.settings = settings

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _properties(self) -> Path:
        host, port, controller = self.settings.host, self.settings.port, self.settings.controller_port
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "2",
            "auto.create.topics.enable": "true",
            # One node: the internal topics get one replica each.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        path = self.root / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        (self.root / "log4j2.properties").write_text(_LOG4J)
        return path

    def _format(self, java_bin: str, classpath: str, properties: Path) -> None:
        """Format the log folder for KRaft once (a random cluster id), as ``kafka-storage.sh format`` does."""
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        proc = subprocess.run([java_bin, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                               "-c", str(properties)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"formatting the Kafka log folder {self.data_dir} failed (exit {proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def healthy(self) -> bool:
        return port_open(self.settings.host, self.settings.port)

    def _ready(self, log_offset: int) -> bool:
        try:
            with open(self.log, "rb") as handle:
                handle.seek(log_offset)
                started = _READY_LINE.encode() in handle.read()
        except OSError:
            return False
        return started and self.healthy()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "KafkaBroker":
        """Start the broker, or reuse a running one.

        Raises
        ------
        SetupError
            a port is taken by something else, or the broker did not come up (with its log).
        """
        if self.pid() is not None and self.healthy():
            return self
        for port in (self.settings.port, self.settings.controller_port):
            if self.pid() is None and port_open(self.settings.host, port):
                raise SetupError(f"127.0.0.1:{port} is in use by something that is not the lakeloop Kafka broker; "
                                 f"stop it (./dev/services.sh stop kafka) or free the port")
        self.root.mkdir(parents=True, exist_ok=True)
        java_bin, classpath, properties = java(), broker_classpath(), self._properties()
        self._format(java_bin, classpath, properties)
        offset = self.log.stat().st_size if self.log.exists() else 0
        proc = spawn([java_bin, "-Xmx512m", f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
                      "-cp", classpath, "kafka.Kafka", str(properties)], self.log, self.pid_file)
        self.owned = True
        if wait_until(lambda: self._ready(offset), timeout_s, interval_s=0.5, alive=lambda: proc.poll() is None):
            return self
        self.stop()
        raise SetupError(f"the Kafka broker did not come up within {timeout_s:.0f} s (log {self.log}):\n"
                         f"{tail(self.log, 30)}")

    def up_line(self) -> str:
        return f"Kafka (KRaft) up at {self.settings.bootstrap_servers}, log {self.log}"

    def status_line(self) -> str:
        return (f"{'up' if self.healthy() else 'down'} at {self.settings.bootstrap_servers} "
                f"(pid {self.pid() or '-'}, state {self.root})")


def default_kafka() -> KafkaBroker:
    """The broker ``conf/kafka-test.yaml`` describes, with its state in ``<state>/kafka``."""
    return KafkaBroker(kafka_settings(), state_dir() / "kafka")

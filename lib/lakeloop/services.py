"""Loopback services for development and the integration tests: an S3 server, a Spark
standalone cluster and Hadoop (HDFS + YARN), started from jars, on 127.0.0.1.

    ./dev/services.sh start|stop|status [s3|cluster|hadoop|all]      (python -m lakeloop.services ...)

* **S3**: S3Proxy (``org.gaul:s3proxy``, one self-contained jar from Maven Central) with
  jclouds' in-memory ``transient`` store, the one of its backends whose semantics Hadoop's s3a
  needs (see :meth:`S3Server.start`); it checks AWS signatures, so a wrong key fails as on S3.
  Objects live as long as the process. Its port, test credentials and bucket are read from
  ``conf/s3-test.yaml`` (``spark.hadoop.fs.s3a.endpoint`` / ``.access.key`` / ``.secret.key``
  and ``lake_root``), so the server and the profile cannot disagree.
* **cluster**: a Spark standalone master and two workers (1 core, 1536 MB each) run by
  ``spark-class`` from pyspark's own jars; the master URL is ``spark.master`` of
  ``conf/cluster-test.yaml``. Its executors run ``build/executor-venv`` (:func:`executor_python`).
* **hadoop**: HDFS and YARN from Hadoop's minicluster; see :mod:`lakeloop.minihadoop`.

State (pid files, logs, the workers' folders) lives in ``$LAKELOOP_SERVICES_DIR``
(default ``~/.cache/lakeloop/services``). ``start`` reuses a service that is already up
and answering (started by a person, another checkout or an earlier test session); ``stop``
ends only the processes whose pid files it wrote, and only if their command line is still the
service's. Secrets are passed to S3Proxy in a file readable by the owner only and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lakeloop.errors import SetupError

S3PROXY_COORDINATE = "org.gaul:s3proxy:3.0.0:jar:jar-with-dependencies"
S3_PROFILE = "s3-test"
CLUSTER_PROFILE = "cluster-test"
WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1536m"
MASTER_UI_PORT = 18090
START_TIMEOUT_S = 90.0


def state_dir() -> Path:
    """Where pid files, logs and service data live (``$LAKELOOP_SERVICES_DIR``)."""
    return Path(os.environ.get("LAKELOOP_SERVICES_DIR") or Path.home() / ".cache" / "lakeloop" / "services")


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and still runs ``marker``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) and marker in _cmdline(pid) else None


def _spawn(cmd: list[str], log: Path, pid_file: Path, env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session (its own process group), output to ``log``; write its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def _stop_group(pid: int, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group ``pid`` leads (the service and the children it started), then
    SIGKILL whatever is left after ``timeout_s``."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)  # the leader may be gone while executors linger
    except ProcessLookupError:
        pass
    try:  # reap it if it is our child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise SetupError("java is not on PATH; run ./dev/setup.sh (it installs Java 17)")
    return found


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Settings:
    """What the S3 server and its clients must agree on; read from a profile."""

    host: str
    port: int
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def hadoop_conf(self) -> dict[str, str]:
        """The ``fs.s3a.*`` settings that reach this server (for :mod:`lakeloop.lakefs`)."""
        return {"fs.s3a.endpoint": self.endpoint, "fs.s3a.endpoint.region": self.region,
                "fs.s3a.path.style.access": "true", "fs.s3a.access.key": self.access_key,
                "fs.s3a.secret.key": self.secret_key}

    def __repr__(self) -> str:  # never show the secret
        return f"S3Settings(endpoint={self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"


def s3_settings(profile_name: str = S3_PROFILE) -> S3Settings:
    """Host, port, credentials and bucket of the S3 test server, from ``conf/<profile>.yaml``.

    Raises
    ------
    SetupError
        the profile has no loopback ``http://`` endpoint, no keys, or a lake outside ``s3a://``.
    """
    from lakeloop.config import load_profile

    profile = load_profile(profile_name)
    conf = {k: v for k, v in profile.spark.conf.items() if v is not None}
    endpoint = urllib.parse.urlparse(conf.get("spark.hadoop.fs.s3a.endpoint", ""))
    access, secret = conf.get("spark.hadoop.fs.s3a.access.key"), conf.get("spark.hadoop.fs.s3a.secret.key")
    lake = urllib.parse.urlparse(profile.lake_root)
    if endpoint.scheme != "http" or endpoint.hostname not in ("127.0.0.1", "localhost") or not endpoint.port:
        raise SetupError(f"profile {profile_name}: spark.hadoop.fs.s3a.endpoint must be http://127.0.0.1:PORT "
                         f"for the loopback S3 server")
    if not access or not secret:
        raise SetupError(f"profile {profile_name}: the loopback S3 server needs spark.hadoop.fs.s3a.access.key "
                         f"and spark.hadoop.fs.s3a.secret.key (test values)")
    if lake.scheme != "s3a" or not lake.netloc:
        raise SetupError(f"profile {profile_name}: lake_root must be s3a://bucket/..., found {profile.lake_root!r}")
    region = conf.get("spark.hadoop.fs.s3a.endpoint.region", "us-east-1")
    return S3Settings(endpoint.hostname, endpoint.port, access, secret, region, lake.netloc)


def s3proxy_jar(cache_dir: Path | None = None, mvn: str = "mvn") -> Path:
    """The S3Proxy jar, fetched once from Maven Central into the jar cache.

    Raises
    ------
    SetupError
        Maven is missing or cannot fetch it.
    """
    _, artifact, version, _, classifier = S3PROXY_COORDINATE.split(":")
    cache = cache_dir or Path.home() / ".cache" / "lakeloop" / "jars" / "tools"
    jar = cache / f"{artifact}-{version}-{classifier}.jar"
    if jar.is_file():
        return jar
    if shutil.which(mvn) is None:
        raise SetupError(f"'{mvn}' is not on PATH; run ./dev/setup.sh (it installs Maven) to fetch {S3PROXY_COORDINATE}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".fetch-{os.getpid()}"
    cmd = [mvn, "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
           f"-Dartifact={S3PROXY_COORDINATE}", f"-DoutputDirectory={tmp}"]
    print(f"lakeloop.services: fetching {S3PROXY_COORDINATE} with Maven ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    fetched = tmp / jar.name
    if proc.returncode != 0 or not fetched.is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"Maven could not fetch {S3PROXY_COORDINATE} (exit {proc.returncode}); check that Maven "
                         f"Central is reachable.\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    fetched.replace(jar)
    shutil.rmtree(tmp, ignore_errors=True)
    return jar


class S3Server:
    """One S3Proxy process on loopback (objects in its memory; pid file, log and settings under ``root``).

    ``start()`` reuses a server already answering on the port with these credentials;
    ``owned`` says whether this object started the process (and so may stop it).
    """

    MARKER = "s3proxy"

    def __init__(self, settings: S3Settings, root: Path):
        self.settings = settings
        self.root = root
        self.owned = False

    @property
    def log(self) -> Path:
        return self.root / "s3proxy.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "s3proxy.pid"

    def pid(self) -> int | None:
        return _read_pid(self.pid_file, self.MARKER)

    def filesystem(self, allow_bucket_creation: bool = False):
        """A pyarrow ``S3FileSystem`` on this server (short timeouts: it is on loopback)."""
        from pyarrow.fs import S3FileSystem

        s = self.settings
        return S3FileSystem(access_key=s.access_key, secret_key=s.secret_key, region=s.region, scheme="http",
                            endpoint_override=f"{s.host}:{s.port}", allow_bucket_creation=allow_bucket_creation,
                            connect_timeout=2, request_timeout=10)

    def healthy(self) -> bool:
        """The port answers S3 and accepts these credentials (a bucket listing succeeds)."""
        if not _port_open(self.settings.host, self.settings.port):
            return False
        try:
            from pyarrow.fs import FileSelector

            self.filesystem().get_file_info(FileSelector("/", recursive=False))
            return True
        except OSError:
            return False

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "S3Server":
        """Start S3Proxy (or reuse a healthy server on the port) and create the bucket.

        Raises
        ------
        SetupError
            the port is taken by something that is not this S3 server, or S3Proxy did
            not come up (the message carries the end of its log).
        """
        if self.healthy():
            self.ensure_bucket()
            return self
        if _port_open(self.settings.host, self.settings.port):
            raise SetupError(
                f"127.0.0.1:{self.settings.port} is in use by something that does not answer as the lakeloop "
                f"S3 test server (wrong credentials or not S3); stop it or change spark.hadoop.fs.s3a.endpoint "
                f"in conf/{S3_PROFILE}.yaml")
        jar = s3proxy_jar()
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "s3proxy.properties"
        s = self.settings
        properties = "\n".join([
            f"s3proxy.endpoint=http://{s.host}:{s.port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={s.access_key}",
            f"s3proxy.credential={s.secret_key}",
            # In memory: jclouds' map store is the backend whose semantics s3a needs. The
            # file-backed ones (filesystem, filesystem-nio2) answer HEAD on a key that is a
            # folder on disk as if it were a file, so Delta's mkdirs of _delta_log/_staged_commits
            # fails ("Path is a file").
            "jclouds.provider=transient",
            "jclouds.region=" + s.region,
        ]) + "\n"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(properties)
        cmd = [_java(), "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Dorg.eclipse.jetty.LEVEL=WARN", "-jar", str(jar), "--properties", str(conf)]
        proc = _spawn(cmd, self.log, self.pid_file)
        self.owned = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if self.healthy():
                self.ensure_bucket()
                return self
            time.sleep(0.25)
        self.stop()
        raise SetupError(f"S3Proxy did not answer on {s.endpoint} within {timeout_s:.0f} s; its log "
                         f"({self.log}) ends with:\n{_tail(self.log)}")

    def ensure_bucket(self) -> None:
        from pyarrow.fs import FileType

        fs = self.filesystem(allow_bucket_creation=True)
        if fs.get_file_info(self.settings.bucket).type == FileType.NotFound:
            fs.create_dir(self.settings.bucket)

    def up_line(self) -> str:
        return f"up at {self.settings.endpoint}, bucket {self.settings.bucket}, log {self.log}"

    def status_line(self) -> str:
        return f"{'up' if self.healthy() else 'down'} at {self.settings.endpoint} (pid {self.pid() or '-'}, state {self.root})"

    def stop(self) -> bool:
        """Stop the server if its pid file names a live S3Proxy; returns whether one was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _stop_group(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def default_s3_server() -> S3Server:
    """The S3 server ``conf/s3-test.yaml`` describes, with its state in ``<state>/s3``."""
    return S3Server(s3_settings(), state_dir() / "s3")


# --------------------------------------------------------------------------- Spark standalone


def spark_home() -> Path:
    """pyspark's own folder: it holds ``bin/spark-class`` and the jars of the Spark it is."""
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").exists():
        raise SetupError(f"{home}/bin/spark-class is missing; reinstall pyspark (./dev/setup.sh)")
    return home


EXECUTOR_VENV = "build/executor-venv"


def executor_python(repo_root: Path | None = None) -> Path:
    """A Python for the cluster's executors that sees the pinned packages but not this checkout.

    The checkout's environment has lakeloop installed in editable mode (a ``.pth`` file), so
    any process started from it imports lakeloop from ``lib/`` whether or not Spark shipped
    the code. This interpreter (``build/executor-venv``: a bare venv whose only ``.pth``
    names the environment's site-packages; ``.pth`` files found there are not processed)
    imports lakeloop only from what spark-submit ships (``--py-files``), as on a real cluster,
    and so do the processes it starts (TorchDistributor's ``torchrun`` uses ``sys.executable``).

    Raises
    ------
    SetupError
        the venv cannot be made, or it still imports lakeloop without shipped code.
    """
    import sysconfig

    from lakeloop.config import REPO_ROOT

    root = (repo_root or REPO_ROOT) / EXECUTOR_VENV
    python = root / "bin" / "python"
    purelib = Path(sysconfig.get_paths()["purelib"])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    marker = root / "lib" / version / "site-packages" / "lakeloop-executor.pth"
    if not (python.exists() and marker.is_file() and marker.read_text().strip() == str(purelib)):
        shutil.rmtree(root, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        proc = subprocess.run([base, "-m", "venv", "--without-pip", str(root)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"could not make the executors' venv {root}: {proc.stderr[-1000:]}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{purelib}\n")
    check = subprocess.run([str(python), "-c", "import pyspark, torch, petastorm\n"
                            "try:\n import lakeloop\nexcept ImportError:\n print('lean')"],
                           capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                 if k != "PYTHONPATH"})
    if check.returncode != 0 or check.stdout.strip() != "lean":
        raise SetupError(f"the executors' venv {root} is not usable or still sees the checkout "
                         f"(exit {check.returncode}): {check.stderr[-1500:]}{check.stdout[-300:]}")
    return python


class StandaloneCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, from pyspark's jars."""

    MASTER_CLASS = "org.apache.spark.deploy.master.Master"
    WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

    def __init__(self, root: Path, master_port: int = 7077, ui_port: int = MASTER_UI_PORT,
                 workers: int = WORKERS, cores: int = WORKER_CORES, memory: str = WORKER_MEMORY):
        self.root = root
        self.master_port = master_port
        self.ui_port = ui_port
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.owned = False

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "SPARK_CONF_DIR")}
        env.update(SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="127.0.0.1",
                   SPARK_DAEMON_MEMORY="256m",
                   # Application folders of finished runs are removed after a day.
                   SPARK_WORKER_OPTS="-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=86400")
        return env

    def status(self) -> dict | None:
        """The master's JSON status (``aliveworkers``, ``workers``, ``activeapps``), or None when down."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as resp:
                return json.loads(resp.read().decode())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def alive_workers(self) -> int:
        state = self.status()
        if not state or state.get("status") != "ALIVE":
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def healthy(self) -> bool:
        return self.alive_workers() >= self.workers and _port_open("127.0.0.1", self.master_port)

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "StandaloneCluster":
        """Start the master and the workers (or reuse a cluster that already has them all alive).

        Raises
        ------
        SetupError
            a port is taken by something else, or the daemons did not come up (with their logs).
        """
        executor_python()
        if self.healthy():
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        spark_class = str(spark_home() / "bin" / "spark-class")
        env = self._env()
        master_pid = _read_pid(self._pid_file("master"), self.MASTER_CLASS)
        if master_pid is None:
            for port in (self.master_port, self.ui_port):
                if _port_open("127.0.0.1", port):
                    raise SetupError(f"127.0.0.1:{port} is in use by something that is not a healthy lakeloop "
                                     f"standalone master; stop it (./dev/services.sh stop cluster) or free the port")
            _spawn([spark_class, self.MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.master_port),
                    "--webui-port", str(self.ui_port)], self.root / "master.log", self._pid_file("master"), env)
            self.owned = True
        self._wait(lambda: self.status() is not None, timeout_s, "the master", ["master"])
        for n in range(1, self.workers + 1):
            name = f"worker-{n}"
            if _read_pid(self._pid_file(name), self.WORKER_CLASS) is not None:
                continue
            work = self.root / name
            work.mkdir(parents=True, exist_ok=True)
            _spawn([spark_class, self.WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(self.cores),
                    "--memory", self.memory, "--webui-port", "0", "--work-dir", str(work), self.master_url],
                   self.root / f"{name}.log", self._pid_file(name), env)
            self.owned = True
        self._wait(self.healthy, timeout_s, f"{self.workers} workers",
                   ["master"] + [f"worker-{n}" for n in range(1, self.workers + 1)])
        return self

    def _wait(self, check, timeout_s: float, what: str, logs: list[str]) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        tails = "\n".join(f"--- {name}.log:\n{_tail(self.root / f'{name}.log', 15)}" for name in logs)
        self.stop()
        raise SetupError(f"the Spark standalone cluster did not get {what} up within {timeout_s:.0f} s "
                         f"(state in {self.root}):\n{tails}")

    def up_line(self) -> str:
        return (f"up at {self.master_url} with {self.alive_workers()} workers, UI http://127.0.0.1:{self.ui_port}, "
                f"logs in {self.root}")

    def status_line(self) -> str:
        return (f"{self.alive_workers()} alive worker(s) at {self.master_url} "
                f"(UI http://127.0.0.1:{self.ui_port}, state {self.root})")

    def stop(self) -> bool:
        """Stop the workers (and their executors), then the master; returns whether any was running."""
        stopped = False
        names = [f"worker-{n}" for n in range(self.workers, 0, -1)] + ["master"]
        for name in names:
            marker = self.MASTER_CLASS if name == "master" else self.WORKER_CLASS
            pid = _read_pid(self._pid_file(name), marker)
            if pid is not None:
                _stop_group(pid)
                stopped = True
            self._pid_file(name).unlink(missing_ok=True)
        return stopped


def cluster_master_port(profile_name: str = CLUSTER_PROFILE) -> int:
    """The master port of ``spark.master`` in ``conf/<profile>.yaml`` (``spark://127.0.0.1:PORT``)."""
    from lakeloop.config import load_profile

    master = load_profile(profile_name).spark.master or ""
    parsed = urllib.parse.urlparse(master)
    if parsed.scheme != "spark" or parsed.hostname != "127.0.0.1" or not parsed.port:
        raise SetupError(f"profile {profile_name}: spark.master must be spark://127.0.0.1:PORT, found {master!r}")
    return parsed.port


def default_cluster() -> StandaloneCluster:
    return StandaloneCluster(state_dir() / "cluster", master_port=cluster_master_port())


# --------------------------------------------------------------------------- command line


def _service(name: str):
    """The service object behind a command-line name (each has start/stop/up_line/status_line/owned)."""
    if name == "s3":
        return default_s3_server()
    if name == "cluster":
        return default_cluster()
    from lakeloop.minihadoop import default_minihadoop

    return default_minihadoop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev/services.sh", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("service", nargs="?", default="all", choices=["s3", "cluster", "hadoop", "all"])
    args = parser.parse_args(argv)
    names = ["s3", "cluster", "hadoop"] if args.service == "all" else [args.service]
    try:
        for name in names:
            service = _service(name)
            if args.action == "start":
                service.start()
                print(f"{name}: {service.up_line()}{'' if service.owned else ' (already running)'}")
            elif args.action == "stop":
                print(f"{name}: stopped" if service.stop() else f"{name}: not running (no live pid file)")
            else:
                print(f"{name}: {service.status_line()}")
    except SetupError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

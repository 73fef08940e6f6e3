"""A Spark standalone cluster on loopback: a master and two workers (1 core, 1536 MB each) run by
``spark-class`` from pyspark's own jars; the master URL is ``spark.master`` of
``conf/cluster-test.yaml``. Its executors run ``build/executor-venv`` (:func:`executor_python`),
a Python that sees the pinned packages but not the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lakeloop.errors import SetupError
from lakeloop_dev.processes import (START_TIMEOUT_S, port_open, pyspark_home, read_pid, spawn, state_dir,
                                    stop_group, tail, wait_until)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_PROFILE = "cluster-test"
WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1536m"
MASTER_UI_PORT = 18090


EXECUTOR_VENV = "build/executor-venv"


def executor_python(repo_root: Path | None = None) -> Path:
    """A Python for the cluster's executors that sees the pinned packages but not this checkout.

    The checkout's environment has lakeloop installed in editable mode (a ``.pth`` file), so
    any process started from it imports lakeloop from ``lib/`` whether or not Spark shipped
    the code. This interpreter (``build/executor-venv``: a bare venv whose only ``.pth``
    names the site-packages of the pinned packages, :func:`lakeloop.stacks.packages_folder`;
    ``.pth`` files found there are not processed)
    imports lakeloop only from what spark-submit ships (``--py-files``), as on a real cluster,
    and so do the processes it starts (TorchDistributor's ``torchrun`` uses ``sys.executable``).

    Raises
    ------
    SetupError
        the venv cannot be made, or it still imports lakeloop without shipped code.
    """
    from lakeloop.stacks import packages_folder

    root = (repo_root or REPO_ROOT) / EXECUTOR_VENV
    python = root / "bin" / "python"
    purelib = Path(packages_folder())
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
    check = subprocess.run([str(python), "-c", "import pyspark, torch, pyarrow\n"
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
        env.update(SPARK_HOME=str(pyspark_home()), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="127.0.0.1",
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
        return self.alive_workers() >= self.workers and port_open("127.0.0.1", self.master_port)

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
        spark_class = str(pyspark_home() / "bin" / "spark-class")
        env = self._env()
        master_pid = read_pid(self._pid_file("master"), self.MASTER_CLASS)
        if master_pid is None:
            for port in (self.master_port, self.ui_port):
                if port_open("127.0.0.1", port):
                    raise SetupError(f"127.0.0.1:{port} is in use by something that is not a healthy lakeloop "
                                     f"standalone master; stop it (./dev/services.sh stop cluster) or free the port")
            spawn([spark_class, self.MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.master_port),
                    "--webui-port", str(self.ui_port)], self.root / "master.log", self._pid_file("master"), env)
            self.owned = True
        self._wait(lambda: self.status() is not None, timeout_s, "the master", ["master"])
        for n in range(1, self.workers + 1):
            name = f"worker-{n}"
            if read_pid(self._pid_file(name), self.WORKER_CLASS) is not None:
                continue
            work = self.root / name
            work.mkdir(parents=True, exist_ok=True)
            spawn([spark_class, self.WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(self.cores),
                    "--memory", self.memory, "--webui-port", "0", "--work-dir", str(work), self.master_url],
                   self.root / f"{name}.log", self._pid_file(name), env)
            self.owned = True
        self._wait(self.healthy, timeout_s, f"{self.workers} workers",
                   ["master"] + [f"worker-{n}" for n in range(1, self.workers + 1)])
        return self

    def _wait(self, check, timeout_s: float, what: str, logs: list[str]) -> None:
        if wait_until(check, timeout_s, interval_s=0.5):
            return
        tails = "\n".join(f"--- {name}.log:\n{tail(self.root / f'{name}.log', 15)}" for name in logs)
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
            pid = read_pid(self._pid_file(name), marker)
            if pid is not None:
                stop_group(pid)
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

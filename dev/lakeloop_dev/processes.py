"""Running the loopback services as processes: the helpers they share and one ``Service`` interface.

Every service (:mod:`lakeloop_dev.s3`, :mod:`lakeloop_dev.cluster`, :mod:`lakeloop_dev.hadoop`)
is a :class:`Service`: ``start()`` reuses one that is already up and answering (started by
a person, another checkout or an earlier test session) or starts its own process group;
``owned`` says whether this object started it; ``stop()`` ends only the processes whose pid
files it wrote, and only if their command line is still the service's. State (pid files,
logs, data) lives in :func:`state_dir`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping, Protocol

from lakeloop.errors import SetupError

START_TIMEOUT_S = 90.0


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from ``/proc``), whatever session or group it moved to:
    torchrun starts each training rank in a session of its own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Service(Protocol):
    """What ``./dev/services.sh`` and the test fixtures need of a loopback service."""

    owned: bool

    def start(self) -> "Service":
        """Start it, or reuse a healthy one; raise SetupError (with its log) if it does not come up."""

    def stop(self) -> bool:
        """Stop it if this machine's pid file names a live one; return whether one was stopped."""

    def healthy(self) -> bool:
        """Whether it is up and answering."""

    def up_line(self) -> str:
        """One line for a person: where it answers, where its logs are."""

    def status_line(self) -> str:
        """One line for a person: up or down, pid, state folder."""


class PidFileService:
    """Base of the services run as one process group: a state folder with ``<name>.pid`` and
    ``<name>.log``, and the marker that must be in the process's command line."""

    NAME = "service"
    MARKER = ""

    def __init__(self, root: Path):
        self.root = root
        self.owned = False

    @property
    def log(self) -> Path:
        return self.root / f"{self.NAME}.log"

    @property
    def pid_file(self) -> Path:
        return self.root / f"{self.NAME}.pid"

    def pid(self) -> int | None:
        """The service's pid, if its pid file names a live process that still runs it."""
        return read_pid(self.pid_file, self.MARKER)

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the process group if the pid file names a live one; returns whether one was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        stop_group(pid, timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True


def state_dir() -> Path:
    """Where pid files, logs and service data live (``$LAKELOOP_SERVICES_DIR``)."""
    return Path(os.environ.get("LAKELOOP_SERVICES_DIR") or Path.home() / ".cache" / "lakeloop" / "services")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
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


def cmdline(pid: int) -> str:
    """The command line of process ``pid``, or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and still runs ``marker``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and marker in cmdline(pid) else None


def spawn(cmd: list[str], log: Path, pid_file: Path, env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session (its own process group), output to ``log``; write its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop_group(pid: int, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group ``pid`` leads (the service and the children it started), then
    SIGKILL whatever is left after ``timeout_s``."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
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


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def java() -> str:
    """The ``java`` to run services with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise SetupError("java is not on PATH; run ./dev/setup.sh (it installs Java 17)")
    return found


def pyspark_home() -> Path:
    """pyspark's own folder: it holds ``bin/spark-class`` and the jars of the Spark it is."""
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").exists():
        raise SetupError(f"{home}/bin/spark-class is missing; reinstall pyspark (./dev/setup.sh)")
    return home


def wait_until(check, timeout_s: float, interval_s: float = 0.25, alive=lambda: True) -> bool:
    """Poll ``check()`` until it is true (True) or ``timeout_s`` passes or ``alive()`` turns false (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive():
            return False
        time.sleep(interval_s)
    return False

"""Killing a job's driver for real: a batch job at a point read from what it has written into the
lake, a stream once its checkpoint's first micro-batch is committed.

The job is ``./spark-submit.sh``'ed in its own process group; a watcher lists the lake folder
every few milliseconds and SIGKILLs the group (spark-submit, the JVM, the Python driver, its
workers) when the chosen point is reached:

* ``first_write``: the job's first new file in the lake (not yet committed, as a rule);
* ``first_commit``: its first commit (a Delta log entry, a Spark ``_SUCCESS``, a registry ``_COMMITTED``);
* ``report``: its run report, written after its last commit.

Nothing in lakeloop knows about this: the kill comes from outside, as an out-of-memory killer or
a preempted node would deliver it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lakeloop.config import REPO_ROOT
from lakeloop_dev.processes import descendants

KILL_POINTS = {
    "first_write": "at its first file in the lake",
    "first_commit": "just after its first commit",
    "report": "just after its last commit (its run report)",
}
_DELTA_COMMIT = re.compile(r"\d{20}\.json")


@dataclass(frozen=True)
class Kill:
    point: str
    new_files: int  # files the killed run had added to the lake (reports aside)
    new_commits: int  # of which commits

    def describe(self) -> str:
        return f"{KILL_POINTS[self.point]} ({self.new_files} new files, {self.new_commits} commits)"


def lake_files(root: Path) -> set[str]:
    """Every file under ``root`` (checksum sidecars aside), relative to it."""
    found = set()
    for folder, _, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        found.update(os.path.join(rel, name) for name in names if not name.endswith(".crc"))
    return found


def is_commit(rel: str) -> bool:
    name = os.path.basename(rel)
    return (os.path.basename(os.path.dirname(rel)) == "_delta_log" and bool(_DELTA_COMMIT.fullmatch(name))) \
        or name in ("_SUCCESS", "_COMMITTED")


def _reached(point: str, job: str, new: set[str]) -> bool:
    if point == "report":
        return any(rel.startswith(f"_reports/{job}/") and rel.endswith(".json") and not rel.endswith("latest.json")
                   for rel in new)
    work = [rel for rel in new if not rel.startswith("_reports/")]
    return bool(work) if point == "first_write" else any(is_commit(rel) for rel in work)


def run_killed(cmd: list[str], root: Path, job: str, point: str, timeout_s: float = 300) -> Kill:
    """Run ``cmd`` (``./spark-submit.sh ... JOB``) and SIGKILL it, driver and all, once it reaches
    ``point`` in the lake folder ``root``; fail if it ends before that."""
    before = lake_files(root) if root.exists() else set()
    new: set[str] = set()

    def reached() -> bool:
        nonlocal new
        new = (lake_files(root) if root.exists() else set()) - before
        return _reached(point, job, new)

    code, output = _run_until_then_kill(cmd, reached, timeout_s)
    assert _reached(point, job, new), (
        f"{job} never reached {point} ({KILL_POINTS[point]}): it exited {code}; output ends:\n{output[-4000:]}")
    work = [rel for rel in new if not rel.startswith("_reports/")]
    return Kill(point, len(work), sum(is_commit(rel) for rel in work))


def kill_after_first_commit(cmd: list[str], commits: Path, timeout_s: float = 300) -> int:
    """Run ``cmd`` (a ``./spark-submit.sh ... --stream`` command line) and SIGKILL it, driver and
    all, as soon as ``commits/0`` (its checkpoint's first commit) exists; return the number of
    micro-batches it had committed."""
    _run_until_then_kill(cmd, lambda: (commits / "0").exists(), timeout_s)
    assert (commits / "0").exists(), f"the stream never committed its first micro-batch ({' '.join(cmd)})"
    return len([p for p in commits.iterdir() if p.name.isdigit()])


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every process below it, as a lost node would: a training
    rank left running by a killed driver would otherwise write into the lake beside the rerun."""
    for _ in range(3):  # a process may fork while we look
        below = descendants(pid)
        for target in below:
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not below:
            break


def _run_until_then_kill(cmd: list[str], reached: Callable[[], bool], timeout_s: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group, SIGKILL the group once ``reached()`` (checked every
    20 ms) or the process ends or ``timeout_s`` passes; its exit code (None if killed) and output.
    The output goes to a file: a pipe nobody reads while the job runs would stall a chatty job."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")})
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and proc.poll() is None and not reached():
                time.sleep(0.02)
        finally:
            code = proc.poll()
            kill_tree(proc.pid)
            proc.wait()
        log.seek(0)
        return code, log.read().decode(errors="replace")

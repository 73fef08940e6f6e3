"""Killing a batch job's driver for real, at a point read from what it has written into the lake.

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
import time
from dataclasses import dataclass
from pathlib import Path

from lakeloop.config import REPO_ROOT

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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")})
    deadline = time.monotonic() + timeout_s
    new: set[str] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            new = (lake_files(root) if root.exists() else set()) - before
            if _reached(point, job, new):
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0].decode(errors="replace")
    assert _reached(point, job, new), (
        f"{job} never reached {point} ({KILL_POINTS[point]}): it exited {proc.returncode}; output ends:\n"
        f"{output[-4000:]}")
    work = [rel for rel in new if not rel.startswith("_reports/")]
    return Kill(point, len(work), sum(is_commit(rel) for rel in work))

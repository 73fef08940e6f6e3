"""Killing a streaming job for real: spark-submit it, SIGKILL its process group once its first
micro-batch is committed, and say how many were."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from lakeloop.config import REPO_ROOT


def kill_after_first_commit(cmd: list[str], commits: Path, timeout_s: float = 300) -> int:
    """Run ``cmd`` (a ``./spark-submit.sh ... --stream`` command line) and SIGKILL it, driver and
    all, as soon as ``commits/0`` (its checkpoint's first commit) exists; return the number of
    micro-batches it had committed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")})
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None and not (commits / "0").exists():
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (commits / "0").exists(), f"the stream never committed its first micro-batch ({' '.join(cmd)})"
    return len([p for p in commits.iterdir() if p.name.isdigit()])

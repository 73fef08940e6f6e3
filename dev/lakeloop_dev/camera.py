"""Camera-size photographs and the peak memory of Spark's Python workers, for the memory test
(tests/test_photo_memory.py) and its benchmark (bench/photo_memory.py).

:func:`camera_photos` writes JPEGs that compress like photographs (a smooth random colour field
with fine noise), 12 megapixels by default: 3-6 MB each, what a phone or camera produces.
:class:`PeakWorkerMemory` watches the Python workers a ``spark-submit`` starts (the processes of
``pyspark.daemon`` under that process) and keeps the highest resident memory any one of them
reached: the kernel's own high-water mark (``VmHWM``), read every 50 ms, so a peak between two
reads is not missed (only a worker that ends within 50 ms of its peak could be).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from lakeloop_dev.processes import descendants

CAMERA = (4000, 3000)  # 12 megapixels


def camera_photo(seed: int, width: int = CAMERA[0], height: int = CAMERA[1], quality: int = 92) -> bytes:
    """One JPEG of ``width`` x ``height``: a smooth random colour field with noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
    noisy = np.clip(field + rng.integers(-20, 21, size=field.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def camera_photos(folder: Path, count: int, width: int = CAMERA[0], height: int = CAMERA[1],
                  classes: int = 2) -> int:
    """``count`` photos under ``folder/<class>/``; returns their total bytes."""
    total = 0
    for i in range(count):
        target = folder / f"class{i % classes}" / f"IMG_{i:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        data = camera_photo(i, width, height)
        target.write_bytes(data)
        total += len(data)
    return total


def _status_kib(pid: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _is_python_worker(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"pyspark.daemon" in cmdline.read()
    except OSError:
        return False


class PeakWorkerMemory:
    """``with PeakWorkerMemory(pid) as peak: ...`` then ``peak.bytes``: the highest resident memory
    one Python worker under process ``pid`` (a ``spark-submit``) reached while the block ran;
    workers of other jobs on the machine are not counted."""

    def __init__(self, root_pid: int, interval_s: float = 0.05) -> None:
        self.root = str(root_pid)
        self.interval_s = interval_s
        self.bytes = 0
        self.virtual_bytes = 0  # the highest address space (VmPeak): what spark.executor.pyspark.memory limits
        self.workers: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in map(str, descendants(int(self.root))):
                if pid in self.workers or _is_python_worker(pid):
                    self.workers.add(pid)
                    self.bytes = max(self.bytes, _status_kib(pid, "VmHWM") * 1024)
                    self.virtual_bytes = max(self.virtual_bytes, _status_kib(pid, "VmPeak") * 1024)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakWorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_watched(cmd: list[str], cwd: Path, timeout_s: float = 900) -> tuple[int, str, "PeakWorkerMemory"]:
    """Run ``cmd`` (a spark-submit); its exit code, output, and the peaks of its Python workers."""
    import subprocess

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with PeakWorkerMemory(proc.pid) as peak:
        output, _ = proc.communicate(timeout=timeout_s)
    return proc.returncode, output, peak

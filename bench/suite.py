"""The benchmark suite (issue 14): every step at two sizes beside its bare baseline and a peer, one table.

    PYTHONPATH=lib:dev ./.venv/bin/python bench/suite.py [--small 1250] [--scale 16] [--no-daft]
                                                         [--others] [--demo]

Builds its own folders of synthetic 32x32 PNGs at ``--small`` and ``--small * --scale`` files and,
in one warm ``local[2]`` session, runs on each: the bare ``binaryFile`` -> Parquet copy, a bare
2-process Pillow decode loop, Daft (list -> read -> decode -> resize -> Parquet, in its own
environment under build/, made on first use from PyPI), then lakeloop's ingest_images,
build_features, one training epoch (TorchDistributor, 2 processes) and batch scoring of the
features. At the larger size it adds 1 % new files and compares the incremental build_features
with a full one. A sampler keeps the largest resident memory of any Python process below this
one (Spark's Python workers and the training processes) during each step.

``--others`` also runs the feed, scoring and scheduled-scoring benchmarks (bench/feed_and_train.py,
bench/score.py, bench/scheduled_score.py) in their own processes and takes their figures;
``--demo`` times each README demo job as ./spark-submit.sh runs it (a fresh lake, the demo data).
Prints one table of the issue's measures with their targets. Nothing here is a test: timings
on a shared machine vary, which is why every ratio compares two things measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from build_features import _write_new
from ingest_images import bare_copy, write_synthetic

REPO = Path(__file__).resolve().parents[1]
DAFT_ENV = REPO / "build" / "bench-daft-venv"
DAFT_REQUIREMENT = "daft==0.7.26"


class PeakMemory:
    """The largest resident set (MiB) of any Python process descended from this one, sampled
    every ``interval`` s, per named step: Spark's Python workers and torch's training processes."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.step, self.peaks = interval, None, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.interval):
            if self.step is not None:
                rss = max((rss for pid, rss in _python_descendants(me)), default=0)
                self.peaks[self.step] = max(self.peaks.get(self.step, 0), rss)


def _python_descendants(root: int) -> list[tuple[int, float]]:
    """(pid, resident MiB) of every Python process below ``root``, read from /proc."""
    parents, names = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            names[int(entry)] = stat[stat.index("(") + 1:stat.rindex(")")]
            parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    below, todo, out = set(), [root], []
    while todo:  # a walk down the tree: pids wrap, so a child's may be smaller than its parent's
        for child in children.get(todo.pop(), []):
            below.add(child)
            todo.append(child)
    for pid in below:
        if names.get(pid, "").startswith("python"):
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.append((pid, pages * os.sysconf("SC_PAGE_SIZE") / 2**20))
    return out


def _decode_one(path: str) -> int:
    from PIL import Image

    with open(path, "rb") as f, Image.open(f) as image:
        image.load()
        return image.width


def bare_pillow(folder: Path, processes: int = 2) -> float:
    """Seconds for ``processes`` processes to read and decode every PNG with Pillow."""
    from multiprocessing import get_context

    paths = [str(p) for p in folder.rglob("*.png")]
    start = time.perf_counter()
    with get_context("fork").Pool(processes) as pool:
        decoded = sum(1 for _ in pool.imap_unordered(_decode_one, paths, chunksize=64))
    assert decoded == len(paths)
    return time.perf_counter() - start


def daft_python() -> Path:
    """The Daft environment's interpreter, made on first use (a venv with daft from PyPI)."""
    python, stamp = DAFT_ENV / "bin" / "python", DAFT_ENV / "installed.txt"
    if not stamp.exists() or stamp.read_text() != DAFT_REQUIREMENT:  # none yet, half made, or another pin
        print(f"making the Daft environment in {DAFT_ENV} ({DAFT_REQUIREMENT})", flush=True)
        base = shutil.which("python3.11") or shutil.which("python3")
        subprocess.run([base, "-m", "venv", "--clear", str(DAFT_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DAFT_REQUIREMENT], check=True)
        stamp.write_text(DAFT_REQUIREMENT)
    return python


def run_daft(folder: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([str(daft_python()), str(REPO / "bench" / "daft_peer.py"), str(folder), str(out)],
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == sum(1 for _ in folder.rglob("*.png")), result
    return result["seconds"]


def local_profile(lake: Path, source: str, *overrides):
    from lakeloop.config import load_profile

    return load_profile("local", [("spark.master", "local[2]"), ("lake_root", f"file:{lake}"),
                                  ("ingest_images.source", source), ("features.join_table", None),
                                  ("train.epochs", 1), ("train.model", "lenet5"), ("score.input", "features"),
                                  ("observe.tensorboard", False), *overrides])


STEPS = ("ingest", "features", "train", "score")


def baselines(spark, work: Path, count: int, with_daft: bool) -> dict[str, float]:
    """Seconds of the bare copy, the bare Pillow loop and Daft on a fresh folder of ``count`` PNGs."""
    folder = work / f"png-{count}"
    write_synthetic(folder, count)
    seconds = {}
    copied, seconds["bare_copy"] = bare_copy(spark, f"file:{folder}", f"file:{work / f'bare-{count}'}")
    assert copied == count, copied
    seconds["bare_pillow"] = bare_pillow(folder)
    if with_daft:
        seconds["daft"] = run_daft(folder, work / f"daft-{count}")
    return seconds


def pipeline(spark, work: Path, runs: dict[int, dict[str, float]], memory: PeakMemory) -> None:
    """Each lakeloop step on each folder of :func:`baselines`, into a lake per folder: step by
    step, the smaller folder first, so Python workers reused from an earlier step (torch loaded
    by scoring, say) are the same for both sizes of a step."""
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.report import RunReport
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train

    for step, run in zip(STEPS, (ingest_images, build_features, train, score_table)):
        for count, seconds in runs.items():
            memory.step = f"{step}@{count}"
            report = RunReport.start(step)
            start = time.perf_counter()
            run(spark, local_profile(work / f"lake-{count}", f"file:{work / f'png-{count}'}"), report)
            seconds[step] = time.perf_counter() - start
            memory.step = None
            steps = ", ".join(f"{k} {v:.1f}" for k, v in report.durations_s.items())
            print(f"  {count:,} files: {step} {seconds[step]:.1f} s ({steps})", flush=True)


def incremental(spark, work: Path, count: int) -> tuple[float, float, float]:
    """Seconds of build_features after 1 % new files on the ``count`` lake, incremental and full,
    and of the ingest_images run that took those files."""
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images

    new = work / f"new-{count}"
    _write_new(new, max(1, count // 100))
    lake, full_lake = work / f"lake-{count}", work / f"lake-{count}-full"
    start = time.perf_counter()
    ingest_images(spark, local_profile(lake, f"file:{new}"))
    t_ingest = time.perf_counter() - start
    shutil.copytree(lake, full_lake)
    start = time.perf_counter()
    build_features(spark, local_profile(lake, f"file:{new}"))
    t_incremental = time.perf_counter() - start
    start = time.perf_counter()
    build_features(spark, local_profile(full_lake, f"file:{new}", ("features.incremental", False)))
    return t_incremental, time.perf_counter() - start, t_ingest


def others(work: Path) -> dict[str, float]:
    """The feed, scoring and scheduled-scoring figures, each benchmark in its own process."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}:{REPO / 'dev'}"}
    figures = {}
    for script, args in (("feed_and_train.py", ["--train-epochs", "0"]), ("score.py", []),
                         ("scheduled_score.py", [])):
        out = work / f"{script}.json"
        print(f"running bench/{script}", flush=True)
        subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--json", str(out)],
                       check=True, env=env, cwd=REPO)
        figures.update(json.loads(out.read_text()))
    return figures


DEMO_JOBS = (("local", "ingest_images"), ("local", "ingest_tables"), ("local", "build_features"),
             ("local", "train"), ("local", "score", "--input", "images"), ("local", "evaluate"),
             ("local-wine", "ingest_tables"), ("local-wine", "build_features"), ("local-wine", "train"),
             ("local-wine", "score"))


def demo_jobs(work: Path) -> list[tuple[str, float]]:
    """Wall seconds of each README demo job through ./spark-submit.sh, on a fresh lake."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}:{REPO / 'dev'}"}
    subprocess.run([sys.executable, "-m", "lakeloop_dev.demo_data", "--profile", "local"], check=True, env=env,
                   cwd=REPO, capture_output=True)
    timings = []
    for profile, *job in DEMO_JOBS:
        start = time.perf_counter()
        subprocess.run([str(REPO / "spark-submit.sh"), "--profile", profile,
                        "--set", f"lake_root=file:{work / 'demo-lake'}", *job],
                       check=True, cwd=REPO, capture_output=True)
        timings.append((" ".join(["--profile", profile, *job]) if profile != "local" else " ".join(job),
                        time.perf_counter() - start))
        print(f"  demo: {timings[-1][0]} {timings[-1][1]:.1f} s", flush=True)
    return timings


def _row(measure: str, value: str, target: str, met: bool | None) -> str:
    return f"| {measure} | {value} | {target} | {'' if met is None else ('yes' if met else 'no')} |"


def table(small: int, large: int, runs: dict[int, dict[str, float]], inc: tuple[float, float, float] | None,
          memory: dict[str, float], other: dict[str, float], demo: list[tuple[str, float]]) -> list[str]:
    s, l = runs[small], runs[large]
    lines = ["| measure | this run | target | met |", "| --- | --- | --- | --- |"]
    ratio = l["bare_copy"] / l["ingest"]
    lines.append(_row(f"first ingest_images, {large:,} PNGs ÷ bare binaryFile → Parquet copy",
                      f"{ratio:.2f}x ({l['ingest']:.1f} s vs {l['bare_copy']:.1f} s)", "≥ 0.5x", ratio >= 0.5))
    for n, r, target in ((large, l, 0.3), (small, s, 0.15)):
        if "daft" in r:
            ours = r["ingest"] + r["features"]
            lines.append(_row(f"ingest_images + build_features ÷ Daft, {n:,} files", f"{r['daft'] / ours:.3f}x "
                              f"({ours:.1f} s vs {r['daft']:.1f} s)", f"≥ {target}x", r["daft"] / ours >= target))
    for n, r in ((large, l), (small, s)):
        ratio = r["bare_pillow"] / r["ingest"]
        lines.append(_row(f"first ingest_images ÷ bare 2-process Pillow decode, {n:,} files",
                          f"{ratio:.2f}x ({r['ingest']:.1f} s vs {r['bare_pillow']:.1f} s)", "≥ 0.25x", ratio >= 0.25))
    if inc:
        lines.append(_row(f"build_features after 1 % new images ÷ full build, {large:,} files",
                          f"{inc[0] / inc[1]:.2f} ({inc[0]:.1f} s vs {inc[1]:.1f} s)", "≤ 0.1", inc[0] / inc[1] <= 0.1))
        lines.append(_row(f"ingest_images of 1 % new images ÷ first ingest, {large:,} files", f"{inc[2] / l['ingest']:.2f} "
                          f"({inc[2]:.1f} s vs {l['ingest']:.1f} s)", "–", None))
    if "feed_arrow" in other:
        lines.append(_row("feed, Arrow reader ÷ bare pyarrow zero-copy loop", f"{other['feed_arrow']:.2f}x", "≥ 0.8x",
                          other["feed_arrow"] >= 0.8))
    if "feed_petastorm" in other:
        lines.append(_row("feed, Petastorm reader ÷ bare pyarrow zero-copy loop", f"{other['feed_petastorm']:.2f}x",
                          "≥ 0.5x", other["feed_petastorm"] >= 0.5))
    if "score_warm" in other:
        lines.append(_row("scoring warm ÷ bare PyTorch (LeNet-5)", f"{other['score_warm']:.2f}x", "≥ 0.9x",
                          other["score_warm"] >= 0.9))
        lines.append(_row("scoring cold first run ÷ bare PyTorch (LeNet-5)", f"{other['score_cold']:.2f}x", "≥ 0.7x",
                          other["score_cold"] >= 0.7))
    if "scheduled_new" in other:
        lines.append(_row("scheduled score --stream job, 500 new rows over 100,000 scored",
                          f"{other['scheduled_new']:.1f} s", "≤ 20 s", other["scheduled_new"] <= 20))
        lines.append(_row("scheduled score --stream job, nothing new", f"{other['scheduled_nothing']:.1f} s", "≤ 10 s",
                          other["scheduled_nothing"] <= 10))
    if "scheduled_batch_new" in other:
        lines.append(_row("scheduled batch score job, 500 new rows over 100,000 scored",
                          f"{other['scheduled_batch_new']:.1f} s", "≤ 20 s", other["scheduled_batch_new"] <= 20))
        lines.append(_row("scheduled batch score job, nothing new", f"{other['scheduled_batch_nothing']:.1f} s",
                          "≤ 10 s", other["scheduled_batch_nothing"] <= 10))
    for job, seconds in demo:
        lines.append(_row(f"demo job: {job} (wall, JVM start included)", f"{seconds:.1f} s", "≤ 15 s", seconds <= 15))
    if demo:
        total = sum(t for _, t in demo)
        lines.append(_row("README demo, its jobs end to end", f"{total / 60:.1f} min", "≤ 2.5 min", total <= 150))
    scale = large / small
    for step in STEPS:
        ratio = l[step] / (scale * s[step])
        lines.append(_row(f"{step}: {large:,} files ÷ {scale:g} × {small:,} files", f"{ratio:.2f} "
                          f"({l[step]:.1f} s vs {s[step]:.1f} s)", "≤ 1.2", ratio <= 1.2))
    for step in STEPS:
        small_mib, large_mib = memory.get(f"{step}@{small}", 0), memory.get(f"{step}@{large}", 0)
        if small_mib:
            lines.append(_row(f"peak Python process memory, {step}: {large:,} vs {small:,} files",
                              f"{large_mib:.0f} vs {small_mib:.0f} MiB ({large_mib / small_mib:.2f}x)", "flat",
                              large_mib / small_mib <= 1.2))
    return lines


def main() -> None:
    from lakeloop.config import load_profile
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1250, help="files at 1x (default 1250)")
    parser.add_argument("--scale", type=int, default=16, help="the larger size as a multiple of --small")
    parser.add_argument("--no-daft", action="store_true", help="leave the Daft peer out")
    parser.add_argument("--others", action="store_true", help="also the feed, scoring and scheduled benchmarks")
    parser.add_argument("--demo", action="store_true", help="also time each README demo job")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-suite-"))
    small, large = args.small, args.small * args.scale
    try:
        spark = build_session(load_profile("local", [("spark.master", "local[2]")]), app_name="lakeloop-bench-suite")
        # The JVM, Python workers and Delta's classes warm before anything is timed: the first step
        # of the smaller size would pay them otherwise, and flatter the 16x ratios.
        spark.range(1000).selectExpr("sum(id)").collect()
        warm = f"file:{work / 'warm-delta'}"
        spark.range(10).write.format("delta").save(warm)
        spark.read.format("delta").load(warm).count()
        runs = {count: baselines(spark, work, count, not args.no_daft) for count in (small, large)}
        with PeakMemory() as memory:
            pipeline(spark, work, runs, memory)
        inc = incremental(spark, work, large)
        spark.stop()
        other = others(work) if args.others else {}
        demo = demo_jobs(work) if args.demo else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("seconds: " + json.dumps({n: {k: round(v, 2) for k, v in r.items()} for n, r in runs.items()}))
    print("\n".join(table(small, large, runs, inc, memory.peaks, other, demo)))


if __name__ == "__main__":
    main()

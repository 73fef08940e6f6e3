"""Benchmark: the fixed costs every lakeloop job pays before and around its work on the data.

    PYTHONPATH=lib:dev ./.venv/bin/python bench/floors.py [--rounds 2]

Each round starts a fresh Python process, as a scheduler starts a job, and times inside it, in
this order, with no lakeloop step involved:

* the session: the ``local`` profile's SparkSession (its JVM settings, class archive and jars)
  and a first one-row Spark job;
* Delta in that fresh JVM: a one-row table written (a first commit), a one-row MERGE into it (a
  second commit), the same MERGE again (no new row: Delta still commits), a read of the table's
  latest commit (``history(1)``, what a job asks before it plans), and a one-row count;
* ``TorchDistributor(num_processes=2)`` running a function that only joins the gloo process group,
  waits at a barrier and returns (what a training run pays before its first batch and after its
  last), twice on two Spark tasks (``local_mode=False``, the ``train.local_mode`` default) and once
  on the driver (``local_mode=True``);
* its bare baseline: two Python processes started side by side that each import torch.

Prints one markdown table, seconds per round. These are the floors the issue-14 targets meet or
miss on 2 cores: a demo job is one session, a few Delta commits and reads, and for ``train`` one
TorchDistributor run, before any work on its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rank_noop() -> int:
    """A training function that does nothing but what every rank does first and last."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    dist.barrier()
    rank = dist.get_rank()
    dist.destroy_process_group()
    return rank


def _child(lake: Path) -> None:
    """One fresh process: time the session, Delta's first operations and TorchDistributor."""
    timings: dict[str, float] = {}

    def timed(name, fn):
        started = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - started, 3)
        return out

    from lakeloop.config import load_profile
    from lakeloop.runtime.session import build_session

    started = time.perf_counter()
    spark = build_session(load_profile("local", [("lake_root", f"file:{lake}")]), app_name="bench-floors")
    spark.range(1).count()
    timings["session and a first job"] = round(time.perf_counter() - started, 3)

    from delta.tables import DeltaTable

    uri = str(lake / "one")
    timed("Delta: write a one-row table (first commit)",
          lambda: spark.createDataFrame([(1, "a")], "id int, v string").write.format("delta").save(uri))

    def merge(key: int):
        source = spark.createDataFrame([(key, "b")], "id int, v string")
        (DeltaTable.forPath(spark, uri).alias("t").merge(source.alias("s"), "t.id = s.id")
         .whenNotMatchedInsertAll().execute())

    timed("Delta: MERGE one new row", lambda: merge(2))
    timed("Delta: the same MERGE again (nothing new)", lambda: merge(2))
    timed("Delta: read the latest commit (history(1))",
          lambda: DeltaTable.forPath(spark, uri).history(1).select("version").first())
    timed("Delta: count the table", lambda: spark.read.format("delta").load(uri).count())

    from pyspark.ml.torch.distributor import TorchDistributor

    for attempt in ("first", "second"):
        timed(f"TorchDistributor(num_processes=2), a no-op function on 2 Spark tasks ({attempt})",
              lambda: TorchDistributor(num_processes=2, local_mode=False, use_gpu=False).run(_rank_noop))
    timed("TorchDistributor(num_processes=2, local_mode=True), the same on the driver",
          lambda: TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(_rank_noop))
    spark.stop()
    print("FLOORS " + json.dumps(timings), flush=True)


def _torch_imports() -> float:
    """Two processes side by side that import torch: the floor under any two-rank run."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", "import torch"]) for _ in range(2)]
    for proc in procs:
        proc.wait()
    return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return

    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rounds: list[dict[str, float]] = []
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}:{REPO / 'bench'}"}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="lakeloop-bench-floors-") as work:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", work], env=env,
                                  capture_output=True, text=True, cwd=REPO)
            wall = time.perf_counter() - started
        line = next((x for x in proc.stdout.splitlines() if x.startswith("FLOORS ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"the timed process failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        timings = json.loads(line.removeprefix("FLOORS "))
        timings["the whole process, start to exit"] = round(wall, 3)
        timings["bare: two processes that import torch, side by side"] = _torch_imports()
        rounds.append(timings)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| fixed cost (fresh process, local[2]) | " + " | ".join(f"round {i + 1} (s)" for i in range(len(rounds)))
          + " |")
    print("| --- |" + " ---: |" * len(rounds))
    for name in rounds[0]:
        print(f"| {name} | " + " | ".join(f"{r[name]:.2f}" for r in rounds) + " |")


if __name__ == "__main__":
    main()

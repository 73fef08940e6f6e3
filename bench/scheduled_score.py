"""Benchmark: a small scheduled scoring run — a few hundred new rows over a large scored table.

    PYTHONPATH=lib:dev ./.venv/bin/python bench/scheduled_score.py [--rows 100000] [--new 500]

Builds a lake with a ``silver.frames`` table of ``--rows`` synthetic 32x32 pixel rows and a
LeNet-5 (random weights: the speed is the point) in the registry, scores it all once, then
appends ``--new`` rows at a time and times what a scheduled run costs:

* the batch ``score`` (anti-join of the input against gold.predictions) and ``score --stream
  --trigger available_now`` (the stream's checkpoint already past the old rows), each called
  in this process's warm SparkSession, with the run report's own breakdown (``durations_s``);
* the same with nothing new;
* each as the whole job a scheduler starts: ``./spark-submit.sh score [--stream]`` (JVM, session,
  job, report), wall time of the process;
* the bare floor: a PyTorch loop in this process that loads the same weights and scores the same
  new rows (no Spark, no Delta).

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

MODEL = "bench_lenet"
TABLE = "silver.frames"
CLASSES = [str(i) for i in range(10)]


def frames(start: int, n: int):
    """``n`` rows (image_id, pixels, label) from row ``start`` on: random 32x32 grey pixels."""
    import pandas as pd

    rng = np.random.default_rng(start)
    pixels = rng.integers(0, 256, size=(n, 32 * 32), dtype=np.uint8)
    return pd.DataFrame({"image_id": [f"frame-{i:08d}" for i in range(start, start + n)],
                         "pixels": [row.tobytes() for row in pixels],
                         "label": [CLASSES[i % 10] for i in range(start, start + n)]})


def append(spark, uri: str, start: int, n: int, files: int = 1) -> None:
    spark.createDataFrame(frames(start, n), "image_id string, pixels binary, label string") \
        .repartition(files).write.format("delta").mode("append").save(uri)


def publish(profile):
    import torch

    from lakeloop.models import ModelSpec, build_model, state_dict_bytes
    from lakeloop.preprocess import PreprocessSpec
    from lakeloop.registry import Registry

    spec = PreprocessSpec(height=32, width=32, channels=1, resize="pad", mean=(0.5,), std=(0.5,))
    torch.manual_seed(0)
    model = build_model("lenet5", ModelSpec(num_outputs=10, input_shape=(1, 32, 32))).eval()
    metadata = {"architecture": "lenet5", "classes": CLASSES, "preprocess": json.loads(spec.to_json()),
                "input_shape": [1, 32, 32], "metrics": {}, "features": {}, "training": {"seed": 0},
                "code_version": "bench", "torch_version": torch.__version__}
    return Registry.for_profile(profile).publish(MODEL, state_dict_bytes(model), metadata), spec


def bare_loop(profile, version, spec, rows) -> float:
    """Load the weights and score ``rows`` in this process: the floor of any scoring run."""
    import torch

    from lakeloop.models import load_model
    from lakeloop.preprocess import pixels_to_tensor
    from lakeloop.registry import Registry

    started = time.perf_counter()
    model, _ = load_model(Registry.for_profile(profile), version)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(pixels_to_tensor(rows["pixels"].tolist(), spec))), dim=1)
        probs.argmax(dim=1).numpy()
    return time.perf_counter() - started


def where(report, top: int = 4) -> str:
    steps = sorted(((k, v) for k, v in report.durations_s.items() if k != "total"), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:.1f}" for k, v in steps[:top])


def submit(lake: Path, stream: bool) -> tuple[float, str]:
    cmd = [str(REPO / "spark-submit.sh"), "--profile", "local", "--set", f"lake_root=file:{lake}",
           "--set", f"score.input={TABLE}", "--set", f"score.model={MODEL}", "--set", "features.join_table=null",
           "--set", "observe.tensorboard=false", "score", *(["--stream"] if stream else [])]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "lib")})
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    newest = max((lake / "_reports" / "score").glob("*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(newest.read_text())
    inside = report["durations_s"].get("total", 0.0)
    steps = sorted(((k, v) for k, v in report["durations_s"].items() if k != "total"), key=lambda kv: -kv[1])[:3]
    return elapsed, (f"job {inside:.1f} ({', '.join(f'{k} {v:.1f}' for k, v in steps)}); JVM, session and "
                     f"report {elapsed - inside:.1f}; scored {report['counts'].get('scored', 0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the key ratios to this file (bench/suite.py reads it)")
    args = parser.parse_args()

    from lakeloop.config import load_profile
    from lakeloop.io import delta
    from lakeloop.layout import LakeLayout
    from lakeloop.report import RunReport
    from lakeloop.runtime.session import build_session
    from lakeloop.scoring import score_table
    from lakeloop.scoring.stream import score_stream

    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-scheduled-"))
    lake = work / "lake"
    profile = load_profile("local", [("lake_root", f"file:{lake}"), ("spark.master", "local[2]"),
                                     ("score.input", TABLE), ("score.model", MODEL), ("features.join_table", None),
                                     ("observe.tensorboard", False)])
    spark = build_session(profile, app_name="bench-scheduled-score")
    uri = LakeLayout(profile.lake_root).resolve_table(TABLE)
    append(spark, uri, 0, args.rows, files=8)
    version, spec = publish(profile)
    t0 = time.perf_counter()
    full = score_table(spark, profile, RunReport("score", "full"))
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_stream(spark, profile, RunReport("score", "stream-full"))  # the stream's checkpoint past the old rows
    t_stream_full = time.perf_counter() - t0
    gold_rows = delta.read_table(spark, LakeLayout(profile.lake_root).predictions).count()
    print(f"scored the {args.rows:,} rows: batch {t_full:.1f} s ({full.counts['scored']:,} rows), stream "
          f"{t_stream_full:.1f} s; gold.predictions holds {gold_rows:,} rows", flush=True)

    results = []
    start = args.rows
    runs = {"score --stream": lambda r: score_stream(spark, profile, r),
            "batch score": lambda r: score_table(spark, profile, r)}
    # The stream first: rows the batch run scored would be new to the stream but already in gold.
    for name, run in runs.items():
        append(spark, uri, start, args.new)
        start += args.new
        for new in (args.new, 0):
            t0 = time.perf_counter()
            report = run(RunReport("score", f"{name}-{new}"))
            results.append((f"{name}, warm session" + ("" if new else ", nothing new"), new,
                            time.perf_counter() - t0, report.counts.get("scored", 0), where(report)))
    for name, stream in (("./spark-submit.sh score --stream", True), ("./spark-submit.sh score", False)):
        # A fresh process per run, as a scheduler starts one.
        append(spark, uri, start, args.new)
        start += args.new
        for new in (args.new, 0):
            seconds, breakdown = submit(lake, stream)
            results.append((f"{name} (whole job)" + ("" if new else ", nothing new"), new, seconds, None, breakdown))
    spark.stop()
    bare = bare_loop(profile, version, spec, frames(0, args.new))
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(f"| run ({args.rows:,}-row input, {gold_rows:,}-row gold.predictions) | new rows | wall s | scored | "
          f"bare PyTorch on the new rows ÷ run | where the time goes (s) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, new, seconds, scored, breakdown in results:
        ratio = f"{bare / seconds:.3f}x" if new else "–"
        print(f"| {name} | {new} | {seconds:.1f} | {'' if scored is None else scored} | {ratio} | {breakdown} |")
    print(f"\nbare PyTorch: load the weights and score {args.new} rows in {bare:.3f} s")
    if args.json:
        whole = {(name, new): seconds for name, new, seconds, _, _ in results}
        job, batch = "./spark-submit.sh score --stream (whole job)", "./spark-submit.sh score (whole job)"
        args.json.write_text(json.dumps({"scheduled_new": whole[(job, args.new)],
                                         "scheduled_nothing": whole[(job + ", nothing new", 0)],
                                         "scheduled_batch_new": whole[(batch, args.new)],
                                         "scheduled_batch_nothing": whole[(batch + ", nothing new", 0)]}))


if __name__ == "__main__":
    main()

"""Benchmark: lakeloop's scoring UDF vs a bare PyTorch loop vs Spark's predict_batch_udf, same rows, same run.

    ./.venv/bin/python bench/score.py [--lenet-rows 100000] [--resnet-rows 2000]

For each model (LeNet-5 on 1x32x32, torchvision ResNet-18 with random weights on 3x64x64)
the same synthetic, pre-decoded rows are scored by:

(a) ``lakeloop.scoring.udf.score`` over a Parquet DataFrame of uint8 pixel bytes: the iterator
    pandas UDF, model cached per worker, one torch thread per task, local[2];
(b) a bare loop in this process over the same rows already turned into one float32 tensor,
    ``torch.set_num_threads(2)``: forward, softmax, argmax per batch, nothing else;
(b2) the same loop calling ``lakeloop.scoring.batch.score_batch`` on the pixel bytes (what each
    UDF batch runs: normalisation + forward + result frame), for where the time goes;
(c) Spark's ``pyspark.ml.functions.predict_batch_udf`` with the same model and batch size.
    It takes numeric tensors only (no binary), so its Parquet holds the same rows as
    ``array<float>``, already normalised: four times the bytes, no normalisation to do.

Each Spark variant gets a fresh SparkContext (same driver JVM, already warmed by a plain
Parquet scan of both inputs) and runs twice on one UDF instance: *cold* is its first pass,
paying what a small scheduled run pays (Python worker start-up, torch import, model read
and first use), *warm* the second, with the workers and their cached model reused.
Prints one markdown table of rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    label: str
    architecture: str
    channels: int
    size: int
    rows: int
    batch_size: int


def write_parquet(path: Path, column: str, arrow_array, files: int = 2) -> None:
    """``files`` Parquet files of one row group each: one file per core, the same split for every variant."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True)
    n = len(arrow_array)
    per = -(-n // files)
    for i in range(files):
        part = arrow_array.slice(i * per, per)
        table = pa.table({"id": pa.array(np.arange(i * per, i * per + len(part), dtype=np.int64)), column: part})
        pq.write_table(table, path / f"part-{i:03d}.parquet", row_group_size=len(part) or 1)


def synthetic_rows(case: Case, work: Path, spec) -> tuple[list[bytes], np.ndarray, str, str]:
    """The rows as pixel bytes, as one normalised float32 array, and as two Parquet folders."""
    import pyarrow as pa

    from lakeloop.preprocess import pixels_to_tensor

    rng = np.random.default_rng(0)
    flat = rng.integers(0, 256, size=(case.rows, case.channels * case.size * case.size), dtype=np.uint8)
    pixels = [row.tobytes() for row in flat]
    tensor = pixels_to_tensor(pixels, spec)
    binary_dir, floats_dir = work / f"{case.architecture}-pixels", work / f"{case.architecture}-floats"
    write_parquet(binary_dir, "pixels", pa.array(pixels, type=pa.binary()))
    values = pa.array(tensor.reshape(-1), type=pa.float32())
    width = tensor[0].size
    offsets = pa.array(np.arange(0, case.rows * width + 1, width, dtype=np.int32))
    write_parquet(floats_dir, "features", pa.ListArray.from_arrays(offsets, values))
    return pixels, tensor, f"file:{binary_dir}", f"file:{floats_dir}"


def publish(case: Case, root: str):
    import json

    import torch

    from lakeloop.models import ModelSpec, build_model, model_record, state_dict_bytes
    from lakeloop.preprocess import PreprocessSpec
    from lakeloop.registry import Registry

    spec = PreprocessSpec(case.size, case.size, case.channels, "pad", (0.5,) * case.channels, (0.5,) * case.channels)
    torch.manual_seed(0)
    model_spec = ModelSpec(num_outputs=10, input_shape=(case.channels, case.size, case.size),
                           class_names=tuple(str(i) for i in range(10)))
    model = build_model(case.architecture, model_spec)
    metadata = {"model": model_record(case.architecture, model_spec), "classes": [str(i) for i in range(10)],
                "preprocess": json.loads(spec.to_json()), "input_shape": [case.channels, case.size, case.size]}
    return Registry(root).publish(f"bench_{case.architecture}", state_dict_bytes(model), metadata), spec


def bare_loop(model, tensor: np.ndarray, batch_size: int) -> float:
    import torch

    x = torch.from_numpy(tensor)
    with torch.inference_mode():
        model(x[:batch_size])  # first-use allocations out of the timing, as a warm worker has them
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            probs = torch.softmax(model(x[i:i + batch_size]).double(), dim=1).numpy()
            probs.argmax(axis=1)
        return len(x) / (time.perf_counter() - start)


def score_batch_loop(model, metadata, pixels: list[bytes], batch_size: int) -> float:
    from lakeloop.scoring.batch import score_batch

    score_batch(model, metadata, pixels[:batch_size], "pixels", "cpu")
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        score_batch(model, metadata, pixels[i:i + batch_size], "pixels", "cpu")
    return len(pixels) / (time.perf_counter() - start)


def timed_pass(spark, df, column: str, rows: int, batch_size: int) -> float:
    """Rows/s of one full evaluation of the UDF (a sum over its output, so nothing is pruned)."""
    from pyspark.sql import functions as F

    from lakeloop.scoring.udf import arrow_batch_settings, scoped_conf

    with scoped_conf(spark, arrow_batch_settings(batch_size, 256 << 20)):
        start = time.perf_counter()
        total = df.agg(F.sum(F.col(column)), F.count(F.lit(1))).first()
        elapsed = time.perf_counter() - start
    assert total[1] == rows and total[0] is not None, total
    return rows / elapsed


def predict_batch_udf_for(registry, version, case: Case):
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

    def make_predict_fn():
        import torch

        from lakeloop.models import load_model

        torch.set_num_threads(1)
        model, _ = load_model(registry, version)

        def predict(inputs: np.ndarray):
            with torch.inference_mode():
                probs = torch.softmax(model(torch.from_numpy(inputs)).double(), dim=1).numpy()
            top = probs.argmax(axis=1)
            return {"label_index": top.astype(np.int32), "score": probs[np.arange(len(top)), top], "scores": probs}

        return predict

    schema = StructType([StructField("label_index", IntegerType()), StructField("score", DoubleType()),
                         StructField("scores", ArrayType(DoubleType()))])
    return predict_batch_udf(make_predict_fn, return_type=schema, batch_size=case.batch_size,
                             input_tensor_shapes=[[case.channels, case.size, case.size]])


def warm_jvm(spark, binary_uri: str, floats_uri: str) -> None:
    """Scan both inputs once in the JVM alone (no Python): class loading, JIT and the page cache
    are then the same for every variant."""
    spark.read.parquet(binary_uri).selectExpr("sum(length(pixels))").collect()
    spark.read.parquet(floats_uri).selectExpr("sum(size(features))").collect()


def run_case(new_session, case: Case, work: Path, root: str) -> dict[str, float]:
    """All variants for one model; ``new_session()`` stops the current SparkContext and starts a
    fresh one (new Python workers, empty model caches)."""
    import torch

    from lakeloop.models import load_model
    from lakeloop.registry import Registry
    from lakeloop.scoring.udf import score

    registry = Registry(root)
    version, spec = publish(case, root)
    t = time.perf_counter()
    pixels, tensor, binary_uri, floats_uri = synthetic_rows(case, work, spec)
    print(f"{case.label}: {case.rows:,} rows written in {time.perf_counter() - t:.1f}s", flush=True)
    out: dict[str, float] = {}

    model, metadata = load_model(registry, version)
    torch.set_num_threads(2)
    out["b"] = bare_loop(model, tensor, case.batch_size)
    out["b2"] = score_batch_loop(model, metadata, pixels, case.batch_size)
    print(f"  (b) bare {out['b']:,.0f} rows/s, (b2) score_batch loop {out['b2']:,.0f} rows/s", flush=True)
    del tensor, pixels

    warm_jvm(new_session(), binary_uri, floats_uri)
    spark = new_session()
    scored = score(spark.read.parquet(binary_uri), version, registry=registry, batch_size=case.batch_size,
                   torch_threads=1)
    out["a_cold"] = timed_pass(spark, scored, "prediction.score", case.rows, case.batch_size)
    out["a_warm"] = timed_pass(spark, scored, "prediction.score", case.rows, case.batch_size)
    print(f"  (a) lakeloop UDF cold {out['a_cold']:,.0f}, warm {out['a_warm']:,.0f} rows/s", flush=True)

    spark = new_session()
    udf = predict_batch_udf_for(registry, version, case)
    predicted = spark.read.parquet(floats_uri).select(udf("features").alias("prediction"))
    out["c_cold"] = timed_pass(spark, predicted, "prediction.score", case.rows, case.batch_size)
    out["c_warm"] = timed_pass(spark, predicted, "prediction.score", case.rows, case.batch_size)
    print(f"  (c) predict_batch_udf cold {out['c_cold']:,.0f}, warm {out['c_warm']:,.0f} rows/s", flush=True)
    return out


def main() -> None:
    from lakeloop.config import load_profile
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet-rows", type=int, default=100_000)
    parser.add_argument("--resnet-rows", type=int, default=5_000)
    parser.add_argument("--lenet-batch-size", type=int, default=512)
    parser.add_argument("--resnet-batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the key ratios to this file (bench/suite.py reads it)")
    args = parser.parse_args()

    cases = [
        Case("LeNet-5 1x32x32", "lenet5", 1, 32, args.lenet_rows, args.lenet_batch_size),
        Case("ResNet-18 3x64x64", "resnet18", 3, 64, args.resnet_rows, args.resnet_batch_size),
    ]
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-score-"))
    profile = load_profile("local", [("spark.master", "local[2]"), ("lake_root", f"file:{work / 'lake'}")])
    sessions = [build_session(profile, app_name="lakeloop-bench-score")]

    def new_session():
        sessions[-1].stop()
        sessions.append(build_session(profile, app_name="lakeloop-bench-score"))
        return sessions[-1]

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}", flush=True)
    results = []
    try:
        for case in cases:
            if case.rows:
                results.append((case, run_case(new_session, case, work, f"file:{work / 'lake' / 'models'}")))
    finally:
        sessions[-1].stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print()
    print("| model | rows | batch | (a) lakeloop UDF cold / warm | (b) bare PyTorch | (b2) score_batch loop "
          "| (c) predict_batch_udf cold / warm | (a)/(b) warm (cold) | (a)/(c) warm (cold) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, r in results:
        print(f"| {case.label} | {case.rows:,} | {case.batch_size} | {r['a_cold']:,.0f} / {r['a_warm']:,.0f} "
              f"| {r['b']:,.0f} | {r['b2']:,.0f} | {r['c_cold']:,.0f} / {r['c_warm']:,.0f} "
              f"| {r['a_warm'] / r['b']:.2f}x ({r['a_cold'] / r['b']:.2f}x) "
              f"| {r['a_warm'] / r['c_warm']:.2f}x ({r['a_cold'] / r['c_cold']:.2f}x) |")
    print("\nrows/s; local[2], one torch thread per Spark task; (b)/(b2) one process, torch.set_num_threads(2).")
    if args.json and results:
        case, r = results[0]
        args.json.write_text(json.dumps({"score_warm": r["a_warm"] / r["b"], "score_cold": r["a_cold"] / r["b"]}))


if __name__ == "__main__":
    main()

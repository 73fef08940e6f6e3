"""Benchmark: lakeloop's MLP on a table vs a scikit-learn baseline on the same split, side by side.

    PYTHONPATH=lib:dev ./.venv/bin/python bench/tables.py [--epochs 60]

For each table scikit-learn ships (nothing is downloaded) the rows are written as a CSV and
go through lakeloop's own jobs in one local Spark session: ``ingest_tables`` -> ``build_features``
(``features.table``) -> ``train`` (the built-in ``mlp``, TorchDistributor, 2 processes). The
baseline is fitted on exactly the rows lakeloop's split put in train (read back from
``silver.<table>_features``), with the same preparation (train-mean fill, standardising on the
train split), and measured on the same test rows:

* wine (178 rows, 3 cultivars) and breast cancer (569 rows, 2 classes): test accuracy and
  macro-F1 against ``LogisticRegression``;
* diabetes (442 rows, a disease-progression score): test R² and RMSE against ``Ridge``.

The test split of a small table is a few dozen rows (one wine row is 5 points of accuracy), so
each table runs under ``--split-seeds`` different ``features.split_seed`` values (default 3) and
the table ends with the mean over them. Prints one markdown table; the difference column is
lakeloop minus the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Dataset:
    name: str
    loader: str
    task: str


DATASETS = (Dataset("wine", "load_wine", "classification"),
            Dataset("breast_cancer", "load_breast_cancer", "classification"),
            Dataset("diabetes", "load_diabetes", "regression"))


def write_csv(dataset: Dataset, folder: Path) -> tuple[str, list[str], str]:
    """The table as ``id, f0..fN, target`` CSV; returns its URI, the feature columns, the schema."""
    import pandas as pd
    import sklearn.datasets

    data = getattr(sklearn.datasets, dataset.loader)()
    columns = [f"f{i}" for i in range(data.data.shape[1])]
    frame = pd.DataFrame(data.data, columns=columns)
    frame.insert(0, "id", np.arange(len(frame)))
    frame["target"] = data.target if dataset.task == "regression" else [f"class_{t}" for t in data.target]
    path = folder / f"{dataset.name}.csv"
    frame.to_csv(path, index=False)
    kind = "DOUBLE" if dataset.task == "regression" else "STRING"
    schema = ", ".join(["id INT", *[f"{c} DOUBLE" for c in columns], f"target {kind}"])
    return f"file:{path}", columns, schema


def run_lakeloop(spark, dataset: Dataset, root: Path, epochs: int, split_seed: str):
    """The jobs on one table; returns (profile, the test figures the registry recorded, seconds)."""
    from lakeloop.config import load_profile
    from lakeloop.features import build_features
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.registry import Registry
    from lakeloop.training.driver import train

    source, columns, schema = write_csv(dataset, root)
    profile = load_profile("local", [
        ("lake_root", f"file:{root}/lake"), ("spark.master", "local[2]"), ("features.split_seed", split_seed),
        ("ingest_tables.tables", {dataset.name: {"source": source, "format": "csv", "keys": ["id"], "schema": schema,
                                                 "options": {"header": "true"}}}),
        ("features.table", {"source": f"bronze.{dataset.name}", "key": "id", "target": "target", "numeric": columns}),
        ("features.training_set_files", 4), ("train.task", dataset.task), ("train.model", "mlp"),
        ("train.model_name", f"bench_{dataset.name}"), ("train.model_options", {"hidden": [32], "dropout": 0.1}),
        ("train.epochs", epochs), ("train.batch_size", 16), ("train.learning_rate", 0.01), ("train.augment", False),
    ])
    started = time.perf_counter()
    ingest_tables(spark, profile)
    build_features(spark, profile)
    version = train(spark, profile)
    seconds = time.perf_counter() - started
    return profile, Registry.for_profile(profile).read_metadata(version)["metrics"]["test"], seconds


def run_baseline(spark, profile, dataset: Dataset) -> tuple[dict[str, float], float]:
    """scikit-learn on lakeloop's own train rows, scored on its test rows."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score

    from lakeloop.tabular import table_features_uri

    rows = spark.read.format("delta").load(table_features_uri(profile)).toPandas()
    columns = list(profile.features.table.numeric)
    target = "target" if dataset.task == "regression" else "label"
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    started = time.perf_counter()
    mean, std = train[columns].mean(), train[columns].std(ddof=0).replace(0, 1)
    x_train = ((train[columns].fillna(mean) - mean) / std).to_numpy()
    x_test = ((test[columns].fillna(mean) - mean) / std).to_numpy()
    if dataset.task == "regression":
        model = Ridge(alpha=1.0).fit(x_train, train[target])
        predicted = model.predict(x_test)
        figures = {"r2": r2_score(test[target], predicted),
                   "rmse": float(np.sqrt(mean_squared_error(test[target], predicted)))}
    else:
        model = LogisticRegression(max_iter=5000).fit(x_train, train[target])
        predicted = model.predict(x_test)
        figures = {"accuracy": accuracy_score(test[target], predicted),
                   "macro_f1": f1_score(test[target], predicted, average="macro")}
    return figures, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from lakeloop.config import load_profile
    from lakeloop.runtime.session import build_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--split-seeds", type=int, default=3, help="splits per table (features.split_seed)")
    args = parser.parse_args(argv)
    spark = build_session(load_profile("local", [("spark.master", "local[2]")]), app_name="lakeloop-bench-tables")
    lines = ["| table | split seed | rows (train/test) | metric | lakeloop MLP | scikit-learn | lakeloop - baseline | "
             "lakeloop s (ingest+features+train) | baseline s (fit+predict) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    means = []
    with tempfile.TemporaryDirectory(prefix="lakeloop-bench-tables-") as tmp:
        for dataset in DATASETS:
            baseline = "Ridge" if dataset.task == "regression" else "LogisticRegression"
            figures: dict[str, list[tuple[float, float]]] = {}
            for seed in (f"bench-{i}" for i in range(args.split_seeds)):
                root = Path(tmp) / dataset.name / seed
                root.mkdir(parents=True)
                profile, ours, our_s = run_lakeloop(spark, dataset, root, args.epochs, seed)
                theirs, their_s = run_baseline(spark, profile, dataset)
                rows = spark.read.format("delta").load(profile.lake_root + f"/silver/{dataset.name}_features")
                counts = {r["split"]: r["count"] for r in rows.groupBy("split").count().collect()}
                for metric, value in theirs.items():
                    figures.setdefault(metric, []).append((ours[metric], value))
                    lines.append(f"| {dataset.name} | {seed} | {counts.get('train', 0)}/{counts.get('test', 0)} | "
                                 f"test {metric} | {ours[metric]:.4f} | {value:.4f} ({baseline}) | "
                                 f"{ours[metric] - value:+.4f} | {our_s:.1f} | {their_s:.2f} |")
                print(f"{dataset.name} {seed}: done in {our_s:.0f} s", file=sys.stderr, flush=True)
            for metric, pairs in figures.items():
                ours_mean, theirs_mean = (float(np.mean(side)) for side in zip(*pairs))
                means.append(f"| {dataset.name} | mean of {len(pairs)} | | test {metric} | {ours_mean:.4f} | "
                             f"{theirs_mean:.4f} ({baseline}) | {ours_mean - theirs_mean:+.4f} | | |")
    spark.stop()
    print("\n".join(lines + means))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

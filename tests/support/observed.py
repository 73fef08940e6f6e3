"""The demo pipeline run once in-process with every job's report kept: what the run-page,
notebook, evaluation and tracking tests look at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeloop.config import Profile, load_profile
from lakeloop.report import RunReport

OBSERVED_EPOCHS = 2
JOB_ORDER = ("ingest_images", "ingest_tables", "build_features", "train", "score", "evaluate")


@dataclass
class ObservedLake:
    profile: Profile
    root: Path
    reports: dict[str, dict[str, Any]]  # job -> its report, as the JSON holds it
    mlflow_uri: str


def profile_for(root: Path, *overrides) -> Profile:
    """The test profile on the demo raw zone under ``root``, with the digits table joined (scan_batch)."""
    return load_profile("test", [
        ("lake_root", f"file:{root}/lake"),
        ("ingest_images.source", f"file:{root}/raw/images"),
        ("ingest_tables.tables.digits_meta.source", f"file:{root}/raw/tables/digits_meta.csv"),
        ("features.training_set_files", 8),
        ("train.epochs", OBSERVED_EPOCHS),
        ("observe.mlflow_tracking_uri", f"sqlite:///{root}/mlflow.db"),
        ("quality.group_column", "scan_batch"),
        *overrides,
    ])


def run_observed_pipeline(spark, root: Path) -> ObservedLake:
    from lakeloop.evaluation import evaluate_model
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop.ingest.tables import ingest_tables
    from lakeloop.scoring import score_table
    from lakeloop.training.driver import train
    from lakeloop_dev.demo_data import write_demo_raw_zone

    write_demo_raw_zone(root / "raw")
    profile = profile_for(root)
    steps = {"ingest_images": ingest_images, "ingest_tables": ingest_tables, "build_features": build_features,
             "train": train, "score": score_table, "evaluate": evaluate_model}
    reports = {}
    for job in JOB_ORDER:
        report = RunReport.start(job)
        steps[job](spark, profile, report=report)
        reports[job] = report.finish().to_dict()
    return ObservedLake(profile, root, reports, profile.observe.mlflow_tracking_uri)

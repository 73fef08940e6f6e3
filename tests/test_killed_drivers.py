"""Killed drivers and concurrent runs, as whole spark-submit'ed jobs.

Killed: each batch job is SIGKILLed (driver, JVM and workers) three times in a row, at its first
file in the lake, just after its first commit and just after its last; a fourth run completes it.
Concurrent: two runs of a job start at once; each either finishes or is refused with Delta's commit
conflict named, and a rerun completes what was refused. Either way the lake must then hold what one
clean run leaves: the same rows in every table (no record lost, none twice), one committed model
version, a complete training set. One clean in-process run of the whole pipeline on small inputs
(the image zoo, a 40-row table) is the reference of every comparison."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lakeloop.config import load_profile
from lakeloop.features import build_features
from lakeloop.ingest.images import ingest_images
from lakeloop.ingest.tables import ingest_tables
from lakeloop.registry import Registry
from lakeloop.scoring import score_table
from lakeloop.training.driver import train
from support.imagefiles import ZOO_MAX_PIXELS, write_image_zoo_records
from support.kills import KILL_POINTS, run_killed
from support.pipeline import REPO, submit_command
from test_tables import SCHEMA, generated_rows, write_csv

pytestmark = [pytest.mark.fault, pytest.mark.slow]

JOBS = {"ingest_images": ingest_images, "ingest_tables": ingest_tables, "build_features": build_features,
        "train": train, "score": score_table}
# Columns that differ between two correct runs: when and by which run a row was written.
_RUN_COLUMNS = {"run_id", "_run_id"}


def _settings(root: Path) -> list[tuple[str, object]]:
    csv = write_csv(root / "tables", generated_rows().head(40))
    return [("ingest_images.source", f"file:{root}/raw"), ("ingest_images.max_pixels", ZOO_MAX_PIXELS),
            ("ingest_tables.tables", {"measurements": {"source": csv, "format": "csv", "keys": ["id"],
                                                       "schema": SCHEMA, "options": {"header": "true"}}}),
            ("features.join_table", None), ("features.training_set_files", 2), ("train.epochs", 1),
            ("score.input", "images")]


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory):
    """Every job run once, in process, without faults; the lake as it is after each job."""
    root = tmp_path_factory.mktemp("killed-drivers")
    write_image_zoo_records(root / "raw")
    settings = _settings(root)
    lake = root / "clean"
    profile = load_profile("test", [("lake_root", f"file:{lake}"), *settings])
    after = {}
    for job, run in JOBS.items():
        run(spark, profile)
        after[job] = root / f"after-{job}"
        shutil.copytree(lake, after[job])
    return {"settings": settings, "after": after}


def _copy(source: Path | None, target: Path) -> None:
    if source is None:
        target.mkdir()
    else:
        shutil.copytree(source, target, copy_function=shutil.copyfile)


def _plain(value):
    """A cell as a comparable, hashable value: bytes by digest, floats rounded, arrays as tuples."""
    if isinstance(value, (bytes, bytearray)):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else round(float(value), 6)
    return value.item() if isinstance(value, np.generic) else value


def _table_rows(path: Path, delta: bool) -> Counter:
    from deltalake import DeltaTable
    from pyarrow import parquet

    table = DeltaTable(str(path)).to_pyarrow_table() if delta else parquet.read_table(path)
    keep = [c for c in table.column_names if c not in _RUN_COLUMNS and not c.endswith("_at")]
    return Counter(tuple(_plain(v) for v in row.values()) for row in table.select(keep).to_pylist())


def _tables(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every Delta table of the lake and every training-set split (plain Parquet), by relative path."""
    found = {str(log.parent.relative_to(root)): (log.parent, True) for log in root.rglob("_delta_log")}
    found.update({str(s.parent.relative_to(root)): (s.parent, False) for s in root.glob("_training_sets/*/*/_SUCCESS")})
    return found


def _compare(clean_lake: Path, lake: Path) -> tuple[int, int, int]:
    """Rows of the clean lake checked, lost (in the clean lake, not in ours) and extra (ours twice or more)."""
    ours, theirs = _tables(lake), _tables(clean_lake)
    assert sorted(ours) == sorted(theirs), "the killed and rerun lake has other tables than the clean run's"
    checked = lost = extra = 0
    for name, (path, delta) in theirs.items():
        expected, found = _table_rows(path, delta), _table_rows(ours[name][0], delta)
        checked += sum(expected.values())
        lost += sum((expected - found).values())
        extra += sum((found - expected).values())
    return checked, lost, extra


def _registry(lake: Path) -> dict:
    """Each model's committed versions, uncommitted leftovers and the digests of its files (the
    metadata aside: it names the run and its timings)."""
    registry = Registry.for_profile(load_profile("test", [("lake_root", f"file:{lake}")]))
    models = sorted(p.name for p in (lake / "models").iterdir()) if (lake / "models").is_dir() else []
    return {name: {"versions": registry.list_versions(name),
                   "folders": sorted(p.name for p in (lake / "models" / name).iterdir() if p.name.isdigit()),
                   "files": [{file: facts for file, facts in json.loads(
                       (lake / "models" / name / str(v) / "_COMMITTED").read_text())["files"].items()
                              if file != "metadata.json"} for v in registry.list_versions(name)]}
            for name in models}


def _start(lake: Path, job: str, settings) -> list[str]:
    return submit_command("test", job, sets=[f"lake_root=file:{lake}",
                                             *(f"{key}={json.dumps(value)}" for key, value in settings)])


def _lake_before(clean, job: str, lake: Path) -> None:
    jobs = list(JOBS)
    _copy(clean["after"][jobs[jobs.index(job) - 1]] if jobs.index(job) else None, lake)


@pytest.mark.parametrize("job", ["build_features", "score"])
def test_two_runs_of_a_job_at_once_leave_one_clean_runs_lake_after_a_rerun_of_any_refused(job, clean, tmp_path,
                                                                                         reliability):
    lake = tmp_path / "lake"
    _lake_before(clean, job, lake)
    cmd = _start(lake, job, clean["settings"])
    runs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [(run.communicate(timeout=600)[0], run.returncode) for run in runs]

    refused = [out for out, code in outputs if code != 0]
    for out in refused:  # a loser names the conflict and what to do, never a bare stack trace
        assert "ConcurrentWriteConflict: another run committed to" in out and "Run the job again" in out, out[-3000:]
    if refused:
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=600)
    checked, lost, extra = _compare(clean["after"][job], lake)
    reliability.record(f"two runs at once ({len(refused)} of 2 refused with the conflict named"
                       f"{', then rerun' if refused else ''})", job, "both (and any rerun) vs one clean run",
                       checked, lost, extra)
    print(f"\n{job} twice at once: {len(refused)} refused; rows checked {checked}, lost {lost}, extra {extra}")
    assert (lost, extra) == (0, 0)


def test_ingestion_while_scoring_reads_bronze_adds_the_new_files_and_the_next_score_run_scores_them(
        clean, tmp_path, reliability):
    from support.imagefiles import rgb_png

    lake = tmp_path / "lake"
    _lake_before(clean, "score", lake)  # features built and a model trained: ready to score
    raw = Path(dict(clean["settings"])["ingest_images.source"].removeprefix("file:"))
    new = [raw / "cat" / f"arrived {i}.png" for i in range(10)]
    try:
        for i, path in enumerate(new):
            path.write_bytes(rgb_png(24, 24, seed=100 + i))
        runs = [subprocess.Popen(_start(lake, job, clean["settings"]), cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for job in ("ingest_images", "score")]
        for run in runs:
            output = run.communicate(timeout=600)[0]
            assert run.returncode == 0, output[-3000:]
    finally:
        for path in new:  # the shared source stays as the clean run read it
            path.unlink(missing_ok=True)
    # The scoring run read bronze before or after the ingestion's commit; its next run scores the rest.
    subprocess.run(_start(lake, "score", clean["settings"]), cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT, timeout=600)

    checked = lost = added = 0
    for name, (path, is_delta) in _tables(clean["after"]["score"]).items():
        expected, found = _table_rows(path, is_delta), _table_rows(lake / name, is_delta)
        checked += sum(expected.values())
        lost += sum((expected - found).values())
        added += sum((found - expected).values())
    reliability.record("ingest_images (10 new files) while score reads bronze; the next score run",
                       "ingest_images + score", "both at once + a rerun vs one clean run (+ the 10 files)",
                       checked + 3 * len(new), lost + max(0, 3 * len(new) - added), max(0, added - 3 * len(new)))
    assert lost == 0
    assert added == 3 * len(new), "bronze, the ledger and gold should each gain a row per new file, nothing else"


@pytest.mark.parametrize("job", list(JOBS))
def test_a_driver_killed_at_its_first_write_first_commit_and_last_commit_then_rerun_leaves_a_clean_runs_lake(
        job, clean, tmp_path, reliability):
    lake = tmp_path / "lake"
    _lake_before(clean, job, lake)
    cmd = _start(lake, job, clean["settings"])

    kills = [run_killed(cmd, lake, job, point) for point in KILL_POINTS]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=600)

    checked, lost, extra = _compare(clean["after"][job], lake)
    reliability.record("SIGKILL of the spark-submit'ed driver " + "; then ".join(k.describe() for k in kills),
                       job, "3 killed runs + 1 rerun vs one clean run", checked, lost, extra)
    print(f"\n{job}: " + "; ".join(k.describe() for k in kills) + f"; rows checked {checked}, lost {lost}, "
          f"extra {extra}")
    assert (lost, extra) == (0, 0)
    assert _registry(lake) == _registry(clean["after"][job])  # no orphan version, the same weights
    assert not list(lake.glob("_checkpoints/*/*/epoch-*")), "a published training run left its checkpoints"


def test_two_train_runs_of_one_model_at_once_publish_two_versions_that_each_load_with_their_own_run_s_weights(
        clean, tmp_path, reliability):
    from lakeloop.models.weights import load_model

    lake = tmp_path / "lake"
    _copy(clean["after"]["train"], lake)  # version 1 published; its training set written, reused by both runs
    (name, before), = _registry(lake).items()
    seeds = (11, 12)  # a scheduled run and a manual one: other settings, so two versions are due
    runs = [subprocess.Popen(_start(lake, "train", [*clean["settings"], ("train.seed", seed)]), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in seeds]
    outputs = [(run.communicate(timeout=900)[0], run.returncode) for run in runs]

    refused = [seed for seed, (out, code) in zip(seeds, outputs) if code != 0]
    for seed, (out, code) in zip(seeds, outputs):  # a loser names the conflict and says to rerun
        assert code == 0 or ("ConcurrentWriteConflict" in out and "Run the job again" in out), out[-3000:]
    for seed in refused:
        subprocess.run(_start(lake, "train", [*clean["settings"], ("train.seed", seed)]), cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=900)
    registry = Registry.for_profile(load_profile("test", [("lake_root", f"file:{lake}")]))
    new = [v for v in registry.list_versions(name) if v not in before["versions"]]
    seen = Counter(registry.read_metadata(registry.resolve(name, v))["training"]["seed"] for v in new)
    for number in new:  # each loads, its files match the checksums its publisher recorded
        model, _ = load_model(registry, registry.resolve(name, number))
        assert sum(p.numel() for p in model.parameters()) > 0
    lost, duplicated = sum(1 for s in seeds if not seen[s]), sum(c - 1 for c in seen.values() if c > 1)
    reliability.record(f"two train runs of one model at once, other seeds ({len(refused)} of 2 refused with the "
                       f"conflict named{', then rerun' if refused else ''})", "train",
                       "versions published vs runs started", len(seeds), lost, duplicated)
    print(f"\ntrain twice at once: {len(refused)} refused; versions {registry.list_versions(name)}, seeds {dict(seen)}")
    assert sorted(seen) == sorted(seeds) and (lost, duplicated) == (0, 0)
    assert registry.list_versions(name) == [*before["versions"], *sorted(new)] and len(new) == 2
    assert registry.leftover_versions(name) == [] and registry.resolve(name).version == max(new)
    assert not list((lake / "models" / name / "_staging").glob("*/*")), "a published run left its staged weights"

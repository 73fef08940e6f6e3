"""Fixtures: one local SparkSession (Delta on) for the whole test session, a fresh lake per
test, and the shared demo lake. Helpers live in ``tests/support/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.config import REPO_ROOT, Profile, load_profile
from support.durations import Durations
from support.lakes import fingerprint, make_read_only
from support.reliability import ReliabilityFigures

_FIGURES = ReliabilityFigures()
_DURATIONS = Durations()


def pytest_runtest_logreport(report) -> None:
    _DURATIONS.add(report.nodeid, report.when, report.duration)


# The quick tier (./dev/test.sh --quick, marker "quick"): every test that needs no SparkSession,
# no server and no spark-submit (test_architecture imports every module of the package), plus the
# tests marked quick by hand that run each Spark step once on small data.
_NOT_QUICK = ("slow", "cluster", "hdfs", "s3", "kafka", "browser", "fault")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.get_closest_marker("quick") is None and "spark" not in item.fixturenames and \
                not any(item.get_closest_marker(m) for m in _NOT_QUICK):
            item.add_marker(pytest.mark.quick)


@pytest.fixture(scope="session")
def reliability() -> ReliabilityFigures:
    """Where fault tests record what they injected and what they found, and bad-input tests what
    they tried and how it ended (printed at the end)."""
    return _FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if _DURATIONS.seconds:
        _DURATIONS.write(REPO_ROOT / "build" / "test-durations.tsv")
        terminalreporter.write_sep("=", "where the time went, per test file (every test: build/test-durations.tsv)")
        terminalreporter.write_line(_DURATIONS.table())
    if _FIGURES.faults or _FIGURES.bad_inputs:
        _FIGURES.write(REPO_ROOT / "build" / "reliability.json")
        terminalreporter.write_sep("=", "reliability figures (build/reliability.json)")
        terminalreporter.write_line(_FIGURES.table())


@pytest.fixture(scope="session")
def base_profile() -> Profile:
    return load_profile("test")


# The in-process session lives for the whole run: the JVM's default compilers (C1 then C2) and
# collector pay off there; the jobs the suite spark-submits take conf/test.yaml's (C1 and the serial
# collector, as local jobs do).
IN_PROCESS_JVM = "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:{repo}/conf/log4j2.properties"


@pytest.fixture(scope="session")
def spark():
    from lakeloop.runtime.session import build_session

    session = build_session(load_profile("test", spark_conf=[IN_PROCESS_JVM]), app_name="lakeloop-tests")
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """URI of an empty lake folder for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return f"file:{root}"


@pytest.fixture(scope="session")
def digits_lake(spark, tmp_path_factory) -> Profile:
    """A lake with the demo digits ingested and features built, shared by the whole session.

    Read-only: its files lose their write permission, and the session fails at the end if
    anything in it changed. A test that writes copies it first with
    :func:`support.lakes.copy_lake`.
    """
    from lakeloop.features import build_features
    from lakeloop.ingest.images import ingest_images
    from lakeloop_dev.demo_data import write_demo_raw_zone

    root = tmp_path_factory.mktemp("digits")
    write_demo_raw_zone(root / "raw")
    profile = load_profile("test", [
        ("lake_root", f"file:{root}/lake"),
        ("ingest_images.source", f"file:{root}/raw/images"),
        ("features.join_table", None),
        ("features.training_set_files", 8),
    ])
    ingest_images(spark, profile)
    build_features(spark, profile)
    make_read_only(root)
    before = fingerprint(root)
    yield profile
    assert fingerprint(root) == before, (
        f"a test wrote into the shared demo lake {root}; copy it with support.lakes.copy_lake first")


@pytest.fixture(scope="session")
def observed_lake(spark, tmp_path_factory):
    """The demo pipeline (both ingestions, features with scan_batch joined, 2 epochs of training
    with TensorBoard and MLflow, scoring, evaluation) run once, with every job's report."""
    from support.observed import run_observed_pipeline

    return run_observed_pipeline(spark, tmp_path_factory.mktemp("observed"))

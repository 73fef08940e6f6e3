"""One local SparkSession (Delta on) for the whole test session; a fresh lake per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.config import Profile, load_profile


@pytest.fixture(scope="session")
def base_profile() -> Profile:
    return load_profile("test")


@pytest.fixture(scope="session")
def spark(base_profile: Profile):
    from lakeloop.session import build_session

    session = build_session(base_profile, app_name="lakeloop-tests")
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """URI of an empty lake folder for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return f"file:{root}"


def make_profile(lake: str, *overrides: str | tuple, name: str = "test") -> Profile:
    """The test profile with its lake at ``lake`` plus overrides (``key=value`` or pairs)."""
    return load_profile(name, [("lake_root", lake), *overrides])


@pytest.fixture(scope="session")
def digits_lake(spark, tmp_path_factory) -> Profile:
    """A lake with the demo digits ingested and features built (shared, treat as read-only:
    copy it with :func:`copy_lake` before changing it)."""
    from lakeloop.demo import write_demo_raw_zone
    from lakeloop.features import build_features
    from lakeloop.ingest_images import ingest_images

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
    return profile


def copy_lake(profile: Profile, target: Path, *overrides) -> Profile:
    """A private copy of a test lake, with its profile pointing at it."""
    import shutil

    source = Path(profile.lake_root.removeprefix("file:"))
    shutil.copytree(source, target)
    return load_profile("test", [
        ("lake_root", f"file:{target}"),
        ("ingest_images.source", profile.ingest_images.source),
        ("features.join_table", None),
        ("features.training_set_files", profile.features.training_set_files),
        *overrides,
    ])

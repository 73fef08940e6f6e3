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

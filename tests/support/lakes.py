"""Test lakes: the test profile pointed at a lake folder, private copies of the shared demo
lake, and the fingerprint that proves the shared one was not written to."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from lakeloop.config import Profile, load_profile


def make_profile(lake: str, *overrides: str | tuple, name: str = "test") -> Profile:
    """The test profile with its lake at ``lake`` plus overrides (``key=value`` or pairs)."""
    return load_profile(name, [("lake_root", lake), *overrides])


def copy_lake(profile: Profile, target: Path, *overrides) -> Profile:
    """A private, writable copy of a test lake, with its profile pointing at it."""
    source = Path(profile.lake_root.removeprefix("file:"))
    shutil.copytree(source, target, copy_function=shutil.copyfile)  # plain copies: no read-only bits
    for folder, _, names in os.walk(target):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    return load_profile("test", [
        ("lake_root", f"file:{target}"),
        ("ingest_images.source", profile.ingest_images.source),
        ("features.join_table", None),
        ("features.training_set_files", profile.features.training_set_files),
        *overrides,
    ])


def make_read_only(root: Path) -> None:
    """Take write permission away from every file and folder under ``root``."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        os.chmod(folder, os.stat(folder).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def fingerprint(root: Path) -> str:
    """A hash of every path, size and content under ``root``: equal fingerprints, same lake.

    Read-only permissions do not stop a test that runs as root; comparing fingerprints
    afterwards does."""
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def layout(profile: Profile):
    """The profile's lake layout (every table and folder URI of the lake)."""
    from lakeloop.layout import LakeLayout

    return LakeLayout(profile.lake_root)

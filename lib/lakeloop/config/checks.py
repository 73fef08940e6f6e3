"""Check helpers the sections share: a location's URI scheme, a number's lower bound, a batch's
byte size, a streaming trigger. Each raises a :class:`~lakeloop.errors.ConfigError` naming the setting."""

from __future__ import annotations

import re

from lakeloop.errors import ConfigError
from lakeloop.layout import LAKE_SCHEMES, VOLUMES_ROOT, safe_uri


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def require_uri(value: str, setting: str) -> str:
    """Return ``value`` if it carries a URI scheme lakeloop reaches (:data:`LAKE_SCHEMES`), else raise a
    ConfigError saying what to write."""
    if isinstance(value, str) and (value == VOLUMES_ROOT or value.startswith(VOLUMES_ROOT + "/")):
        return value.rstrip("/")  # a Unity Catalog volume: a local path on Databricks
    if not isinstance(value, str) or not _SCHEME.match(value) or re.match(r"^[a-zA-Z]:[\\/]", value):
        raise ConfigError(
            f"{setting} = {value!r} has no URI scheme. Write 'file:/absolute/path' for a local "
            f"folder, 'hdfs://namenode:8020/path' for HDFS, 's3a://bucket/path' for S3, or "
            f"'/Volumes/<catalog>/<schema>/<volume>/path' for a Unity Catalog volume."
        )
    scheme = value.partition(":")[0].lower()
    if scheme not in LAKE_SCHEMES:
        # Spark might list such a folder, but the training ranks, scoring workers and the registry
        # reach storage without Spark (lakeloop.io.lakefs): the run would fail halfway.
        hint = (f" For S3 write {'s3a' + safe_uri(value)[len(scheme):]!r}: lakeloop reaches S3 through Hadoop's s3a "
                f"connector." if scheme == "s3n" else "")
        raise ConfigError(
            f"{setting} = {safe_uri(value)!r}: lakeloop cannot reach scheme '{scheme}:'; the schemes it "
            f"supports are {', '.join(s + ':' for s in LAKE_SCHEMES)}.{hint or ' Copy the data to one of them.'}"
        )
    return value.rstrip("/") if value not in ("file:/",) else value


def at_least(value: int, minimum: int, setting: str, example: str) -> None:
    if value < minimum:
        raise ConfigError(f"{setting} = {value!r} must be at least {minimum}, e.g. {example}")


def check_batch_bytes(value: int, setting: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 << 20 <= value < (1 << 31) - 1:
        raise ConfigError(f"{setting} = {value!r} must be between 1 MiB (1048576) and 2 GiB - 2 (2147483646, Spark's "
                          f"Arrow limit), e.g. {example}")


# A processing-time trigger as Spark parses it: a count and a unit.
TRIGGER_INTERVAL = re.compile(r"^[1-9][0-9]* (second|minute|hour|day)s?$")


def check_trigger(trigger: str, setting: str) -> None:
    if trigger != "available_now" and not TRIGGER_INTERVAL.match(trigger):
        raise ConfigError(
            f"{setting} = {trigger!r} is neither available_now (take what is new, then stop) nor "
            f"an interval such as '30 seconds', '5 minutes' or '1 hour' (a micro-batch every interval)"
        )

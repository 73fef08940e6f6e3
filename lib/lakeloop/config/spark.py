"""``spark.*`` and ``jvm.*``: how a job reaches Spark, and the JVM packages it needs. No checks
beyond their types: Spark judges its own settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SparkSettings:
    """How to reach Spark: the master URL and Spark/Hadoop settings (``spark.*`` keys)."""

    master: str | None = "local[*]"
    app_name: str = "lakeloop"
    # A null value removes a setting inherited from the profile this one extends.
    conf: dict[str, str | None] = field(default_factory=dict)
    log_level: str = "WARN"


@dataclass(frozen=True)
class JvmSettings:
    """Maven coordinates Spark needs beyond its own jars, and where they are cached.

    ``packages`` are resolved by ``lakeloop jars resolve`` (run by the setup)
    into ``cache_dir`` and handed to Spark as ``spark.jars``; nothing is fetched when a
    job runs. Leave ``packages`` empty where the platform provides them (Databricks).
    """

    packages: tuple[str, ...] = ()
    cache_dir: str = "~/.cache/lakeloop/jars"
    # A local driver JVM maps the classes a job loads from an archive written once by the setup
    # (lakeloop jars archive) instead of reading them from the jars: about 4 s
    # less a job. No archive yet, or one the JVM refuses (another Java): it starts as before.
    class_archive: bool = False

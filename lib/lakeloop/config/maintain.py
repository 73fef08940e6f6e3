"""``maintain.*``: lake housekeeping (OPTIMIZE, VACUUM, old training sets and checkpoints), and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from lakeloop.config.checks import at_least
from lakeloop.errors import ConfigError


@dataclass(frozen=True)
class MaintainConfig:
    """Lake housekeeping (``lakeloop maintain``, jobs/maintain.py); see docs/jobs/maintain.md."""

    optimize: bool = True
    vacuum_retention_hours: float = 168.0  # Delta's own default and safety limit: 7 days
    allow_short_retention: bool = False  # a retention under 168 hours needs this
    keep_training_sets: int = 2  # per recipe (preprocessing or table settings, file count): the newest by features version
    # A training set a training run wrote or took up within this many hours is never deleted: the run may
    # still read it. Longer than the longest training run.
    training_set_lease_hours: float = 24.0
    checkpoint_max_age_hours: float = 168.0  # a killed run's checkpoints, not resumed since


# Delta refuses a VACUUM retention under this unless its safety check is turned off.
DELTA_SAFE_RETENTION_HOURS = 168.0


def check_maintain(cfg: MaintainConfig) -> None:
    if cfg.vacuum_retention_hours < 0 or cfg.checkpoint_max_age_hours < 0:
        raise ConfigError("maintain.vacuum_retention_hours and maintain.checkpoint_max_age_hours must be 0 or more, "
                          "e.g. 168")
    if cfg.training_set_lease_hours < 0:
        raise ConfigError(f"maintain.training_set_lease_hours = {cfg.training_set_lease_hours:g} must be 0 or more "
                          f"(longer than the longest training run), e.g. 24")
    if cfg.vacuum_retention_hours < DELTA_SAFE_RETENTION_HOURS and not cfg.allow_short_retention:
        raise ConfigError(
            f"maintain.vacuum_retention_hours = {cfg.vacuum_retention_hours:g} is under Delta's safety limit of "
            f"{DELTA_SAFE_RETENTION_HOURS:g} hours: a job still reading or writing an older table version could "
            f"lose its files. Keep 168 or more, or set maintain.allow_short_retention: true when no job runs "
            f"during maintenance"
        )
    at_least(cfg.keep_training_sets, 1, "maintain.keep_training_sets", "2")

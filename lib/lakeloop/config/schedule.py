"""``schedule.*``: when scheduled scoring runs (Databricks bundle, Airflow DAG) and who hears of a
failure, and its checks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lakeloop.errors import ConfigError


@dataclass(frozen=True)
class ScheduleConfig:
    """Scheduled scoring: when the score job runs (Databricks bundle, Airflow DAG), who hears of a failure.

    See docs/jobs/score.md#scheduled-scoring-schedule. Unset ``cron`` and ``file_arrival_url``: no schedule is
    generated.
    """

    cron: str | None = None  # five fields, minute hour day month weekday, e.g. "*/15 * * * *"
    timezone: str = "UTC"  # a Java / IANA time zone id, e.g. Europe/Berlin
    file_arrival_url: str | None = None  # Databricks only: run score when new files arrive here (instead of cron)
    stream: bool = True  # the scheduled run is score --stream: only the input files it has not seen yet
    paused: bool = False  # generate the schedule paused (deploy first, unpause when ready)
    on_failure_emails: tuple[str, ...] = ()
    on_failure_webhook_ids: tuple[str, ...] = ()  # Databricks notification destination ids (webhook, Slack ...)


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_schedule(cfg: ScheduleConfig) -> None:
    if cfg.cron is not None:
        fields = cfg.cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ConfigError(
                f"schedule.cron = {cfg.cron!r} is not a five-field cron expression (minute hour day-of-month month "
                f"day-of-week), e.g. '*/15 * * * *' for every 15 minutes or '0 2 * * *' for 02:00 every day"
            )
        if fields[2] != "*" and fields[4] != "*":
            raise ConfigError(f"schedule.cron = {cfg.cron!r} sets both the day of the month and the day of the week, "
                              f"which Databricks' Quartz schedules cannot express; keep one of them '*'")
    if cfg.cron is not None and cfg.file_arrival_url is not None:
        raise ConfigError("schedule.cron and schedule.file_arrival_url are both set; a Databricks job has a schedule "
                          "or a file-arrival trigger, not both: keep one")
    if cfg.file_arrival_url is not None and not re.match(r"^(s3|s3a|abfss|gs)://|^/Volumes/", cfg.file_arrival_url):
        raise ConfigError(f"schedule.file_arrival_url = {cfg.file_arrival_url!r} is not a location Databricks can "
                          f"watch: use a cloud storage URL (s3://bucket/raw/, abfss://..., gs://...) or a "
                          f"/Volumes/... path")
    bad = [e for e in cfg.on_failure_emails if not _EMAIL.match(e)]
    if bad:
        raise ConfigError(f"schedule.on_failure_emails: {bad[0]!r} is not an e-mail address")

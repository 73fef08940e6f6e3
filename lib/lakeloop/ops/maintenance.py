"""Lake housekeeping: what the jobs leave behind, cleared without touching what they read.

``maintain_lake`` (``lakeloop maintain``, ``jobs/maintain.py``):

* every Delta table of the lake (bronze, the ingest ledger, quarantine, silver, gold): OPTIMIZE
  compacts the small files each run's MERGE adds, then VACUUM deletes the files no version
  within ``maintain.vacuum_retention_hours`` refers to (Delta's 7-day default; less only with
  ``maintain.allow_short_retention``). Rows and the current version's contents do not change.
* materialized training sets: per recipe (the preprocessing or table settings and the file count,
  so each model's sets are counted apart), all but the ``maintain.keep_training_sets`` newest by
  features version; never one a training run wrote or took up within
  ``maintain.training_set_lease_hours``. Training rebuilds a set when it needs it.
* checkpoints of training runs killed and not resumed for ``maintain.checkpoint_max_age_hours``.
* registry folders of crashed publishes (uncommitted, below the highest committed version).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from lakeloop.config import Profile
from lakeloop.io import delta, hadoop
from lakeloop.layout import LakeLayout
from lakeloop.registry import Registry
from lakeloop.report import RunReport

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# v<features version>-<recipe: spec or table key>-<files> (LakeLayout.training_set)
_TRAINING_SET = re.compile(r"^v(\d+)-(.+)$")


def maintain_tables(spark: "SparkSession", profile: Profile, report: RunReport) -> dict[str, dict[str, Any]]:
    """OPTIMIZE and VACUUM every Delta table of the lake; per table, its files on storage before and after."""
    cfg, lake = profile.maintain, LakeLayout(profile.lake_root)
    done: dict[str, dict[str, Any]] = {}
    table = profile.features.table
    for layer, name in lake.tables(profile.ingest_tables.tables, ledger=True,
                                   feature_tables=[LakeLayout.source_name(table.source)] if table else []):
        uri = lake.table(layer, name)
        if not delta.is_delta_table(spark, uri):
            continue
        entry: dict[str, Any] = {"files_before": hadoop.count_files(spark, uri)}
        if cfg.optimize:
            with report.timed("optimize"):
                entry.update(delta.optimize(spark, uri))
        with report.timed("vacuum"):
            delta.vacuum(spark, uri, cfg.vacuum_retention_hours, below_safety_check=cfg.allow_short_retention)
        entry["files_after"] = hadoop.count_files(spark, uri)
        entry["delta_version"] = delta.table_version(spark, uri)
        done[f"{layer}.{name}"] = entry
    return done


def drop_old_training_sets(spark: "SparkSession", profile: Profile, now: datetime | None = None) -> list[str]:
    """Delete, per recipe, the training sets older than the ``keep_training_sets`` newest (by features
    version), unless used within ``training_set_lease_hours``; their URIs."""
    cfg, lake = profile.maintain, LakeLayout(profile.lake_root)
    leased_since = (now or datetime.now(timezone.utc)) - timedelta(hours=cfg.training_set_lease_hours)
    recipes: dict[str, list[tuple[int, str]]] = {}
    for name, is_dir, _ in hadoop.list_children(spark, lake.training_sets):
        if is_dir and (m := _TRAINING_SET.match(name)):
            recipes.setdefault(m.group(2), []).append((int(m.group(1)), f"{lake.training_sets}/{name}"))
    dropped = []
    for sets in recipes.values():
        for _, uri in sorted(sets, reverse=True)[cfg.keep_training_sets:]:
            if _last_used(spark, uri) < leased_since:
                hadoop.delete(spark, uri)
                dropped.append(uri)
    return sorted(dropped)


def _last_used(spark: "SparkSession", uri: str) -> datetime:
    """When a training run last wrote or took up the set at ``uri``: its newest file (the lease a run
    rewrites, each split's _SUCCESS), by file times only (object stores give folders none)."""
    times = []
    for name, is_dir, modified in hadoop.list_children(spark, uri):
        if is_dir:
            times += [t for _, child_is_dir, t in hadoop.list_children(spark, f"{uri}/{name}") if not child_is_dir]
        else:
            times.append(modified)
    return max(times, default=datetime.min.replace(tzinfo=timezone.utc))


def drop_stale_checkpoints(spark: "SparkSession", profile: Profile, now: datetime | None = None) -> list[str]:
    """Delete the checkpoint folders of runs untouched for ``checkpoint_max_age_hours``; their URIs."""
    lake = LakeLayout(profile.lake_root)
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(hours=profile.maintain.checkpoint_max_age_hours)
    dropped = []
    for model, is_dir, _ in hadoop.list_children(spark, lake.checkpoints_root):
        if not is_dir:
            continue
        folder = f"{lake.checkpoints_root}/{model}"
        for run, run_is_dir, _ in hadoop.list_children(spark, folder):
            if not run_is_dir:
                continue
            newest = max((modified for _, _, modified in hadoop.list_children(spark, f"{folder}/{run}")),
                         default=None)
            if newest is None or newest < cutoff:
                hadoop.delete(spark, f"{folder}/{run}")
                dropped.append(f"{folder}/{run}")
    return dropped


def drop_registry_leftovers(profile: Profile) -> list[str]:
    """Delete the version folders crashed publishes left (never a committed version); their URIs."""
    registry = Registry.for_profile(profile)
    dropped = []
    for name in registry.list_models():
        for number in registry.leftover_versions(name):
            registry.drop_leftover(name, number)
            dropped.append(registry.version_uri(name, number))
    return dropped


def maintain_lake(spark: "SparkSession", profile: Profile, report: RunReport | None = None) -> RunReport:
    """Compact and vacuum every table, drop old training sets, stale checkpoints and registry leftovers.

    Safe to run at any time with the default retention (7 days); a shorter one
    (``maintain.allow_short_retention``) only when no other job runs.
    """
    report = report or RunReport.start("maintain")
    tables = report.details["tables"] = maintain_tables(spark, profile, report)
    with report.timed("retention"):
        training_sets = drop_old_training_sets(spark, profile)
        checkpoints = drop_stale_checkpoints(spark, profile)
        leftovers = drop_registry_leftovers(profile)
    report.details.update(dropped_training_sets=training_sets, dropped_checkpoints=checkpoints,
                          dropped_registry_leftovers=leftovers)
    report.counts.update(
        tables=len(tables),
        files_before=sum(t["files_before"] for t in tables.values()),
        files_after=sum(t["files_after"] for t in tables.values()),
        training_sets_dropped=len(training_sets),
        checkpoints_dropped=len(checkpoints),
        registry_leftovers_dropped=len(leftovers),
    )
    return report

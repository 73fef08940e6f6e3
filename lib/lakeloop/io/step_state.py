"""What a step must know of its own last run, kept in the lake by the step that needs it.

A step that can skip work when nothing changed since it last ran (``ingest_tables`` for a table
whose source, settings and tables are as it left them; ``score`` for an input and a model version
it has finished) records, at the end of a run, the state it left: the commits of the tables it
wrote and of its input, and the counts a rerun would report. The next run compares that record
with the tables as they are now and skips only on an exact match. The record lives at
``<lake_root>/_state/<step>/<key>.json`` (:meth:`lakeloop.layout.LakeLayout.step_state`), written
by the library function itself: a job, a library call from a notebook and a rerun after every
run report was deleted behave alike. Losing the file costs one full run, never a wrong answer:
whatever cannot be read (no file, a file cut short, another lakeloop's layout) reads as "no
record".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.io import hadoop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read_step_state(spark: "SparkSession", uri: str) -> dict[str, Any]:
    """The record :func:`write_step_state` left at ``uri``, or {} when there is none or it cannot
    be read as one (a disk that filled, a copy stopped half-way, a file whose checksum no longer
    matches): without it the step does its full work, which is never wrong."""
    try:
        if not hadoop.exists(spark, uri):
            return {}
        recorded = json.loads(hadoop.read_text(spark, uri))
    except Exception:  # noqa: BLE001 - whatever makes the record unreadable, the full run is the answer
        return {}
    return recorded if isinstance(recorded, dict) else {}


def write_step_state(spark: "SparkSession", uri: str, state: Mapping[str, Any]) -> None:
    """Record ``state`` (JSON-able) at ``uri``, replacing the step's previous record."""
    hadoop.write_text(spark, uri, json.dumps(state, sort_keys=True, default=str))


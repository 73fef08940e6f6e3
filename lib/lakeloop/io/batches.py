"""How many rows and bytes Spark hands a Python worker at a time (its Arrow batches).

Image rows are wide: a batch capped by record count alone (``maxRecordsPerBatch``) of 512 camera
photos is gigabytes in one worker, twice over once pandas holds it. Every pandas UDF of lakeloop
runs with its batches cut by bytes as well (``maxBytesPerBatch``, Spark 4.0 and later), set for
the block that runs it with :func:`lakeloop.io.delta.scoped_conf`.
"""

from __future__ import annotations

ARROW_MAX_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_MAX_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
# The largest value Spark accepts for maxBytesPerBatch (less than 2**31 - 1).
MAX_BATCH_BYTES_LIMIT = 2**31 - 2


def arrow_batch_settings(batch_size: int | None, max_batch_bytes: int) -> dict[str, str]:
    """Arrow batches to the Python workers cut at ``batch_size`` rows (None: the session's own
    setting) or ``max_batch_bytes``, whichever comes first."""
    settings = {ARROW_MAX_BYTES: str(max_batch_bytes)}
    if batch_size is not None:
        settings[ARROW_MAX_RECORDS] = str(batch_size)
    return settings

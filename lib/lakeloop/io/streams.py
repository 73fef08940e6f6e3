"""Running a Structured Streaming query to its end, the same way for every ``--stream`` job."""

from __future__ import annotations

from typing import Any, Callable

from lakeloop.errors import JobFailed, LakeloopError


def run_query(writer: Any, trigger: str, job: str, checkpoint: str, batches: Callable[[], int],
              raised: Callable[[], LakeloopError | None], started: Callable[[Any], None] = lambda query: None) -> None:
    """Start ``writer`` (a ``DataStreamWriter``) with ``trigger`` and wait until the query ends
    (``available_now``: what is new, then stop) or is stopped (an interval such as ``30 seconds``).

    ``started`` is called with the running query; ``batches()`` counts the micro-batches run so far;
    ``raised()`` is the lakeloop error a micro-batch raised, if any: it is re-raised as it is.

    Raises
    ------
    JobFailed
        the query stopped on an error of Spark or Delta (the message names the checkpoint it
        resumes from).
    """
    from pyspark.errors import StreamingQueryException

    writer = writer.trigger(availableNow=True) if trigger == "available_now" else writer.trigger(processingTime=trigger)
    query = writer.start()
    started(query)
    try:
        query.awaitTermination()
    except StreamingQueryException as exc:
        error = raised()
        if error is not None:
            raise error from exc
        raise JobFailed(f"the {job} --stream query stopped after {batches()} micro-batch(es): "
                        f"{str(exc).splitlines()[0]}; fix the cause and run {job} --stream again: it resumes from "
                        f"its checkpoint {checkpoint}") from exc
    finally:
        if query.isActive:
            query.stop()

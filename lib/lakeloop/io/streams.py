"""Running a Structured Streaming query to its end, the same way for every ``--stream`` job."""

from __future__ import annotations

from typing import Any, Callable

from lakeloop.errors import JobFailed, LakeloopError


def run_query(writer: Any, trigger: str, job: str, checkpoint: str, batches: Callable[[], int],
              raised: Callable[[], Exception | None], started: Callable[[Any], None] = lambda query: None) -> None:
    """Start ``writer`` (a ``DataStreamWriter``) with ``trigger`` and wait until the query ends
    (``available_now``: what is new, then stop) or is stopped (an interval such as ``30 seconds``).

    ``started`` is called with the running query; ``batches()`` counts the micro-batches started so
    far; ``raised()`` is what a micro-batch raised, if anything: a lakeloop error is re-raised as it
    is, another names the cause of the JobFailed (Spark's own message only wraps it).

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
        if isinstance(error, LakeloopError):
            raise error from exc
        cause = f"{type(error).__name__}: {error}" if error is not None else str(exc)
        raise JobFailed(f"the {job} --stream query failed in micro-batch {batches()} (counting from 1): "
                        f"{cause.strip().splitlines()[0][:1000]}; fix the cause and run {job} --stream again: it "
                        f"resumes from its checkpoint {checkpoint}") from exc
    finally:
        if query.isActive:
            query.stop()

"""Fault injection for the reliability tests: one chosen Spark task fails on its first attempt.

Off by default, and settable only in a test profile (``faults.fail_task``, checked when the
profile loads). The pandas UDFs that do each job's work (decoding in ``ingest_images``,
preprocessing in ``build_features``, the model in ``score``) call :func:`fail_if_chosen` first:
the task with the chosen partition and attempt number raises :class:`InjectedTaskFault`, Spark
runs the task again, and the job must end as a clean run would. The failing task first leaves a
file in ``fail_task.marker`` (a local folder), so a test can tell that the fault did fire.
"""

from __future__ import annotations

from pathlib import Path

from lakeloop.config import TaskFault


class InjectedTaskFault(RuntimeError):
    """The failure :func:`fail_if_chosen` raises in the chosen task."""


def fail_if_chosen(fault: TaskFault | None, job: str) -> None:
    """Inside a Spark task of ``job``: raise if ``fault`` chooses this task (its job, partition
    and attempt); outside a task, or for another task, do nothing."""
    if fault is None or fault.job != job:
        return
    from pyspark import TaskContext

    task = TaskContext.get()
    if task is None or task.partitionId() != fault.partition or task.attemptNumber() != fault.attempt:
        return
    where = f"{job}-stage{task.stageId()}-partition{task.partitionId()}-attempt{task.attemptNumber()}"
    if fault.marker:
        Path(fault.marker).mkdir(parents=True, exist_ok=True)
        (Path(fault.marker) / where).touch()
    raise InjectedTaskFault(f"lakeloop fault injection (faults.fail_task of a test profile): {where} fails on "
                            f"purpose; Spark runs the task again")

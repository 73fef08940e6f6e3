"""Whether the cluster can run a training run before it starts: enough task slots for
``train.num_processes`` barrier tasks (:func:`check_capacity`), and on GPUs enough GPU resources
per executor and task (:func:`gpu_capacity`); each refusal says the numbers.

Called by :func:`lakeloop.training.driver.train` (``lakeloop.training.driver`` re-exports these names).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.config import TrainConfig
from lakeloop.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _local_cores(master: str) -> int | None:
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", master)
    if match is None:
        return 1 if master == "local" else None
    if match.group(1) == "*":
        import os

        return os.cpu_count() or 1
    return int(match.group(1))


def check_capacity(spark: "SparkSession", cfg: TrainConfig) -> dict[str, Any]:
    """Fail fast, with the numbers, if the cluster cannot run ``num_processes`` barrier tasks.

    A barrier stage that asks for more slots (task slots, or GPUs with ``train.use_gpu``) than exist
    waits and retries instead of failing at once; this check says what is wrong before launching.
    """
    conf = spark.sparkContext.getConf()
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    master = spark.sparkContext.master
    facts: dict[str, Any] = {"master": master, "num_processes": cfg.num_processes, "task_cpus": task_cpus}
    if cfg.use_gpu:
        facts.update(gpu_capacity(cfg, dict(conf.getAll()), master, registered_executors(spark)))
    if cfg.local_mode:
        return facts
    local = _local_cores(master)
    slots = (local if local is not None else spark.sparkContext.defaultParallelism) // task_cpus
    facts["slots"] = slots
    if cfg.num_processes > slots:
        raise ConfigError(
            f"train.num_processes = {cfg.num_processes} but the cluster ({master}) has {slots} task slot(s) "
            f"({'cores' if local else 'default parallelism'} / spark.task.cpus={task_cpus}); the barrier job "
            f"would wait for slots that never come. Lower train.num_processes or add executors/cores"
        )
    return facts


def registered_executors(spark: "SparkSession") -> int:
    """How many executors are registered with the driver now (0 where Spark does not say: Spark Connect)."""
    try:
        # The block managers Spark knows: one per executor, plus the driver's own.
        return max(0, spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1)
    except Exception:  # noqa: BLE001 - no JVM SparkContext (Spark Connect): the settings alone decide
        return 0


def _amount(settings: Mapping[str, str], key: str) -> float:
    value = settings.get(key)
    try:
        return float(value) if value not in (None, "") else 0.0
    except ValueError:
        raise ConfigError(f"{key} = {value!r} is not a number of GPUs; write a number, e.g. 1") from None


def gpu_capacity(cfg: TrainConfig, settings: Mapping[str, str], master: str, registered: int) -> dict[str, Any]:
    """Check that Spark's GPU scheduling has a GPU for every one of ``train.num_processes``.

    Parameters
    ----------
    cfg : the train settings: ``num_processes``, ``local_mode`` (train on the driver's GPUs).
    settings : Spark's settings: ``spark.driver.resource.gpu.amount``, ``spark.executor.resource.gpu.amount``,
        ``spark.task.resource.gpu.amount``, ``spark.executor.instances``, ``spark.dynamicAllocation.*``.
    master : the master URL; a local master runs its tasks on the driver's GPUs.
    registered : the executors registered with the driver now (:func:`registered_executors`).

    Returns
    -------
    The figures counted: GPUs per executor and task, executors, GPU slots.

    Raises
    ------
    ConfigError
        no GPU scheduling, or fewer GPU slots than processes, with the numbers and the settings.
    """
    driver_gpus = _amount(settings, "spark.driver.resource.gpu.amount")
    n = cfg.num_processes
    if cfg.local_mode:
        # TorchDistributor on the driver takes the GPUs Spark gave the driver, one per process, and
        # quietly runs fewer processes when there are fewer GPUs (the shards are planned for all of them).
        if driver_gpus < 1:
            raise ConfigError(
                "train.use_gpu and train.local_mode are true but Spark gave the driver no GPUs: set "
                "spark.driver.resource.gpu.amount and spark.driver.resource.gpu.discoveryScript in the profile's "
                "spark.conf, or train on the executors (--set train.local_mode=false)")
        if n > driver_gpus:
            raise ConfigError(
                f"train.num_processes = {n} but the driver has {driver_gpus:g} GPU(s) (spark.driver.resource.gpu."
                f"amount), and train.local_mode runs one process per driver GPU: lower train.num_processes to "
                f"{int(driver_gpus)}, or give the driver more GPUs")
        return {"driver_gpus": driver_gpus, "gpu_slots": int(driver_gpus)}
    task_gpus, executor_gpus = (_amount(settings, f"spark.{who}.resource.gpu.amount") for who in ("task", "executor"))
    if not task_gpus or not executor_gpus:
        raise ConfigError(
            "train.use_gpu is true but the cluster has no GPU scheduling: set "
            "spark.executor.resource.gpu.amount, spark.task.resource.gpu.amount and a discovery script "
            "(spark.executor.resource.gpu.discoveryScript) in the profile's spark.conf")
    facts: dict[str, Any] = {"task_gpus": task_gpus, "executor_gpus": executor_gpus}
    if _local_cores(master) is not None:
        # A local master has one executor, the driver: its tasks take the driver's GPUs.
        executors, source, per_executor = 1, f"the driver of {master}", driver_gpus or executor_gpus
        per_key = "spark.driver.resource.gpu.amount" if driver_gpus else "spark.executor.resource.gpu.amount"
    elif settings.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        maximum = settings.get("spark.dynamicAllocation.maxExecutors")
        if maximum is None:
            return facts  # as many executors as the cluster gives: nothing to count against
        executors, source, per_executor = int(maximum), "spark.dynamicAllocation.maxExecutors", executor_gpus
        per_key = "spark.executor.resource.gpu.amount"
    else:
        instances = int(settings.get("spark.executor.instances") or 0)
        executors = max(instances, registered)
        if executors == 0:
            return facts  # none registered yet and no spark.executor.instances: Spark's own wait decides
        source = "spark.executor.instances" if instances >= registered else "registered with the driver"
        per_executor, per_key = executor_gpus, "spark.executor.resource.gpu.amount"
    slots = executors * int(per_executor // task_gpus)
    tasks = math.ceil(n / task_gpus)
    facts.update(executors=executors, gpu_slots=slots)
    if tasks > slots:
        raise ConfigError(
            f"train.use_gpu: train.num_processes = {n} needs {tasks} GPU task(s) of {task_gpus:g} GPU(s) "
            f"(spark.task.resource.gpu.amount), but the cluster has {slots} GPU slot(s): {executors} executor(s) "
            f"({source}) x {per_executor:g} GPU(s) each ({per_key}) / {task_gpus:g} per task. The barrier stage would wait for GPUs that never come: "
            f"lower train.num_processes to {int(slots * task_gpus)}, or add executors or GPUs")
    return facts

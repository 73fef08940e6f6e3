"""The training step: ``silver.features`` -> a Parquet training set -> TorchDistributor -> the registry.

* :mod:`~lakeloop.training.driver` — the driver: materialize, check the cluster, launch, publish (:func:`train`).
* :mod:`~lakeloop.training.rank` — one training process, runnable without Spark (:func:`~lakeloop.training.rank.train_rank`).
* :mod:`~lakeloop.training.loader` — the feed's plan: each process's row groups, equal steps, reproducible order.
* :mod:`~lakeloop.training.readers` — the readers that execute it: ``arrow`` (pyarrow) or ``petastorm``.
* :mod:`~lakeloop.training.dataset` — the Parquet training set of a features version.

The models come from factories (:mod:`lakeloop.models`; scoring rebuilds them too).
"""

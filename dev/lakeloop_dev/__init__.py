"""Development and test tooling for lakeloop; not part of the installed package.

* :mod:`lakeloop_dev.services` — ``./dev/services.sh``: the loopback S3 server, standalone
  cluster and Hadoop (HDFS + YARN) the integration tests use, each a
  :class:`lakeloop_dev.processes.Service`.
* :mod:`lakeloop_dev.demo_data` — the demo raw zone ``./dev/demo.sh`` ingests (scikit-learn's
  bundled digits as PNG files, a CSV describing them, a few broken files and rows).

Importable with ``dev/`` on ``PYTHONPATH`` (the dev scripts and pytest set it); it imports
lakeloop, never the other way round.
"""

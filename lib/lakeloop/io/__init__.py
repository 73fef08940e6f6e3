"""Storage: the lake's filesystems and its Delta tables.

* :mod:`lakeloop.io.hadoop` — file operations through Spark's JVM Hadoop FileSystem (the
  driver's view: the same schemes and credentials as the session).
* :mod:`lakeloop.io.lakefs` — the same lake URIs through ``pyarrow.fs`` for the processes
  without a SparkSession (training ranks, scoring workers, the registry): :class:`~lakeloop.io.lakefs.LakeFiles`.
* :mod:`lakeloop.io.webhdfs`, :mod:`lakeloop.io.petastorm_fs` — the HDFS-over-HTTP client and
  the adapter that lets Petastorm 0.12 read s3a:// and hdfs:// datasets through them.
* :mod:`lakeloop.io.delta` — Delta reads pinned to a version, idempotent MERGEs, table properties.

Nothing here knows about images, models or jobs.
"""

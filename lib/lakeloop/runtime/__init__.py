"""What every entry point shares: the one SparkSession factory (:mod:`~lakeloop.runtime.session`),
the JVM packages it hands Spark (:mod:`~lakeloop.runtime.jars`), and the job runner behind
``jobs/*.py`` (:mod:`~lakeloop.runtime.runner`: profile, session, report, exit code; their arguments are :mod:`lakeloop.cli.jobs`).
"""

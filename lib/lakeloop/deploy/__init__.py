"""Getting the jobs onto a cluster: the ``spark-submit`` command (:mod:`~lakeloop.deploy.submit`,
behind ``./spark-submit.sh``) and Databricks job definitions (:mod:`~lakeloop.deploy.databricks`).
"""

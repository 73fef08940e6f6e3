#!/usr/bin/env bash
# Loopback services for development and the integration tests (see dev/lakeloop_dev/services.py):
#   s3       S3Proxy on the port of conf/s3-test.yaml (objects in memory, gone when it stops)
#   cluster  a Spark standalone master (conf/cluster-test.yaml) + 2 workers, 1 core / 1536 MB each
#   hadoop   HDFS (NameNode + DataNode, ports in conf/hdfs-test.yaml) and YARN (ResourceManager +
#            2 NodeManagers) from Hadoop's minicluster at pyspark's Hadoop version (3.4.2 for
#            pyspark 4.1, 3.4.1 for 4.0); prints the HADOOP_CONF_DIR to use
#   kafka    Apache Kafka 4.1 in KRaft mode, one node, on the port of conf/kafka-test.yaml
# Usage: ./dev/services.sh start|stop|status [s3|cluster|hadoop|kafka|all]     (default: all)
# State, pid files and logs: $LAKELOOP_SERVICES_DIR (default ~/.cache/lakeloop/services).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$repo/.venv/bin/python" ]; then
  echo "services.sh: no environment yet; run ./dev/setup.sh first" >&2
  exit 2
fi
export PYTHONPATH="$repo/lib:$repo/dev${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m lakeloop_dev.services "$@"

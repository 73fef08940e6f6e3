#!/usr/bin/env bash
# Loopback services for development and the integration tests (see lib/lakeloop/services.py):
#   s3       S3Proxy on the port of conf/s3-test.yaml (objects kept as files, survive a restart)
#   cluster  a Spark standalone master (conf/cluster-test.yaml) + 2 workers, 1 core / 1536 MB each
# Usage: ./dev/services.sh start|stop|status [s3|cluster|all]     (default: all)
# State, pid files and logs: $LAKELOOP_SERVICES_DIR (default ~/.cache/lakeloop/services).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$repo/.venv/bin/python" ]; then
  echo "services.sh: no environment yet; run ./dev/setup.sh first" >&2
  exit 2
fi
export PYTHONPATH="$repo/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m lakeloop.services "$@"

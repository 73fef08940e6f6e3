#!/usr/bin/env bash
# ./spark-submit.sh [--profile P] [--conf k=v ...] [--set k=v ...] [--py-files F,...] [--dry-run] JOB [JOB ARGS ...]
# Runs jobs/JOB.py with spark-submit under profile P (default: local): ships lib/ to the
# executors, adds the JVM jars and the profile's Spark settings. See docs/jobs/README.md#running-a-job.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$repo/.venv/bin/python" ]; then
  echo "spark-submit.sh: no environment yet; run ./dev/setup.sh first" >&2
  exit 2
fi
export PYTHONPATH="$repo/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m lakeloop.deploy.submit "$@"

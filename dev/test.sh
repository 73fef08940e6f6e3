#!/usr/bin/env bash
# The README's second command: set this machine up and run the test suite.
# Extra arguments go to pytest, e.g. ./dev/test.sh -k ingest -x
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/dev/setup.sh" --profile local --profile test --profile s3-test --profile cluster-test --profile hdfs-test --profile yarn-test --with-browser
cd "$repo"
export PYTHONPATH="$repo/lib:$repo/dev${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m pytest "$@"

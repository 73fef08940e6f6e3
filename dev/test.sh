#!/usr/bin/env bash
# The README's second command: set this machine up and run the test suite.
# Usage: ./dev/test.sh [--stack current|spark40] [pytest arguments], e.g. ./dev/test.sh -k ingest -x
# (default stack: current; CI also runs ./dev/test.sh --stack spark40 -m stacks).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stack=()
if [ "${1:-}" = "--stack" ]; then stack=(--stack "${2:-}"); shift 2 || true; fi
"$repo/dev/setup.sh" "${stack[@]}" --profile local --profile test --profile s3-test --profile cluster-test --profile hdfs-test --profile yarn-test --with-browser
cd "$repo"
export PYTHONPATH="$repo/lib:$repo/dev${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m pytest "$@"

#!/usr/bin/env bash
# The README's second command: set this machine up and run the test suite.
# Usage: ./dev/test.sh [--stack current|spark40] [--quick] [pytest arguments], e.g. ./dev/test.sh -k ingest -x
# (default stack: current; CI also runs ./dev/test.sh --stack spark40 -m stacks).
# --quick: the edit loop's tier (marker "quick", a few minutes): every test without Spark, every
# module imported, and one small run of each Spark step; the whole suite stays what CI runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stack=()
quick=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack=(--stack "${2:-}"); shift 2 || shift ;;
    --quick) quick=(-m quick); shift ;;
    *) break ;;
  esac
done
"$repo/dev/setup.sh" "${stack[@]}" --profile local --profile test --profile s3-test --profile cluster-test --profile hdfs-test --profile yarn-test --with-browser
cd "$repo"
export PYTHONPATH="$repo/lib:$repo/dev${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" -m pytest "${quick[@]}" "$@"

#!/usr/bin/env bash
# Make this machine ready for lakeloop; safe to run again (it skips what is done).
#  1. Java 17+ and Maven (apt-get when missing; Spark 4 needs Java 17 or 21).
#  2. A Python 3.11 virtual environment with the pinned stack (requirements-dev.txt),
#     kept per machine in $LAKELOOP_CACHE (default ~/.cache/lakeloop) and keyed by the
#     requirements, so torch is installed once per machine, not per checkout; .venv
#     in the checkout points at it.
#  3. The JVM packages of the profiles (Delta, ...) resolved from Maven Central into
#     the jar cache (python -m lakeloop.runtime.jars resolve).
#  4. A JVM class archive per jar set, which local drivers start from (jvm.class_archive).
#  5. With --with-browser: Chromium from Debian's packages, for the tests that open the run
#     pages in a real headless browser (./dev/test.sh asks for it).
# Usage: ./dev/setup.sh [--profile NAME ...] [--with-browser]   (default: the local and test profiles)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LAKELOOP_CACHE:-$HOME/.cache/lakeloop}"
say() { printf '[setup] %s\n' "$*" >&2; }

profiles=()
browser=no
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profiles+=("$2"); shift 2 ;;
    --with-browser) browser=yes; shift ;;
    *) echo "setup.sh: unknown argument $1 (usage: ./dev/setup.sh [--profile NAME ...] [--with-browser])" >&2; exit 2 ;;
  esac
done
[ ${#profiles[@]} -gt 0 ] || profiles=(local test)

# --- 1. Java and Maven --------------------------------------------------------------
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] || ! command -v mvn >/dev/null; then
  say "installing Java 17 and Maven with apt-get"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

# --- 1b. Chromium (tests of the run pages) ------------------------------------------------
if [ "$browser" = yes ] && ! [ -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null; then
  say "installing Chromium with apt-get (the run-page tests open pages in a headless browser)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# --- 2. Python environment ------------------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup.sh: Python 3.11 is required (pyarrow 14 / petastorm pins); set PYTHON=/path/to/python3.11" >&2; exit 1; }
key="$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -c1-12)"
venv="$cache/venv-py311-$key"
if [ ! -f "$venv/.lakeloop-complete" ]; then
  say "creating $venv (first time on this machine: torch alone is several GB, allow some minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$repo/requirements-dev.txt"
  touch "$venv/.lakeloop-complete"
fi
# The checkout's own code: editable, without touching the pinned dependencies.
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >/dev/null
ln -sfn "$venv" "$repo/.venv"

# --- 3. JVM packages ------------------------------------------------------------------
for p in "${profiles[@]}"; do
  PYTHONPATH="$repo/lib" "$venv/bin/python" -m lakeloop.runtime.jars resolve --profile "$p" >/dev/null
done

# --- 4. JVM class archives --------------------------------------------------------------
# A local driver starts from the classes a job loads, archived once (lakeloop.runtime.class_archive;
# about 45 s per jar set, then about 4 s less per job). Without one, jobs start as before.
for p in "${profiles[@]}"; do
  log="$cache/class-archive-$p.log"
  if ! PYTHONPATH="$repo/lib" "$venv/bin/python" -m lakeloop.runtime.class_archive --profile "$p" >"$log" 2>&1; then
    say "no JVM class archive for profile $p (jobs start without one; see $log)"
  fi
done
say "ready: $(readlink -f "$repo/.venv")/bin/python, jars for profiles: ${profiles[*]}"

#!/usr/bin/env bash
# Make this machine ready for lakeloop; safe to run again (it skips what is done).
#  1. Java 17+ and Maven (apt-get when missing; Spark 4 needs Java 17 or 21).
#  2. A Python virtual environment with one stack's pins (requirements/<stack>.txt and
#     requirements/dev.txt): "current" (default; Spark 4.1, Python 3.12) or "spark40" (Spark 4.0,
#     Python 3.11, Petastorm); docs/stacks.md says why. The pinned packages are kept per machine in
#     $LAKELOOP_CACHE (default ~/.cache/lakeloop), keyed by the stack and its requirements, so torch
#     is installed once per machine and stack, not per checkout; that shared environment holds no
#     checkout's code. Each checkout gets its own small environment, .venv-<stack> (a venv of the
#     same Python whose one .pth opens the shared site-packages, with this checkout installed in
#     editable mode, its `lakeloop` command and a Jupyter kernel "lakeloop"), so its interpreter,
#     command and kernel import this checkout's lib/ whichever checkout was set up last; .venv
#     points at the stack set up last.
#  3. The JVM packages of the profiles (Delta, ...) resolved from Maven Central into
#     the jar cache (lakeloop jars resolve): the versions of the stack's Spark
#     line (lakeloop.stacks), each in its own folder.
#  4. A JVM class archive per jar set, which local drivers start from (jvm.class_archive).
#  5. With --with-browser: Chromium from Debian's packages, for the tests that open the run
#     pages in a real headless browser (./dev/test.sh asks for it).
# Usage: ./dev/setup.sh [--stack current|spark40] [--profile NAME ...] [--with-browser]
#        (default: the current stack, the local and test profiles; $LAKELOOP_STACK sets the stack too)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LAKELOOP_CACHE:-$HOME/.cache/lakeloop}"
say() { printf '[setup] %s\n' "$*" >&2; }

profiles=()
browser=no
stack="${LAKELOOP_STACK:-current}"
usage="usage: ./dev/setup.sh [--stack current|spark40] [--profile NAME ...] [--with-browser]"
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack="${2:-}"; shift 2 || { echo "setup.sh: --stack needs a value ($usage)" >&2; exit 2; } ;;
    --profile) profiles+=("$2"); shift 2 ;;
    --with-browser) browser=yes; shift ;;
    *) echo "setup.sh: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
done
# Each stack's Python: the Databricks runtimes of both lines (17.3 LTS, 18 LTS) run 3.12; the spark40
# stack stays on 3.11, where its pins (pyarrow 14, numpy 1.26, Petastorm) have always been tested.
case "$stack" in
  current) pyver=3.12 ;;
  spark40) pyver=3.11 ;;
  *) echo "setup.sh: unknown stack '$stack': use --stack current (Spark 4.1, the default) or --stack spark40 (Spark 4.0)" >&2; exit 2 ;;
esac
reqs="$repo/requirements/$stack.txt"
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
is_pyver() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$pyver'.split('.'))))" 2>/dev/null; }
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for cand in "python$pyver" python3 "$pyenv_root"/versions/"$pyver".*/bin/python"$pyver" /usr/local/bin/python"$pyver"; do
    if command -v "$cand" >/dev/null && is_pyver "$cand"; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] && is_pyver "$PY" || { echo "setup.sh: the $stack stack needs Python $pyver (found none on PATH or under pyenv); install it (pyenv install $pyver) or set PYTHON=/path/to/python$pyver" >&2; exit 1; }
key="$(cat "$reqs" "$repo/requirements/dev.txt" | sha256sum | cut -c1-12)"
venv="$cache/venv-$stack-py${pyver/./}-$key"
if [ ! -f "$venv/.lakeloop-complete" ]; then
  say "creating $venv (first time on this machine: torch alone is several GB, allow some minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$reqs" -r "$repo/requirements/dev.txt"
  touch "$venv/.lakeloop-complete"
fi
# The shared environment holds no checkout's code: it once held the editable install of whichever
# checkout ran this last, which every other checkout then imported.
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
shared_site="$(site_of "$venv/bin/python")"
if compgen -G "$shared_site/lakeloop-*.dist-info" >/dev/null; then
  "$venv/bin/python" -m pip uninstall -q -y lakeloop >/dev/null
fi
# The checkout's own environment: the same Python, the shared packages through one .pth (site.addsitedir,
# so their own .pth files count too), then this checkout's code, editable, without touching the pins.
own="$repo/.venv-$stack"
[ ! -L "$own" ] || rm "$own"  # the former layout: a link to the shared environment
if [ "$(cat "$own/.lakeloop-shared" 2>/dev/null)" != "$venv" ] || [ ! -x "$own/bin/python" ]; then
  say "creating $own (this checkout's environment, over $venv)"
  rm -rf "$own"
  "$venv/bin/python" -m venv --without-pip "$own"
  "$own/bin/python" -c 'import pathlib, sys; pathlib.Path(sys.argv[1], "lakeloop-shared.pth").write_text(
    f"import site; site.addsitedir({sys.argv[2]!r})\n")' "$(site_of "$own/bin/python")" "$shared_site"
  echo "$venv" >"$own/.lakeloop-shared"
fi
"$own/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >/dev/null
# The kernel inside the checkout's environment (Jupyter started from it, VS Code picking .venv, nbclient
# with kernel_name="lakeloop"), not in ~/.local, where two checkouts' kernels of one name would collide.
"$own/bin/python" -m ipykernel install --sys-prefix --name lakeloop \
  --display-name "lakeloop ($(basename "$repo"), $stack)" >/dev/null
ln -sfn ".venv-$stack" "$repo/.venv"

# --- 3. JVM packages ------------------------------------------------------------------
for p in "${profiles[@]}"; do
  "$own/bin/python" -m lakeloop.cli jars resolve --profile "$p" >/dev/null
done

# --- 4. JVM class archives --------------------------------------------------------------
# A local driver starts from the classes a job loads, archived once (lakeloop jars archive;
# about 45 s per jar set, then about 4 s less per job). Without one, jobs start as before.
for p in "${profiles[@]}"; do
  log="$cache/class-archive-$stack-$p.log"
  if ! "$own/bin/python" -m lakeloop.cli jars archive --profile "$p" >"$log" 2>&1; then
    say "no JVM class archive for profile $p (jobs start without one; see $log)"
  fi
done
say "ready: stack $stack, $repo/.venv/bin/python (over $venv), jars for profiles: ${profiles[*]}"

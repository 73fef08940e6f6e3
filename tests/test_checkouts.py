"""Two checkouts on one machine (two clones, a worktree per branch): each one's interpreter, ``lakeloop``
command and notebook kernel run its own ``lib/``, whichever checkout ran ``./dev/setup.sh`` last.

The clones share the machine's environment of the pinned packages (set up once, in
``$LAKELOOP_CACHE``); each gets only its small ``.venv-<stack>`` over it, so setting one up takes
seconds and downloads nothing (pip is told so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeloop.stacks import installed_stack

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# A notebook of one cell: where lakeloop comes from, and what {repo} in the local profile becomes.
_CELL = ("import json, lakeloop\nfrom lakeloop.config import load_profile\n"
         "print(json.dumps({'file': lakeloop.__file__, 'lake': load_profile('local').lake_root}))")
_RUN_NOTEBOOK = """
import json, sys
import nbformat
from nbclient import NotebookClient
notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(sys.argv[2])])
NotebookClient(notebook, timeout=120, kernel_name=sys.argv[1]).execute()
print(notebook.cells[0].outputs[0]["text"])
"""


def _shared_environment() -> Path:
    """The environment of the pinned packages this test runs over (``.lakeloop-shared`` of its checkout's
    ``.venv``); the test is skipped when this Python was not made by ./dev/setup.sh."""
    marker = Path(sys.prefix) / ".lakeloop-shared"
    if not marker.is_file():
        pytest.skip(f"{sys.prefix} is not a checkout environment made by ./dev/setup.sh (no .lakeloop-shared)")
    return Path(marker.read_text().strip())


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that points Python at a checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "JUPYTER_PATH")}
    return {**env, **extra}


def _clone(target: Path, name: str) -> Path:
    """A clone of this checkout's HEAD with its uncommitted changes, its ``lakeloop --help`` naming it."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, capture_output=True, timeout=300)
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "--binary", "HEAD"], check=True, capture_output=True).stdout
    if diff:
        subprocess.run(["git", "-C", str(target), "apply", "--binary", "-"], input=diff, check=True,
                       capture_output=True)
    cli = target / "lib" / "lakeloop" / "cli" / "__init__.py"
    cli.write_text(cli.read_text().replace('"""', f'"""[{name}] ', 1))
    return target


def _set_up(clone: Path, shared: Path) -> None:
    proc = subprocess.run([str(clone / "dev" / "setup.sh"), "--stack", installed_stack().name, "--profile", "local"],
                          cwd=clone, capture_output=True, text=True, timeout=600,
                          env=_clean_env(LAKELOOP_CACHE=str(shared.parent), PIP_NO_INDEX="1"))
    assert proc.returncode == 0, f"./dev/setup.sh failed in {clone}:\n{proc.stdout}{proc.stderr}"
    assert (clone / ".venv" / ".lakeloop-shared").read_text().strip() == str(shared)  # no second torch


def _run(clone: Path, *args: str) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=clone.parent, capture_output=True, text=True, timeout=300,
                          env=_clean_env())
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_after_a_second_clone_is_set_up_the_first_ones_python_command_and_kernels_run_the_first_ones_code(
        tmp_path):
    shared = _shared_environment()
    first, second = _clone(tmp_path / "first", "first"), _clone(tmp_path / "second", "second")
    _set_up(first, shared)
    _set_up(second, shared)

    python = first / ".venv" / "bin" / "python"
    imported = _run(first, python, "-c", "import lakeloop, torch; print(lakeloop.__file__)").strip()
    assert imported == str(first / "lib" / "lakeloop" / "__init__.py")

    command = first / ".venv" / "bin" / "lakeloop"
    assert command.read_text().splitlines()[0] == f"#!{first}/.venv-{installed_stack().name}/bin/python"
    helped = _run(first, command, "--help")
    assert helped.startswith("[first] The ``lakeloop`` command") and "[second]" not in helped
    assert _run(second, second / ".venv" / "bin" / "lakeloop", "--help").startswith("[second] ")

    # The kernel setup registers in the checkout's environment, and the default kernel of its Python
    # (what tests/test_notebook.py runs): both resolve {repo} to the first clone.
    for kernel in ("lakeloop", "python3"):
        seen = json.loads(_run(first, python, "-c", _RUN_NOTEBOOK, kernel, _CELL))
        assert seen == {"file": str(first / "lib" / "lakeloop" / "__init__.py"), "lake": f"file:{first}/lake"}, kernel

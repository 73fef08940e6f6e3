"""The wheel on its own: built from the checkout, installed with its declared dependencies into a
fresh virtual environment that does not see the checkout, its ``lakeloop`` command and one job
run there against a temporary lake. It ships the library and nothing of the dev tooling.

The fresh environment gets no packages from the network: its dependencies are offered to pip
(``--no-index``) as the pinned environment's own installed distributions, seen through a
``.pth`` file, with this checkout's editable lakeloop left out. pip must then find every
requirement the wheel declares among them, or the install fails.
"""

from __future__ import annotations

import ast
import email
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from lakeloop.config import load_profile

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "lib", source / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # No build isolation: the pinned environment has setuptools, and tests stay offline.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
         str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = (tmp / "dist").glob("*.whl")
    return built


def test_the_wheel_holds_every_library_module_and_the_console_script(wheel):
    from lakeloop.deploy import databricks

    assert wheel.name == databricks._wheel_name(REPO)  # the file the Databricks tasks install
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(info).decode()
        metadata = email.message_from_bytes(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    modules = {p.relative_to(REPO / "lib").as_posix() for p in (REPO / "lib" / "lakeloop").rglob("*.py")}
    assert modules <= names
    assert {"lakeloop/cli.py", "lakeloop/deploy/databricks.py", "lakeloop/io/lakefs.py"} <= names
    assert "lakeloop = lakeloop.cli:main" in entry_points
    # On Databricks the platform's Spark must stay the only one: pyspark only as an extra.
    requires = metadata.get_all("Requires-Dist")
    assert [r for r in requires if r.startswith(("pyspark", "delta-spark"))] == [
        'pyspark<4.1,>=4.0; extra == "spark"', 'delta-spark<4.1,>=4.0; extra == "spark"'
    ]


def test_the_wheel_holds_no_dev_services_demo_writer_or_test_code(wheel):
    with zipfile.ZipFile(wheel) as zf:
        python_files = [n for n in zf.namelist() if n.endswith(".py")]
        sources = {n: zf.read(n).decode() for n in python_files}
    assert all(n.startswith("lakeloop/") for n in python_files), python_files
    for word in ("services", "minihadoop", "demo", "s3proxy", "lakeloop_dev", "conftest"):
        assert not [n for n in python_files if word in n], word
    imports = {n: {alias.name.split(".")[0] for node in ast.walk(ast.parse(text))
                   for alias in getattr(node, "names", []) if isinstance(node, ast.Import)}
               | {node.module.split(".")[0] for node in ast.walk(ast.parse(text))
                  if isinstance(node, ast.ImportFrom) and node.module}
               for n, text in sources.items()}
    assert {n: found & {"sklearn", "lakeloop_dev", "support"} for n, found in imports.items()
            if found & {"sklearn", "lakeloop_dev", "support"}} == {}


def _dependencies_view(target: Path) -> Path:
    """The pinned environment's installed packages, as symlinks, without this checkout's lakeloop."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name.startswith(("lakeloop", "__editable__", "_distutils_hack")) or name.endswith(".pth"):
            continue
        (target / name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def wheel_env(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel (and its ``spark`` extra) installed; returns its folder."""
    tmp = tmp_path_factory.mktemp("wheel-env")
    env = tmp / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable
    # No pip or setuptools of its own (they would shadow the pinned ones): this environment's pip
    # installs into it (pip --python).
    subprocess.run([base, "-m", "venv", "--without-pip", str(env)], check=True, capture_output=True, timeout=300)
    python = env / "bin" / "python"
    env_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (env_site / "lakeloop-test-dependencies.pth").write_text(f"{_dependencies_view(tmp / 'deps')}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", f"{wheel}[spark]"],
        capture_output=True, text=True, timeout=600, env=_clean_env(),
    )
    assert proc.returncode == 0, f"the wheel's declared dependencies did not resolve:\n{proc.stdout}{proc.stderr}"
    assert "Successfully installed lakeloop-" in proc.stdout, proc.stdout
    return env


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that points Python at the checkout."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")}


def test_the_installed_lakeloop_is_the_wheels_not_the_checkouts(wheel_env, tmp_path):
    out = subprocess.run([str(wheel_env / "bin" / "python"), "-c", "import lakeloop; print(lakeloop.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), check=True).stdout
    assert out.strip().startswith(str(wheel_env)), out
    assert str(REPO) not in out


def test_the_lakeloop_command_of_the_wheel_prints_its_help(wheel_env, tmp_path):
    proc = subprocess.run([str(wheel_env / "bin" / "lakeloop"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, env=_clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("show", "databricks", "jars", "train-rank"):
        assert f"lakeloop {command}" in proc.stdout
    unknown = subprocess.run([str(wheel_env / "bin" / "lakeloop"), "demo"], cwd=tmp_path, capture_output=True,
                             text=True, env=_clean_env(), timeout=60)
    assert unknown.returncode == 2 and "unknown command 'demo'" in unknown.stderr


def _images(folder: Path) -> int:
    from PIL import Image

    for label, shade in (("dark", 30), ("light", 220)):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (16, 16), shade + i).save(folder / label / f"{i}.png")
    (folder / "light" / "broken.png").write_bytes(b"not a png")
    return 7


def test_a_job_runs_from_the_wheel_against_a_temporary_lake(wheel_env, tmp_path):
    files = _images(tmp_path / "raw")
    jvm = load_profile("test").jvm  # the Delta jars the setup resolved for the test profile
    profile = {
        "lake_root": f"file:{tmp_path}/lake",
        "spark": {"master": "local[1]", "conf": {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1",
                                                 "spark.pyspark.python": "{python}",
                                                 "spark.sql.session.timeZone": "UTC"}},
        "jvm": {"packages": list(jvm.packages), "cache_dir": jvm.cache_dir},
        "ingest_images": {"source": f"file:{tmp_path}/raw"},
    }
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "wheel.yaml").write_text(json.dumps(profile))  # JSON is YAML
    job = tmp_path / "ingest_images.py"
    shutil.copy2(REPO / "jobs" / "ingest_images.py", job)  # a job file, as Databricks syncs them
    proc = subprocess.run([str(wheel_env / "bin" / "python"), str(job), "--profile", str(tmp_path / "conf" / "wheel.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "lake" / "_reports" / "ingest_images" / "latest.json").read_text())
    assert report["status"] == "succeeded"
    assert (report["counts"]["inputs"], report["counts"]["ingested"], report["counts"]["quarantined"]) == (files, 6, 1)

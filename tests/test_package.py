"""The wheel on its own: built from the checkout, installed with its declared dependencies into a
fresh virtual environment that does not see the checkout, its ``lakeloop`` command and one job
run there against a temporary lake. It ships the library and nothing of the dev tooling.

The fresh environment gets no packages from the network: its dependencies are offered to pip
(``--no-index``) as the pinned environment's own installed distributions, seen through a
``.pth`` file, with this checkout's editable lakeloop left out. pip must then find every
requirement the wheel declares among them, or the install fails.

The wheel is also resolved (``pip install --dry-run``, nothing installed) against the Python
libraries of the Databricks runtimes it targets: those tests ask the package index (PyPI), the
one network the tests use, and skip when pip cannot reach it.
"""

from __future__ import annotations

import ast
import email
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from lakeloop.config import load_profile
from lakeloop.stacks import packages_folder

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.stacks]


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
    assert {"lakeloop/cli/__init__.py", "lakeloop/deploy/databricks.py", "lakeloop/io/lakefs.py"} <= names
    assert "lakeloop = lakeloop.cli:main" in entry_points
    # On Databricks the platform's Spark must stay the only one: pyspark only in extras, and
    # petastorm (which hard-requires pyspark) too.
    unconditional = {canonicalize_name(r.name) for r in map(Requirement, metadata.get_all("Requires-Dist"))
                     if r.marker is None}
    assert "torch" in unconditional
    assert unconditional.isdisjoint({"pyspark", "delta-spark", "petastorm"}), unconditional


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
    site = Path(packages_folder())
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


# The wheel on the Databricks runtimes it targets: pip resolves it against the Python libraries
# each runtime ships, without installing anything, and must keep every one of them.

@dataclass(frozen=True)
class Runtime:
    """A Databricks Runtime ML: its Python, its Spark and the versions of the Python libraries it
    ships that the wheel (with or without its ``tracking`` extra) requires."""

    name: str
    python: str
    spark: str
    libraries: dict[str, str]


# From the release notes' "System environment" and "Python libraries" sections, read through the
# constraints files of https://github.com/databricks/environments (python/dbr/18.0.x-cpu-ml-scala2.13,
# python/dbr/17.3.x-cpu-ml-scala2.13), which are scraped from those pages.
# https://docs.databricks.com/aws/en/release-notes/runtime/18.0ml
DBR_18_ML = Runtime("Databricks Runtime 18.0 ML", python="3.12", spark="4.1.0", libraries={
    "pyarrow": "21.0.0", "numpy": "2.1.3", "pandas": "2.2.3", "torch": "2.9.0", "torchvision": "0.24.0",
    "pillow": "11.1.0", "pyyaml": "6.0.2", "fsspec": "2023.5.0", "requests": "2.32.3", "matplotlib": "3.10.0",
    "mlflow-skinny": "3.8.1", "tensorboard": "2.20.0", "sqlalchemy": "2.0.39", "alembic": "1.17.1",
})
# https://docs.databricks.com/aws/en/release-notes/runtime/17.3lts-ml
DBR_17_3_LTS_ML = Runtime("Databricks Runtime 17.3 LTS ML", python="3.12", spark="4.0.0", libraries={
    "pyarrow": "19.0.1", "numpy": "2.1.3", "pandas": "2.2.3", "torch": "2.7.0", "torchvision": "0.22.0",
    "pillow": "11.1.0", "pyyaml": "6.0.2", "fsspec": "2023.5.0", "requests": "2.32.3", "matplotlib": "3.10.0",
    "mlflow-skinny": "3.0.1", "tensorboard": "2.19.0", "sqlalchemy": "2.0.37", "alembic": "1.16.5",
})
# Never installed on a runtime: it brings its own Spark and Delta, and petastorm would pull pyspark.
# (pyspark is a 450 MB sdist on PyPI, so no resolution here includes it: the spark extra's range is
# checked against the runtimes' Spark versions instead, from the wheel's metadata.)
NEVER_ON_A_RUNTIME = {"pyspark", "delta-spark", "petastorm"}
# Linux x86_64 wheels for glibc 2.28 and older (every manylinux tag up to 2.28, and the legacy
# aliases): the runtimes' Ubuntu runs them all, and pip does not widen a --platform by itself.
LINUX_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def _requirements_by_extra(wheel: Path) -> dict[str | None, list[Requirement]]:
    """The wheel's Requires-Dist by extra; ``None``: what a plain install requires."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = email.message_from_bytes(zf.read(next(n for n in zf.namelist()
                                                         if n.endswith(".dist-info/METADATA"))))
    extras = metadata.get_all("Provides-Extra") or []
    by_extra: dict[str | None, list[Requirement]] = {}
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        if requirement.marker is None:
            by_extra.setdefault(None, []).append(requirement)
            continue
        (extra,) = [e for e in extras if requirement.marker.evaluate({"extra": e})]
        by_extra.setdefault(extra, []).append(requirement)
    return by_extra


@pytest.fixture(scope="module")
def package_index(tmp_path_factory) -> None:
    """Skips unless pip reaches its package index (PyPI, or the mirror pip is configured with):
    the one network the tests use."""
    tmp = tmp_path_factory.mktemp("index-probe")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         "--disable-pip-version-check", "--timeout", "10", "--retries", "0", "--only-binary=:all:",
         "--report", str(tmp / "report.json"), "packaging==24.2"],
        capture_output=True, text=True, timeout=120, env=_clean_env(),
    )
    if proc.returncode != 0:
        pytest.skip(f"pip cannot reach its package index (PyPI), so the wheel cannot be resolved against "
                    f"the Databricks runtimes' libraries: {proc.stderr.strip()[-500:]}")


def _resolve(wheel: Path, runtime: Runtime, extra: str | None, tmp: Path) -> dict[str, str]:
    """What ``pip install <wheel>[extra]`` would install on the runtime (name: version), each of the
    runtime's libraries held at its version by a constraints file: pip fails where the wheel
    cannot live with one. Nothing is installed; only metadata is fetched."""
    tmp.mkdir()
    constraints = tmp / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in runtime.libraries.items()))
    report = tmp / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", str(report),
               "--disable-pip-version-check", "--python-version", runtime.python,
               "--only-binary=:all:", *(f"--platform={p}" for p in LINUX_PLATFORMS),
               f"{wheel}[{extra}]" if extra else str(wheel), "-c", str(constraints)]
    # fast-deps: an index without PEP 658 metadata files (some mirrors) would otherwise have pip
    # download every wheel whole (torch and its CUDA libraries: 4 GB) to read its dependencies; with
    # it, pip reads them with HTTP range requests. PyPI serves the metadata files, which pip prefers.
    proc = subprocess.run([*command[:4], "--use-feature=fast-deps", *command[4:]], capture_output=True, text=True,
                          timeout=300, env=_clean_env())
    if proc.returncode != 0 and "fast-deps" in proc.stderr and "invalid choice" in proc.stderr:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, (
        f"pip cannot install the wheel{f' [{extra}]' if extra else ''} on {runtime.name} "
        f"without changing its libraries:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def _assert_keeps_the_runtimes_libraries(wheel: Path, runtime: Runtime, tmp_path: Path) -> None:
    by_extra = _requirements_by_extra(wheel)
    direct = {canonicalize_name(r.name) for r in by_extra[None]}
    tracking = {canonicalize_name(r.name) for r in by_extra["tracking"]}
    # Every library the wheel requires, plain or with tracking, is one the runtime already has.
    assert direct | tracking <= runtime.libraries.keys(), (direct | tracking) - runtime.libraries.keys()
    # The plain install is the Databricks task's (a whl library); [tracking], a user's choice.
    for extra, required in ((None, direct), ("tracking", direct | tracking)):
        installed = _resolve(wheel, runtime, extra, tmp_path / (extra or "plain"))
        assert "lakeloop" in installed and required <= installed.keys(), (extra, required - installed.keys())
        changed = {name: f"{version} -> {installed[name]}" for name, version in runtime.libraries.items()
                   if name in installed and Version(installed[name]) != Version(version)}
        assert changed == {}, (extra, changed)
        assert installed.keys().isdisjoint(NEVER_ON_A_RUNTIME), (extra, installed.keys() & NEVER_ON_A_RUNTIME)


def test_the_wheel_installs_into_databricks_runtime_18_ml_without_changing_its_libraries(
        wheel, package_index, tmp_path):
    _assert_keeps_the_runtimes_libraries(wheel, DBR_18_ML, tmp_path)


def test_the_wheel_installs_into_databricks_runtime_17_3_lts_ml_without_changing_its_libraries(
        wheel, package_index, tmp_path):
    _assert_keeps_the_runtimes_libraries(wheel, DBR_17_3_LTS_ML, tmp_path)


def test_the_spark_extra_takes_the_spark_of_both_runtimes_and_petastorm_is_an_extra_of_its_own(wheel):
    by_extra = _requirements_by_extra(wheel)
    spark = {canonicalize_name(r.name): r.specifier for r in by_extra["spark"]}
    assert spark.keys() == {"pyspark", "delta-spark"}
    for runtime in (DBR_18_ML, DBR_17_3_LTS_ML):
        assert runtime.spark in spark["pyspark"], (runtime.name, spark["pyspark"])
    petastorm = {canonicalize_name(r.name): r.specifier for r in by_extra["petastorm"]}
    assert "0.12.1" in petastorm["petastorm"]
    # Petastorm holds pyarrow at 14, which Spark 4.1 does not take: it is the Spark 4.0 reader.
    assert "4.0.1" in petastorm["pyspark"] and "4.1.0" not in petastorm["pyspark"]


def _pins(stack: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / f"{stack}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


@pytest.mark.parametrize("stack, extras", [("current", ("spark", "tracking")),
                                           ("spark40", ("spark", "petastorm", "tracking"))])
def test_each_pinned_stack_satisfies_what_the_wheel_requires(wheel, stack, extras):
    by_extra = _requirements_by_extra(wheel)
    pins = _pins(stack)
    required = [*by_extra[None], *(r for extra in extras for r in by_extra[extra])]
    assert {canonicalize_name(r.name) for r in by_extra[None]} <= pins.keys()  # the stack tests them all
    unmet = {r.name: pins[canonicalize_name(r.name)] for r in required
             if canonicalize_name(r.name) in pins and pins[canonicalize_name(r.name)] not in r.specifier}
    assert unmet == {}, unmet

"""Build and run the ``spark-submit`` command for a job; what ``./spark-submit.sh`` calls.

    ./spark-submit.sh [--profile P] [--conf k=v ...] [--set k=v ...] [--py-files F[,F...]] [--dry-run]
                      JOB [JOB ARGS ...]

It packages ``lib/lakeloop`` as a zip for the executors (``--py-files``, with the user's own
modules given to ``--py-files``: a model factory, for instance), ships the
profile (``--files``, so a driver in cluster mode finds it in its working directory),
turns the profile's master and Spark settings (Delta, the resolved JVM jars, the
profile's ``spark.conf``) into flags, and runs ``jobs/JOB.py`` with the same profile
and overrides. The same jobs run unchanged on local, standalone, YARN and Databricks.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lakeloop.config import REPO_ROOT, find_profile, load_profile, repo_for
from lakeloop.errors import ConfigError, LakeloopError

USAGE = ("usage: ./spark-submit.sh [--profile P] [--conf k=v ...] [--set k=v ...] [--py-files F[,F...]] [--dry-run] "
         "JOB [ARGS ...]")
PY_FILE_ENDINGS = (".py", ".zip", ".egg")


BUILD_STAMP = "lakeloop/_build.json"


def checkout_commit(repo_root: Path = REPO_ROOT) -> str | None:
    """The checkout's git commit, with ``-dirty`` when ``lib/`` has local changes; None outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo_root), "status", "--porcelain", "--", "lib"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def package_library(out_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Zip ``lib/lakeloop`` (sources only) to ``out_dir/lakeloop.zip`` for ``--py-files``.

    The zip carries ``lakeloop/_build.json`` with the checkout's commit: the code version
    training records in every model's metadata (:func:`lakeloop.training.driver.code_version`).
    """
    src = repo_root / "lib" / "lakeloop"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "lakeloop.zip"
    # A temporary name of this process's own: jobs submitted at once each write theirs, and the
    # atomic rename leaves lakeloop.zip whole for a job reading it meanwhile.
    tmp = target.with_suffix(f".zip.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*.py")):
            zf.write(path, path.relative_to(src.parent).as_posix())
        zf.writestr(BUILD_STAMP, json.dumps({"commit": checkout_commit(repo_root)}))
    tmp.replace(target)
    return target


def spark_home() -> Path:
    """The Spark to submit with: $SPARK_HOME if the user's shell sets one, else pyspark's own."""
    # The wrapper, not the library: here the user's shell decides which Spark to use.
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "bin" / "spark-submit").exists():
        return Path(home)
    import pyspark

    home_path = Path(pyspark.__file__).parent
    if not (home_path / "bin" / "spark-submit").exists():
        raise ConfigError("spark-submit not found: run ./dev/setup.sh, or set SPARK_HOME to a Spark 4.0 install")
    return home_path


@dataclass(frozen=True)
class WrapperArgs:
    """The wrapper's own options, and the job with its arguments."""

    profile: str
    sets: tuple[str, ...]
    confs: tuple[str, ...]
    dry_run: bool
    job: str
    job_args: tuple[str, ...]
    py_files: tuple[Path, ...] = ()


def parse_wrapper_args(argv: Sequence[str]) -> WrapperArgs:
    """Split ``[--profile P] [--conf k=v] [--set k=v] [--py-files F] [--dry-run] JOB [ARGS]``; options end at JOB."""
    profile, sets, confs, dry_run, py_files = "local", [], [], False, []
    args = list(argv)
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--dry-run":
            dry_run = True
            continue
        if flag in ("-h", "--help"):
            raise ConfigError(USAGE)
        if flag not in ("--profile", "--set", "--conf", "--py-files"):
            raise ConfigError(f"unknown option {flag}\n{USAGE}")
        if not args:
            raise ConfigError(f"{flag} needs a value\n{USAGE}")
        value = args.pop(0)
        if flag == "--profile":
            profile = value
        elif flag == "--py-files":
            py_files += [user_py_file(part) for part in value.split(",") if part.strip()]
        else:
            (sets if flag == "--set" else confs).append(value)
    if not args:
        raise ConfigError(f"no job named\n{USAGE}")
    return WrapperArgs(profile, tuple(sets), tuple(confs), dry_run, args[0].removesuffix(".py"), tuple(args[1:]),
                       tuple(py_files))


def user_py_file(text: str) -> Path:
    """One ``--py-files`` entry: an existing ``.py``, ``.zip`` or ``.egg`` on this machine, made absolute."""
    path = Path(text.strip()).expanduser()
    if path.suffix.lower() not in PY_FILE_ENDINGS:
        raise ConfigError(f"--py-files {text}: ship a module as .py, or a package as .zip or .egg (a wheel: "
                          f"install it on every node)")
    if not path.is_file():
        raise ConfigError(f"--py-files {text}: no such file (from {Path.cwd()})")
    return path.resolve()


USER_MODULES_ZIP = "lakeloop-user-modules.zip"


def shipped_user_files(py_files: Sequence[Path], out_dir: Path) -> list[Path]:
    """What ``--py-files`` ships of the user's files: zips and eggs as they are, the ``.py`` modules
    packed into one zip. A zip is what torchrun's processes find through a relative ``PYTHONPATH``
    entry in the executor's folder (Spark drops a ``.`` entry there)."""
    modules = [p for p in py_files if p.suffix.lower() == ".py"]
    names = [p.name for p in modules]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError(f"--py-files names two modules {clash[0]}; a module name can be shipped once")
    shipped = [p for p in py_files if p.suffix.lower() != ".py"]
    if modules:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / USER_MODULES_ZIP
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in modules:
                zf.write(path, path.name)
        shipped.insert(0, target)
    return shipped


def driver_python_path(py_files: Sequence[Path]) -> list[str]:
    """Where the driver finds the user's modules before its SparkContext adds them: a ``.py``'s folder,
    a zip or egg itself."""
    entries: list[str] = []
    for path in py_files:
        entry = str(path.parent) if path.suffix.lower() == ".py" else str(path)
        if entry not in entries:
            entries.append(entry)
    return entries


def build_command(wrapper: WrapperArgs, repo_root: Path = REPO_ROOT) -> list[str]:
    """The full spark-submit argv that runs ``wrapper.job`` under its profile."""
    from lakeloop.runtime.session import spark_settings

    job_file = repo_root / "jobs" / f"{wrapper.job}.py"
    if not job_file.is_file():
        known = sorted(p.stem for p in (repo_root / "jobs").glob("*.py") if not p.stem.startswith("_"))
        raise ConfigError(f"unknown job {wrapper.job!r}; the jobs are: {', '.join(known)}")

    profile_path = find_profile(wrapper.profile, repo_root / "conf").resolve()
    repo = repo_for(profile_path, repo_root)
    profile = load_profile(str(profile_path), wrapper.sets, wrapper.confs, conf_dir=repo_root / "conf", repo_root=repo)
    library_zip = package_library(repo_root / "build", repo_root)

    cmd = [str(spark_home() / "bin" / "spark-submit")]
    if profile.spark.master:
        cmd += ["--master", profile.spark.master]
    cmd += ["--name", f"lakeloop-{wrapper.job}"]
    settings = spark_settings(profile)
    # --py-files reaches the Python workers' sys.path but not PYTHONPATH: processes they start
    # (TorchDistributor's torchrun) import lakeloop from the zip in the executor's working folder.
    # The user's own modules (--py-files) likewise, after what the profile already puts there.
    user_files = shipped_user_files(wrapper.py_files, repo_root / "build")
    entries = settings.get("spark.executorEnv.PYTHONPATH", library_zip.name).split(os.pathsep)
    entries += [p.name for p in user_files if p.name not in entries]
    settings["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(e for e in entries if e)
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    shipped = ",".join([str(library_zip), *map(str, user_files)])
    cmd += ["--py-files", shipped, "--files", str(profile_path), str(job_file)]
    # The job expands {repo} as this command did, even where the profile is a shipped copy.
    cmd += ["--profile", str(profile_path), "--repo", str(repo)]
    for item in wrapper.sets:
        cmd += ["--set", item]
    for item in wrapper.confs:
        cmd += ["--conf", item]
    if user_files:
        # The job's session applies the profile's Spark settings again: hand it the merged path too.
        cmd += ["--conf", f"spark.executorEnv.PYTHONPATH={settings['spark.executorEnv.PYTHONPATH']}"]
    return cmd + list(wrapper.job_args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        wrapper = parse_wrapper_args(argv)
        cmd = build_command(wrapper)
    except LakeloopError as exc:
        print(f"spark-submit.sh: {exc}", file=sys.stderr)
        return 2
    if wrapper.dry_run:
        print(" ".join(shlex.quote(part) for part in cmd))
        return 0
    env = dict(os.environ)
    env["SPARK_HOME"] = str(spark_home())
    # Executors in local mode import the checkout's code, like the driver.
    # So do the user's modules, and the driver before its SparkContext adds them.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "lib"), *driver_python_path(wrapper.py_files),
                                                      env.get("PYTHONPATH")]))
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

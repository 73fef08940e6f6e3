"""./spark-submit.sh: the command it builds, and its errors (no cluster needed)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from lakeloop.errors import ConfigError
from lakeloop.deploy.submit import build_command, package_library, parse_wrapper_args
from lakeloop.stacks import installed_stack

REPO = Path(__file__).resolve().parents[1]


def test_command_carries_profile_jars_and_library():
    cmd = build_command(parse_wrapper_args(
        ["--profile", "local", "--conf", "spark.executor.memory=1g", "--set", "ingest_images.max_pixels=9",
         "ingest_images", "--source", "file:/x"]
    ))
    joined = " ".join(cmd)
    assert cmd[0].endswith("bin/spark-submit")
    assert cmd[cmd.index("--master") + 1] == "local[*]"
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in cmd
    _, artifact, version = installed_stack().delta.split(":")  # the local profile's {delta}
    assert any(c.startswith("spark.jars=") and f"{artifact}-{version}.jar" in c for c in cmd)
    assert "spark.executor.memory=1g" in cmd
    assert cmd[cmd.index("--py-files") + 1].endswith("build/lakeloop.zip")
    job_at = cmd.index(str(REPO / "jobs" / "ingest_images.py"))
    assert cmd[job_at + 1:] == [
        "--profile", str(REPO / "conf" / "local.yaml"), "--repo", str(REPO), "--set", "ingest_images.max_pixels=9",
        "--conf", "spark.executor.memory=1g", "--source", "file:/x",
    ]
    assert "{repo}" not in joined


def test_py_files_ship_the_users_modules_to_the_executors_and_their_processes(tmp_path):
    (tmp_path / "acme_models.py").write_text("def build(spec): ...\n")
    (tmp_path / "acme_pkg.zip").write_bytes(b"")
    wrapper = parse_wrapper_args(["--py-files", f"{tmp_path}/acme_models.py,{tmp_path}/acme_pkg.zip", "train"])
    cmd = build_command(wrapper)
    shipped = cmd[cmd.index("--py-files") + 1].split(",")
    assert shipped[0].endswith("build/lakeloop.zip")
    assert shipped[1:] == [str(REPO / "build" / "lakeloop-user-modules.zip"), str(tmp_path / "acme_pkg.zip")]
    with zipfile.ZipFile(shipped[1]) as zf:
        assert zf.namelist() == ["acme_models.py"]
    # torchrun's processes see PYTHONPATH, not --py-files: the zips, named relative to the executor's folder.
    assert "spark.executorEnv.PYTHONPATH=lakeloop.zip:lakeloop-user-modules.zip:acme_pkg.zip" in cmd
    # Also where the profile sets that PYTHONPATH itself (as cluster-test does): the modules are added to it.
    cluster = build_command(parse_wrapper_args(["--profile", "cluster-test", "--py-files",
                                                f"{tmp_path}/acme_models.py", "train"]))
    assert "spark.executorEnv.PYTHONPATH=lakeloop.zip:lakeloop-user-modules.zip" in cluster
    # ... and the job, whose session applies the profile's settings again, is handed the merged value.
    job_args = cluster[cluster.index(str(REPO / "jobs" / "train.py")):]
    assert job_args[-2:] == ["--conf", "spark.executorEnv.PYTHONPATH=lakeloop.zip:lakeloop-user-modules.zip"]
    with pytest.raises(ConfigError, match=r"--py-files .*nowhere.py: no such file"):
        parse_wrapper_args(["--py-files", f"{tmp_path}/nowhere.py", "train"])
    with pytest.raises(ConfigError, match=r"ship a module as .py, or a package as .zip"):
        parse_wrapper_args(["--py-files", f"{tmp_path}/acme.whl", "train"])


def test_repo_means_the_same_checkout_to_the_wrapper_and_to_the_job(tmp_path):
    from lakeloop.cli.jobs import base_parser

    mine = tmp_path / "profiles" / "mine.yaml"  # not in a conf/ folder: {repo} is the checkout
    mine.parent.mkdir()
    mine.write_text(f"extends: {REPO}/conf/local.yaml\nlake_root: 'file:{{repo}}/elsewhere'\n")
    cmd = build_command(parse_wrapper_args(["--profile", str(mine), "build_features"]))
    job_args = cmd[cmd.index(str(REPO / "jobs" / "build_features.py")) + 1:]
    assert job_args == ["--profile", str(mine), "--repo", str(REPO)]
    args = base_parser("build_features", "").parse_args(job_args)
    from lakeloop.config import load_profile

    as_the_job_loads_it = load_profile(args.profile, repo_root=Path(args.repo))
    assert as_the_job_loads_it.lake_root == load_profile(str(mine)).lake_root == f"file:{REPO}/elsewhere"


def test_library_zip_holds_the_package_and_no_dev_tooling(tmp_path):
    names = zipfile.ZipFile(package_library(tmp_path)).namelist()
    assert "lakeloop/__init__.py" in names and "lakeloop/ingest/images.py" in names
    assert all(n.startswith("lakeloop/") for n in names)
    assert not [n for n in names if "services" in n or "demo" in n or "lakeloop_dev" in n]


def test_the_zip_stamps_the_commit_that_training_records_as_the_code_version(tmp_path):
    import json
    import re
    import sys

    zipped = package_library(tmp_path)
    stamp = json.loads(zipfile.ZipFile(zipped).read("lakeloop/_build.json"))
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", stamp["commit"]), stamp
    else:
        assert stamp["commit"] is None
    # What a driver or executor that imports lakeloop from the shipped zip reports.
    code = (f"import sys; sys.path.insert(0, {str(zipped)!r}); import lakeloop; "
            "assert lakeloop.__file__.startswith(sys.path[0]), lakeloop.__file__; "
            "from lakeloop.training.driver import code_version; print(code_version())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out == (stamp["commit"] or "lakeloop-0.1.0")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no job named"),
        (["--profile"], "--profile needs a value"),
        (["--bogus", "x", "ingest_images"], "unknown option --bogus"),
        (["no_such_job"], "unknown job 'no_such_job'; the jobs are: .*ingest_images"),
        (["--profile", "nope", "ingest_images"], "profile 'nope' not found"),
    ],
)
def test_wrapper_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        build_command(parse_wrapper_args(argv))


def test_script_dry_run_prints_the_command():
    out = subprocess.run(
        [str(REPO / "spark-submit.sh"), "--dry-run", "--profile", "yarn", "ingest_images"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "--master yarn" in out and "spark.submit.deployMode=client" in out
    assert "jobs/ingest_images.py --profile" in out


def test_script_unknown_job_exits_2():
    proc = subprocess.run([str(REPO / "spark-submit.sh"), "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown job 'nope'" in proc.stderr


def test_a_local_driver_starts_from_the_class_archive_the_setup_wrote_and_as_before_without_one(tmp_path):
    from lakeloop.config import load_profile
    from lakeloop.runtime.jars import class_archive_path
    from lakeloop.runtime.session import spark_settings

    profile = load_profile("local", [("jvm.cache_dir", str(tmp_path)), ("jvm.packages", [])])
    archive = class_archive_path(profile.jvm, [])
    assert archive.parent.parent == tmp_path
    without = spark_settings(profile)["spark.driver.extraJavaOptions"]
    assert "SharedArchiveFile" not in without and "-XX:+UseSerialGC" in without
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"written by lakeloop jars archive")
    options = spark_settings(profile)["spark.driver.extraJavaOptions"]
    assert options.startswith(without) and f"-XX:SharedArchiveFile={archive}" in options
    # Another jar set is another archive; a profile may turn it off; a cluster profile does.
    assert class_archive_path(profile.jvm, ["/jars/extra.jar"]) != archive
    off = load_profile("local", [("jvm.cache_dir", str(tmp_path)), ("jvm.packages", []), ("jvm.class_archive", False)])
    assert "SharedArchiveFile" not in spark_settings(off)["spark.driver.extraJavaOptions"]
    assert not load_profile("yarn").jvm.class_archive and not load_profile("databricks").jvm.class_archive


def test_a_local_driver_that_compiles_with_c1_alone_keeps_a_code_cache_that_lasts_a_long_session():
    """C1 alone gets a 48 MB code cache, which a session fills in about a minute; the JVM then stops
    compiling for good and runs everything after that interpreted."""
    import shlex
    import shutil

    from lakeloop.config import load_profile
    from lakeloop.runtime.session import spark_settings

    options = [o for o in shlex.split(spark_settings(load_profile("local"))["spark.driver.extraJavaOptions"])
               if o.startswith("-XX:") and "SharedArchiveFile" not in o]
    assert "-XX:TieredStopAtLevel=1" in options
    proc = subprocess.run([shutil.which("java") or "java", *options, "-XX:+PrintFlagsFinal", "-version"],
                          capture_output=True, text=True, check=True)
    reserved = next(int(line.split("=")[1].split()[0]) for line in proc.stdout.splitlines()
                    if line.split()[1:2] == ["ReservedCodeCacheSize"])
    assert reserved >= 240 * 1024 * 1024

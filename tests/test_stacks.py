"""The two supported stacks (lakeloop.stacks) and the profile placeholders they fill: {delta},
{kafka}, {hadoop_aws} and {site_packages}. No Spark session: profiles, metadata and files."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lakeloop.config import JvmSettings, load_profile
from lakeloop.errors import ConfigError
from lakeloop.runtime import jars
from lakeloop.stacks import CURRENT, SPARK40, STACKS, installed_stack, stack_for_pyspark, stack_for_runtime

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.stacks


@pytest.mark.parametrize(("pyspark", "stack"), [("4.1.4", CURRENT), ("4.1.0", CURRENT), ("4.0.1", SPARK40),
                                                ("4.0.0", SPARK40)])
def test_a_pyspark_version_picks_the_stack_of_its_line(pyspark, stack):
    assert stack_for_pyspark(pyspark) is stack


@pytest.mark.parametrize("pyspark", ["3.5.3", "4.2.0", "4.10.1", "5.0.0"])
def test_an_unknown_pyspark_version_is_refused_naming_the_supported_ones_and_the_fix(pyspark):
    with pytest.raises(ConfigError) as info:
        stack_for_pyspark(pyspark)
    message = str(info.value)
    assert f"pyspark {pyspark} is not supported" in message
    assert "pyspark 4.1.x (current)" in message and "pyspark 4.0.x (spark40)" in message
    assert "pip install 'lakeloop[spark]'" in message


def test_a_profiles_delta_is_the_41_jar_on_pyspark_41_and_the_40_jar_on_pyspark_40():
    on_41 = load_profile("local", stack=stack_for_pyspark("4.1.4")).jvm.packages
    on_40 = load_profile("local", stack=stack_for_pyspark("4.0.1")).jvm.packages
    assert on_41 == ("io.delta:delta-spark_4.1_2.13:4.4.0", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1")
    assert on_40 == ("io.delta:delta-spark_2.13:4.0.0", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0")


def test_the_s3_profiles_hadoop_aws_is_the_version_of_each_pysparks_hadoop_client():
    assert load_profile("s3-test", stack=CURRENT).jvm.packages == ("io.delta:delta-spark_4.1_2.13:4.4.0",
                                                                  "org.apache.hadoop:hadoop-aws:3.4.2")
    assert load_profile("s3-test", stack=SPARK40).jvm.packages == ("io.delta:delta-spark_2.13:4.0.0",
                                                                  "org.apache.hadoop:hadoop-aws:3.4.1")


def test_the_local_profiles_packages_are_the_coordinates_of_the_installed_pyspark():
    stack = installed_stack()
    assert stack is stack_for_pyspark(version("pyspark"))
    assert load_profile("local").jvm.packages == (stack.delta, stack.kafka)
    assert load_profile("test").jvm.packages == (stack.delta, stack.kafka)
    assert load_profile("s3-test").jvm.packages == (stack.delta, stack.hadoop_aws)


def test_the_installed_stacks_hadoop_and_scala_are_those_of_the_jars_pyspark_ships():
    import pyspark

    shipped = {p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    stack = installed_stack()
    assert f"hadoop-client-api-{stack.hadoop}.jar" in shipped  # hadoop-aws and the minicluster must match it
    assert any(n.startswith("scala-library-2.13.") for n in shipped)  # the _2.13 of every coordinate
    assert all("_2.13" in c for c in (stack.delta, stack.kafka))


def test_the_yarn_test_profile_ships_the_jars_of_the_drivers_pyspark():
    jars_glob = load_profile("yarn-test").spark.conf["spark.yarn.jars"]
    assert jars_glob.startswith("local:") and jars_glob.endswith("/pyspark/jars/*")
    import pyspark

    assert Path(jars_glob.removeprefix("local:").removesuffix("*")) == Path(pyspark.__file__).parent / "jars"


def test_each_stack_has_its_own_databricks_runtime_and_python():
    assert [(s.name, s.spark_line, s.python) for s in STACKS] == [("current", "4.1", "3.12"),
                                                                  ("spark40", "4.0", "3.11")]
    assert stack_for_runtime("18.0.x-cpu-ml-scala2.13") is CURRENT
    assert stack_for_runtime("18.x-gpu-ml-scala2.13") is CURRENT
    assert stack_for_runtime("17.3.x-cpu-ml-scala2.13") is SPARK40
    assert stack_for_runtime("16.4.x-cpu-ml-scala2.12") is None
    assert stack_for_runtime("180.1.x-cpu-ml-scala2.13") is None


def test_a_placeholder_that_reaches_the_jar_cache_unexpanded_names_what_it_stands_for():
    with pytest.raises(ConfigError, match=r"'\{kafka\}' was not expanded; with pyspark 4\.\d\.x it is "
                                          r"org\.apache\.spark:spark-sql-kafka-0-10_2\.13:4\.\d\.\d"):
        jars.cache_dir_for(JvmSettings(packages=("{kafka}",)))
    with pytest.raises(ConfigError, match=r"'\{scala\}' is not group:artifact:version"):
        jars.cache_dir_for(JvmSettings(packages=("{scala}",)))


# A Python that sees lakeloop and PyYAML but no pyspark: -S leaves site-packages off sys.path, so
# importlib.metadata finds no pyspark distribution (nothing is faked).
_WITHOUT_PYSPARK = """
import json, sys
from lakeloop.config import load_profile
from lakeloop.errors import ConfigError
from lakeloop.runtime import jars
profile = load_profile("local")
try:
    jars.resolved_jars(profile.jvm)
    error = None
except ConfigError as exc:
    error = str(exc)
print(json.dumps({"packages": list(profile.jvm.packages), "error": error}))
"""


def test_without_pyspark_a_profile_naming_delta_loads_and_the_error_comes_when_its_jars_are_needed(tmp_path):
    import yaml

    (tmp_path / "yaml").symlink_to(Path(yaml.__file__).parent)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{tmp_path}"}
    proc = subprocess.run([sys.executable, "-S", "-c", _WITHOUT_PYSPARK], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["packages"] == ["{delta}", "{kafka}"]
    assert "'{delta}' is a placeholder for the delta jar of the installed pyspark's stack" in out["error"]
    assert "pyspark is not installed" in out["error"] and "pip install 'lakeloop[spark]'" in out["error"]
    assert "write the coordinates" in out["error"]


def test_site_packages_names_the_folder_of_pysparks_jars_also_when_spark_submit_imports_pyspark_from_its_zip():
    # Under spark-submit pyspark comes from $SPARK_HOME/python/lib/pyspark.zip; {site_packages}
    # (spark.yarn.jars of the YARN profile) must still name the folder the jars lie in.
    import pyspark

    zipped = next(Path(pyspark.__file__).parent.glob("python/lib/pyspark.zip"))
    env = {**os.environ, "PYTHONPATH": f"{zipped}{os.pathsep}{Path(__file__).parents[1] / 'lib'}"}
    out = subprocess.run([sys.executable, "-c", "import pyspark; from lakeloop.stacks import packages_folder; "
                          "print(pyspark.__file__); print(packages_folder())"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert ".zip" in out[0]
    assert (Path(out[1]) / "pyspark" / "jars").is_dir(), out

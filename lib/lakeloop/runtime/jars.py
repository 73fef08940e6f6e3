"""Resolve the JVM packages a profile names (Delta, hadoop-aws, ...) from Maven Central, once.

The setup runs ``lakeloop jars resolve --profile P`` (:mod:`lakeloop.cli.jars`): it writes a throw-away
POM, lets ``mvn dependency:copy-dependencies`` fetch the packages with their runtime
dependencies into ``<jvm.cache_dir>/<hash of the coordinates>/``, drops the jars Spark
already ships (a second scala-library or antlr beside Spark's own breaks the driver),
and writes ``jars.txt`` last, so a half-finished download is never taken for a cache.
Jobs, tests and notebooks then only read that list: nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from lakeloop.config import JAR_PLACEHOLDERS, JvmSettings
from lakeloop.errors import ConfigError, LakeloopError, SetupError
from lakeloop.stacks import installed_stack

MANIFEST = "jars.txt"
KEEP_ALL = ("*",)
# Spark's parent POM lists a Maven Central mirror on Google Cloud Storage before Central; where that
# host is unreachable Maven fails instead of trying Central (spark-sql-kafka's dependencies). The
# throw-away POM declares a repository of that id at Central itself, which takes its place; the
# user's own settings (mirrors, proxies) still apply.
_REPOSITORIES = ('<repositories><repository><id>gcs-maven-central-mirror</id>'
                 '<url>https://repo.maven.apache.org/maven2</url></repository></repositories>')
_COORD = re.compile(r"^[\w.\-]+:[\w.\-]+:[\w.\-]+$")


def _cache_root(jvm: JvmSettings) -> Path:
    return Path(os.path.expanduser(jvm.cache_dir))


def _placeholder_problem(coord: str) -> str | None:
    """Why a profile's ``{delta}`` (``{kafka}``, ``{hadoop_aws}``) was left unexpanded, or None for any other entry."""
    name = coord[1:-1] if coord.startswith("{") and coord.endswith("}") else None
    if name not in JAR_PLACEHOLDERS:
        return None
    try:
        stack = installed_stack()
    except LakeloopError as exc:
        reason = str(exc)
    else:  # a supported pyspark is here: these settings did not come through load_profile
        return (f"jvm.packages entry {coord!r} was not expanded; with pyspark {stack.spark_line}.x it is "
                f"{stack.placeholders()[name]}. Load the profile again in this Python")
    return (f"jvm.packages entry {coord!r} is a placeholder for the {name} jar of the installed pyspark's stack "
            f"(lakeloop.stacks), but it cannot be chosen here: {reason}. Or write the coordinates "
            f"(group:artifact:version) in jvm.packages instead, e.g. --set 'jvm.packages=[...]'")


def cache_dir_for(jvm: JvmSettings, keep: tuple[str, ...] = ()) -> Path:
    """Folder that holds (or will hold) the jars of exactly these coordinates.

    Raises
    ------
    ConfigError
        an entry is not ``group:artifact:version``, or is a placeholder (``{delta}``) left as
        written because no supported pyspark is installed; the message says how to fix it.
    """
    for coord in jvm.packages:
        if not _COORD.match(coord):
            raise ConfigError(_placeholder_problem(coord)
                              or f"jvm.packages entry {coord!r} is not group:artifact:version")
    key_text = "\n".join(sorted(jvm.packages)) + ("\nkeep:" + ",".join(sorted(keep)) if keep else "")
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    return _cache_root(jvm) / key


def resolved_jars(jvm: JvmSettings, keep: tuple[str, ...] = ()) -> list[str]:
    """Local paths of the resolved jars, in a stable order.

    Raises
    ------
    SetupError
        if the packages were never resolved on this machine.
    """
    if not jvm.packages:
        return []
    manifest = cache_dir_for(jvm, keep) / MANIFEST
    if not manifest.is_file():
        raise SetupError(
            f"the JVM packages {', '.join(jvm.packages)} are not resolved on this machine "
            f"(no {manifest}). Run ./dev/setup.sh (or lakeloop jars resolve --profile NAME)."
        )
    jars = [line for line in manifest.read_text().splitlines() if line.strip()]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise SetupError(f"jar cache {manifest.parent} is incomplete ({missing[0]} is gone); run ./dev/setup.sh again")
    return jars


def class_archive_path(jvm: JvmSettings, jars: list[str]) -> Path:
    """Where the JVM class archive for this Spark and these jars lives (another Spark or another
    jar set is another file, so a stale archive is never offered)."""
    from importlib.metadata import version

    key_text = "\n".join([f"pyspark {version('pyspark')}", *jars])
    return _cache_root(jvm) / "class-archives" / f"{hashlib.sha256(key_text.encode()).hexdigest()[:16]}.jsa"


def _spark_jar_names() -> set[str]:
    import pyspark

    jars_dir = Path(pyspark.__file__).parent / "jars"
    return {_artifact_name(p.name) for p in jars_dir.glob("*.jar")}


def _artifact_name(filename: str) -> str:
    """``antlr4-runtime-4.13.1.jar`` -> ``antlr4-runtime``."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", filename)


def _pom(packages: tuple[str, ...]) -> str:
    deps = []
    for coord in packages:
        group, artifact, version = (escape(p) for p in coord.split(":"))
        deps.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>lakeloop.local</groupId><artifactId>lakeloop-jvm-deps</artifactId><version>0</version>"
        f"<packaging>pom</packaging>{_REPOSITORIES}<dependencies>{''.join(deps)}</dependencies></project>"
    )


def resolve(jvm: JvmSettings, mvn: str = "mvn", keep: tuple[str, ...] = ()) -> list[str]:
    """Fetch the packages with Maven unless they are cached; return the jar paths.

    ``keep`` names artifacts (``jaxb-runtime``) to keep even though Spark ships one of that
    name: for a JVM that needs both (the Hadoop minicluster wants the javax-era version);
    :data:`KEEP_ALL` keeps every jar, for a JVM that runs without Spark's (a Kafka broker).
    """
    if not jvm.packages:
        return []
    try:
        return resolved_jars(jvm, keep)
    except SetupError:
        pass
    if shutil.which(mvn) is None:
        raise SetupError(f"'{mvn}' is not on PATH; install Maven (apt-get install maven) to resolve {jvm.packages}")
    target = cache_dir_for(jvm, keep)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lakeloop-mvn-") as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_pom(jvm.packages))
        out = Path(work) / "jars"
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        print(f"lakeloop jars: resolving {', '.join(jvm.packages)} with Maven ...", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(
                f"Maven could not resolve {', '.join(jvm.packages)} (exit {proc.returncode}). "
                f"Check the coordinates and that Maven Central is reachable.\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        provided = _spark_jar_names()
        kept = []
        for jar in sorted(out.glob("*.jar")):
            if _artifact_name(jar.name) in provided and _artifact_name(jar.name) not in keep and keep != KEEP_ALL:
                continue
            dest = target / jar.name
            shutil.copy2(jar, dest)
            kept.append(str(dest))
    tmp_manifest = target / (MANIFEST + ".tmp")
    tmp_manifest.write_text("\n".join(kept) + "\n")
    tmp_manifest.replace(target / MANIFEST)
    return kept

"""S3 on loopback: S3Proxy (``org.gaul:s3proxy``, one self-contained jar from Maven Central) with
jclouds' in-memory ``transient`` store, the one of its backends whose semantics Hadoop's s3a
needs (see :meth:`S3Server.start`); it checks AWS signatures, so a wrong key fails as on S3.
Objects live as long as the process. Its port, test credentials and bucket are read from
``conf/s3-test.yaml`` (``spark.hadoop.fs.s3a.endpoint`` / ``.access.key`` / ``.secret.key`` and
``lake_root``), so the server and the profile cannot disagree. Secrets are passed to S3Proxy in
a file readable by the owner only and never printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from lakeloop.errors import SetupError
from lakeloop_dev.processes import START_TIMEOUT_S, PidFileService, java, port_open, spawn, state_dir, tail, wait_until

S3PROXY_COORDINATE = "org.gaul:s3proxy:4.1.0:jar:jar-with-dependencies"
S3_PROFILE = "s3-test"


@dataclass(frozen=True)
class S3Settings:
    """What the S3 server and its clients must agree on; read from a profile."""

    host: str
    port: int
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def hadoop_conf(self) -> dict[str, str]:
        """The ``fs.s3a.*`` settings that reach this server (for :mod:`lakeloop.lakefs`)."""
        return {"fs.s3a.endpoint": self.endpoint, "fs.s3a.endpoint.region": self.region,
                "fs.s3a.path.style.access": "true", "fs.s3a.access.key": self.access_key,
                "fs.s3a.secret.key": self.secret_key}

    def __repr__(self) -> str:  # never show the secret
        return f"S3Settings(endpoint={self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"


def s3_settings(profile_name: str = S3_PROFILE) -> S3Settings:
    """Host, port, credentials and bucket of the S3 test server, from ``conf/<profile>.yaml``.

    Raises
    ------
    SetupError
        the profile has no loopback ``http://`` endpoint, no keys, or a lake outside ``s3a://``.
    """
    from lakeloop.config import load_profile

    profile = load_profile(profile_name)
    conf = {k: v for k, v in profile.spark.conf.items() if v is not None}
    endpoint = urllib.parse.urlparse(conf.get("spark.hadoop.fs.s3a.endpoint", ""))
    access, secret = conf.get("spark.hadoop.fs.s3a.access.key"), conf.get("spark.hadoop.fs.s3a.secret.key")
    lake = urllib.parse.urlparse(profile.lake_root)
    if endpoint.scheme != "http" or endpoint.hostname not in ("127.0.0.1", "localhost") or not endpoint.port:
        raise SetupError(f"profile {profile_name}: spark.hadoop.fs.s3a.endpoint must be http://127.0.0.1:PORT "
                         f"for the loopback S3 server")
    if not access or not secret:
        raise SetupError(f"profile {profile_name}: the loopback S3 server needs spark.hadoop.fs.s3a.access.key "
                         f"and spark.hadoop.fs.s3a.secret.key (test values)")
    if lake.scheme != "s3a" or not lake.netloc:
        raise SetupError(f"profile {profile_name}: lake_root must be s3a://bucket/..., found {profile.lake_root!r}")
    region = conf.get("spark.hadoop.fs.s3a.endpoint.region", "us-east-1")
    return S3Settings(endpoint.hostname, endpoint.port, access, secret, region, lake.netloc)


def s3proxy_jar(cache_dir: Path | None = None, mvn: str = "mvn") -> Path:
    """The S3Proxy jar, fetched once from Maven Central into the jar cache.

    Raises
    ------
    SetupError
        Maven is missing or cannot fetch it.
    """
    _, artifact, version, _, classifier = S3PROXY_COORDINATE.split(":")
    cache = cache_dir or Path.home() / ".cache" / "lakeloop" / "jars" / "tools"
    jar = cache / f"{artifact}-{version}-{classifier}.jar"
    if jar.is_file():
        return jar
    if shutil.which(mvn) is None:
        raise SetupError(f"'{mvn}' is not on PATH; run ./dev/setup.sh (it installs Maven) to fetch {S3PROXY_COORDINATE}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".fetch-{os.getpid()}"
    cmd = [mvn, "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
           f"-Dartifact={S3PROXY_COORDINATE}", f"-DoutputDirectory={tmp}"]
    print(f"lakeloop_dev.s3: fetching {S3PROXY_COORDINATE} with Maven ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    fetched = tmp / jar.name
    if proc.returncode != 0 or not fetched.is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"Maven could not fetch {S3PROXY_COORDINATE} (exit {proc.returncode}); check that Maven "
                         f"Central is reachable.\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    fetched.replace(jar)
    shutil.rmtree(tmp, ignore_errors=True)
    return jar


class S3Server(PidFileService):
    """One S3Proxy process on loopback (objects in its memory; pid file, log and settings under ``root``).

    ``start()`` reuses a server already answering on the port with these credentials;
    ``owned`` says whether this object started the process (and so may stop it).
    """

    NAME = "s3proxy"
    MARKER = "s3proxy"

    def __init__(self, settings: S3Settings, root: Path):
        super().__init__(root)
        self.settings = settings

    def filesystem(self, allow_bucket_creation: bool = False):
        """A pyarrow ``S3FileSystem`` on this server (short timeouts: it is on loopback)."""
        from pyarrow.fs import S3FileSystem

        s = self.settings
        return S3FileSystem(access_key=s.access_key, secret_key=s.secret_key, region=s.region, scheme="http",
                            endpoint_override=f"{s.host}:{s.port}", allow_bucket_creation=allow_bucket_creation,
                            connect_timeout=2, request_timeout=10)

    def healthy(self) -> bool:
        """The port answers S3 and accepts these credentials (a bucket listing succeeds)."""
        if not port_open(self.settings.host, self.settings.port):
            return False
        try:
            from pyarrow.fs import FileSelector

            self.filesystem().get_file_info(FileSelector("/", recursive=False))
            return True
        except OSError:
            return False

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "S3Server":
        """Start S3Proxy (or reuse a healthy server on the port) and create the bucket.

        Raises
        ------
        SetupError
            the port is taken by something that is not this S3 server, or S3Proxy did
            not come up (the message carries the end of its log).
        """
        if self.healthy():
            self.ensure_bucket()
            return self
        if port_open(self.settings.host, self.settings.port):
            raise SetupError(
                f"127.0.0.1:{self.settings.port} is in use by something that does not answer as the lakeloop "
                f"S3 test server (wrong credentials or not S3); stop it or change spark.hadoop.fs.s3a.endpoint "
                f"in conf/{S3_PROFILE}.yaml")
        jar = s3proxy_jar()
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "s3proxy.properties"
        s = self.settings
        properties = "\n".join([
            f"s3proxy.endpoint=http://{s.host}:{s.port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={s.access_key}",
            f"s3proxy.credential={s.secret_key}",
            # In memory: jclouds' map store is the backend whose semantics s3a needs. The
            # file-backed ones (filesystem, filesystem-nio2) answer HEAD on a key that is a
            # folder on disk as if it were a file, so Delta's mkdirs of _delta_log/_staged_commits
            # fails ("Path is a file").
            "jclouds.provider=transient",
            "jclouds.region=" + s.region,
        ]) + "\n"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(properties)
        cmd = [java(), "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Dorg.eclipse.jetty.LEVEL=WARN", "-jar", str(jar), "--properties", str(conf)]
        proc = spawn(cmd, self.log, self.pid_file)
        self.owned = True
        if wait_until(self.healthy, timeout_s, alive=lambda: proc.poll() is None):
            self.ensure_bucket()
            return self
        self.stop()
        raise SetupError(f"S3Proxy did not answer on {s.endpoint} within {timeout_s:.0f} s; its log "
                         f"({self.log}) ends with:\n{tail(self.log)}")

    def ensure_bucket(self) -> None:
        from pyarrow.fs import FileType

        fs = self.filesystem(allow_bucket_creation=True)
        if fs.get_file_info(self.settings.bucket).type == FileType.NotFound:
            fs.create_dir(self.settings.bucket)

    def up_line(self) -> str:
        return f"up at {self.settings.endpoint}, bucket {self.settings.bucket}, log {self.log}"

    def status_line(self) -> str:
        return f"{'up' if self.healthy() else 'down'} at {self.settings.endpoint} (pid {self.pid() or '-'}, state {self.root})"


def default_s3_server() -> S3Server:
    """The S3 server ``conf/s3-test.yaml`` describes, with its state in ``<state>/s3``."""
    return S3Server(s3_settings(), state_dir() / "s3")

"""File access to lake URIs without Spark, through ``pyarrow.fs``.

:mod:`lakeloop.io.hadoop` goes through Spark's JVM; this module is for the processes that
have no SparkSession: training processes launched by TorchDistributor, pandas-UDF
workers, a GPU box without a JVM. It understands the URIs the profiles use:

* ``file:/a/b``, ``file:///a/b`` -> ``LocalFileSystem``, path ``/a/b``;
* ``dbfs:/a/b`` -> ``LocalFileSystem`` on the Databricks FUSE mount, path ``/dbfs/a/b``;
* ``s3a://bucket/key`` -> ``S3FileSystem`` set up from the ``fs.s3a.*`` keys, path ``bucket/key``;
* ``hdfs://host:port/a`` -> ``HadoopFileSystem(host, port)``, path ``/a``; or, with
  ``lakeloop.hdfs.client=webhdfs``, WebHDFS at ``dfs.namenode.http-address`` (no native
  library needed; :mod:`lakeloop.io.webhdfs`).

:class:`LakeFiles` binds those settings once (``LakeFiles(profile.hadoop_conf())``) and
offers the few operations lakeloop needs (read, atomic write, move, digest, list, exists, delete).
Settings come only from the ``hadoop_conf`` mapping a caller passes (Hadoop keys, with
or without the ``spark.hadoop.`` prefix). Nothing is read from the environment here, except
what pyarrow itself reads: the default AWS credential chain when no S3 keys are given,
and ``JAVA_HOME``/``ARROW_LIBHDFS_DIR``/``HADOOP_HOME``/``CLASSPATH`` for libhdfs; WebHDFS acts
as the login name unless ``lakeloop.hdfs.user`` says otherwise.
Secret values are never logged nor put in error messages.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from lakeloop.errors import ConfigError, SetupError, SourceChanged, SourceError
from lakeloop.layout import LAKE_SCHEMES as SUPPORTED_SCHEMES
from lakeloop.layout import VOLUMES_ROOT
from lakeloop.layout import safe_uri as _safe_uri

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

SPARK_HADOOP_PREFIX = "spark.hadoop."
S3A_PREFIX = "fs.s3a."
# Hadoop keys handed to libhdfs as extra_conf; S3 keys (and their secrets) stay out of the JVM.
_HDFS_KEY_PREFIXES = ("dfs.", "hadoop.", "ipc.", "fs.defaultFS", "fs.hdfs.")
# Which HDFS client the processes without Spark use: "libhdfs" (pyarrow's HadoopFileSystem,
# the default) or "webhdfs" (HTTP to dfs.namenode.http-address; lakeloop.io.webhdfs), and the
# user name WebHDFS acts as (default: the login name, as libhdfs does).
HDFS_CLIENT_KEY = "lakeloop.hdfs.client"
HDFS_USER_KEY = "lakeloop.hdfs.user"
# How an image whose bytes bronze does not hold (ingested by reference, read from its source) is
# named in the errors of the steps that read it.
REFERENCED_IMAGE = "the image ingested by reference"
_REFERENCE_FIX = ("run ingest_images again to take the folder as it is now (a changed file becomes a new image), or "
                  "put the original back and run build_features with --set features.incremental=false")
_SECRET_SUFFIXES = ("access.key", "secret.key", "session.token")
_URI = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*):(?P<rest>.*)$", re.DOTALL)
_AWS_ENDPOINT_REGION = re.compile(r"^s3[.-](?:dualstack\.)?(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com")


# --------------------------------------------------------------------------- settings


def _normalise_conf(hadoop_conf: Mapping[str, str] | None) -> dict[str, str]:
    """Hadoop keys without the ``spark.hadoop.`` prefix; a plain key wins over a prefixed one."""
    conf = {key[len(SPARK_HADOOP_PREFIX):]: str(value) for key, value in (hadoop_conf or {}).items()
            if key.startswith(SPARK_HADOOP_PREFIX) and value is not None}
    for key, value in (hadoop_conf or {}).items():
        if not key.startswith(SPARK_HADOOP_PREFIX) and value is not None:
            conf[key] = str(value)
    return conf


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --------------------------------------------------------------------------- filesystems


def filesystem_for(uri: str, hadoop_conf: Mapping[str, str] | None = None) -> tuple["FileSystem", str]:
    """The pyarrow filesystem serving ``uri`` and the path of ``uri`` inside it.

    Parameters
    ----------
    uri : a lake URI: ``file:/...``, ``file:///...``, ``dbfs:/...``, ``s3a://bucket/key`` (or ``s3://``),
        ``hdfs://host[:port]/path`` (``hdfs:///path`` uses ``fs.defaultFS``), ``abfss://`` / ``wasbs://``
        / ``gs://`` (:mod:`lakeloop.io.cloudfs`), or a Unity Catalog volume ``/Volumes/...`` (also
        ``dbfs:/Volumes/...``), a local path on Databricks.
    hadoop_conf : Hadoop settings, as ``fs.s3a.endpoint`` or ``spark.hadoop.fs.s3a.endpoint``.

    Returns
    -------
    (pyarrow.fs.FileSystem, str)
        e.g. ``(LocalFileSystem(), "/a/b")`` or ``(S3FileSystem(...), "bucket/key")``.

    Raises
    ------
    ConfigError
        no scheme, an unsupported scheme, a malformed URI, or inconsistent S3 settings.
    SetupError
        an ``hdfs:`` URI on a machine without a JVM or libhdfs.
    SourceError
        the HDFS client loaded but could not connect.

    Notes
    -----
    S3 settings read (a per-bucket ``fs.s3a.bucket.<bucket>.X`` wins over ``fs.s3a.X``):
    ``endpoint`` (``http://`` / ``https://`` prefix sets the scheme, else
    ``connection.ssl.enabled``, default true), ``endpoint.region`` or ``region`` (else taken
    from an AWS endpoint name ``s3.<region>.amazonaws.com``, else pyarrow's default chain),
    ``access.key`` + ``secret.key`` [+ ``session.token``] (when absent, pyarrow's default AWS
    credential chain: environment, ``~/.aws``, instance metadata), ``aws.credentials.provider``
    (``AnonymousAWSCredentialsProvider`` -> anonymous access) and ``path.style.access``.
    pyarrow addresses buckets by path whenever an endpoint is set and by virtual host
    against AWS; ``path.style.access=false`` with an endpoint asks for virtual hosts,
    which needs pyarrow >= 15 (a warning says so on older ones).
    """
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"lake URI {uri!r} must be a non-empty string such as 'file:/data/lake'")
    if _is_volume(uri):  # a Unity Catalog volume: a local path on every Databricks node (FUSE), no scheme
        from pyarrow.fs import LocalFileSystem

        return LocalFileSystem(), _strip_path(uri)
    match = _URI.match(uri)
    # "C:\x" parses as scheme "C"; treat one-letter schemes as the Windows paths they are.
    if not match or len(match.group("scheme")) == 1:
        raise ConfigError(
            f"{_safe_uri(uri)!r} has no URI scheme. Write 'file:/absolute/path' for a local folder, "
            f"'hdfs://namenode:8020/path' for HDFS or 's3a://bucket/path' for S3."
        )
    scheme, rest = match.group("scheme").lower(), match.group("rest")
    conf = _normalise_conf(hadoop_conf)
    if scheme == "file":
        from pyarrow.fs import LocalFileSystem

        return LocalFileSystem(), _local_path(uri, rest)
    if scheme == "dbfs":
        from pyarrow.fs import LocalFileSystem

        # Databricks mounts DBFS at /dbfs on the driver and the workers; Unity Catalog volumes at /Volumes.
        inner = _local_path(uri, rest)
        return LocalFileSystem(), inner if _is_volume(inner) else "/dbfs" if inner == "/" else f"/dbfs{inner}"
    if scheme in ("s3a", "s3"):
        return _s3(uri, rest, conf)
    if scheme == "hdfs":
        return _hdfs(uri, rest, conf)
    if scheme in ("abfss", "wasbs", "gs"):
        return _cloud(uri, scheme, rest, conf)
    hint = " Write s3a://bucket/key for S3." if scheme in ("s3n",) else ""
    raise ConfigError(
        f"{_safe_uri(uri)!r}: scheme {scheme + ':'!r} is not supported without Spark; "
        f"supported schemes: {', '.join(s + ':' for s in SUPPORTED_SCHEMES)}.{hint}"
    )


def _cloud(uri: str, scheme: str, rest: str, conf: dict[str, str]) -> tuple["FileSystem", str]:
    """Azure (``abfss:``, ``wasbs:``) and Google (``gs:``) storage: :mod:`lakeloop.io.cloudfs`."""
    from lakeloop.io.cloudfs import azure_filesystem, gcs_filesystem

    authority, path = _split_authority(rest)
    if scheme == "gs":
        return gcs_filesystem(_safe_uri(uri), authority, path, conf)
    return azure_filesystem(_safe_uri(uri), scheme, authority, path, conf)


def _is_volume(path: str) -> bool:
    return path == VOLUMES_ROOT or path.startswith(VOLUMES_ROOT + "/")


def _strip_path(path: str) -> str:
    return path.rstrip("/") or "/"


def _local_path(uri: str, rest: str) -> str:
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise ConfigError(
                f"{_safe_uri(uri)!r} names host {authority!r}; a local path has none. "
                f"Write 'file:/absolute/path' or 'file:///absolute/path'."
            )
        rest = slash + path
    if not rest.startswith("/"):
        raise ConfigError(
            f"{_safe_uri(uri)!r} is a relative path; write an absolute one, e.g. 'file:/data/lake'."
        )
    return _strip_path(rest)


def _split_authority(rest: str) -> tuple[str, str]:
    """``//authority/path`` -> (authority, /path); no ``//`` -> ("", rest)."""
    if not rest.startswith("//"):
        return "", rest
    authority, slash, path = rest[2:].partition("/")
    return authority, slash + path


def _s3_settings(uri: str, bucket: str, conf: dict[str, str]) -> dict[str, object]:
    """``S3FileSystem`` keyword arguments from the ``fs.s3a.*`` settings (a per-bucket
    ``fs.s3a.bucket.<bucket>.X`` wins over ``fs.s3a.X``)."""

    def get(name: str) -> str | None:
        for full in (f"{S3A_PREFIX}bucket.{bucket}.{name}", f"{S3A_PREFIX}{name}"):
            value = conf.get(full)
            if value is not None and value.strip() != "":
                return value.strip()
        return None

    kwargs: dict[str, object] = {}
    ssl = (get("connection.ssl.enabled") or "true").lower() != "false"
    kwargs["scheme"] = "https" if ssl else "http"
    endpoint = get("endpoint")
    if endpoint:
        found = re.match(r"^(https?)://(.*)$", endpoint, re.IGNORECASE)
        if found:
            kwargs["scheme"], endpoint = found.group(1).lower(), found.group(2)
        endpoint = endpoint.rstrip("/")
        kwargs["endpoint_override"] = endpoint
    region = get("endpoint.region") or get("region")
    if not region and endpoint:
        aws = _AWS_ENDPOINT_REGION.match(endpoint)
        region = aws.group("region") if aws else None
    if region:
        kwargs["region"] = region
    access_key, secret_key, token = get("access.key"), get("secret.key"), get("session.token")
    if bool(access_key) != bool(secret_key):
        missing = "fs.s3a.secret.key" if access_key else "fs.s3a.access.key"
        raise ConfigError(
            f"S3 settings for {_safe_uri(uri)!r} give only one of fs.s3a.access.key and "
            f"fs.s3a.secret.key; set {missing} too (spark.hadoop.{missing} in a profile), or "
            f"neither to use the default AWS credential chain."
        )
    if access_key:
        kwargs.update(access_key=access_key, secret_key=secret_key)
        if token:
            kwargs["session_token"] = token
    elif "AnonymousAWSCredentialsProvider" in (get("aws.credentials.provider") or ""):
        kwargs["anonymous"] = True
    if (get("path.style.access") or "").lower() == "false" and endpoint:
        kwargs["force_virtual_addressing"] = True
    return kwargs


def _s3(uri: str, rest: str, conf: dict[str, str]) -> tuple["FileSystem", str]:
    from pyarrow.fs import S3FileSystem

    bucket, path = _split_authority(rest)
    if "@" in bucket:
        raise ConfigError(
            f"{_safe_uri(uri)!r} carries credentials in the URI; remove them and set "
            f"fs.s3a.access.key / fs.s3a.secret.key (spark.hadoop.fs.s3a.*) in the profile instead."
        )
    if not bucket:
        raise ConfigError(f"{_safe_uri(uri)!r} names no bucket; write 's3a://bucket/key'.")
    key = path.strip("/")
    kwargs = _s3_settings(uri, bucket, conf)
    secrets = [v for k, v in conf.items() if k.endswith(_SECRET_SUFFIXES)]
    try:
        try:
            fs = S3FileSystem(**kwargs)
        except TypeError as exc:
            if "force_virtual_addressing" not in str(exc):
                raise
            # pyarrow < 15 has no such option and always uses path-style with an endpoint.
            warnings.warn(
                f"fs.s3a.path.style.access=false for bucket {bucket!r} is ignored: this pyarrow "
                f"addresses buckets by path whenever fs.s3a.endpoint is set (pyarrow >= 15 can "
                f"force virtual-host addressing).",
                stacklevel=4,
            )
            kwargs.pop("force_virtual_addressing")
            fs = S3FileSystem(**kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"could not set up S3 access for {_safe_uri(uri)!r} from the fs.s3a.* settings "
            f"({type(exc).__name__}: {_redact(str(exc), secrets)}); check fs.s3a.endpoint and "
            f"fs.s3a.endpoint.region."
        ) from None
    return fs, f"{bucket}/{key}" if key else bucket


def _hdfs(uri: str, rest: str, conf: dict[str, str]) -> tuple["FileSystem", str]:
    authority, path = _split_authority(rest)
    if "@" in authority:
        raise ConfigError(f"{_safe_uri(uri)!r}: put no user or password in an hdfs: URI.")
    host, colon, port_text = authority.partition(":")
    if colon and not port_text.isdigit():
        raise ConfigError(f"{_safe_uri(uri)!r} has a malformed port; write 'hdfs://namenode:8020/path'.")
    path = _strip_path(path if path.startswith("/") else "/" + path)
    client = (conf.get(HDFS_CLIENT_KEY) or "libhdfs").strip().lower()
    if client == "webhdfs":
        return _webhdfs(uri, host, conf), path
    if client != "libhdfs":
        raise ConfigError(
            f"{HDFS_CLIENT_KEY}={client!r} is not a known HDFS client; set spark.hadoop.{HDFS_CLIENT_KEY} "
            f"to 'libhdfs' (Hadoop's native client, the default) or 'webhdfs' (HTTP, no native library)."
        )
    # Port 0 lets Hadoop pick the default port, and keeps HA nameservice names working.
    port = int(port_text) if colon else 0
    extra = tuple(sorted((k, v) for k, v in conf.items() if k.startswith(_HDFS_KEY_PREFIXES)))
    try:
        fs = _connect_hdfs(os.getpid(), host or "default", port, extra)
    except OSError as exc:
        text = str(exc)
        if "libjvm" in text or "libhdfs" in text:
            raise SetupError(
                f"cannot open {_safe_uri(uri)}: pyarrow's HDFS client needs a JVM, Hadoop's native "
                f"libhdfs and the Hadoop jars, and this machine lacks one ({text}). Set JAVA_HOME to a "
                f"JDK, ARROW_LIBHDFS_DIR to the folder holding libhdfs.so (or HADOOP_HOME to a Hadoop "
                f"distribution with lib/native/libhdfs.so), and CLASSPATH=$(hadoop classpath --glob); "
                f"or use HTTP instead: spark.hadoop.{HDFS_CLIENT_KEY}: webhdfs."
            ) from exc
        raise SourceError(
            f"cannot connect to HDFS for {_safe_uri(uri)} ({text}). Check that the namenode "
            f"{host or '(fs.defaultFS)'} is reachable and that CLASSPATH holds the Hadoop jars and "
            f"configuration (CLASSPATH=$(hadoop classpath --glob))."
        ) from exc
    return fs, path


def _webhdfs(uri: str, host: str, conf: dict[str, str]) -> "FileSystem":
    """WebHDFS at ``dfs.namenode.http-address`` (or ``https-address`` under ``dfs.http.policy=HTTPS_ONLY``);
    a wildcard or missing host there means the URI's NameNode host."""
    https = (conf.get("dfs.http.policy") or "").strip().upper() == "HTTPS_ONLY"
    key = "dfs.namenode.https-address" if https else "dfs.namenode.http-address"
    address = (conf.get(key) or "").strip()
    web_host, colon, port_text = address.rpartition(":") if address else ("", "", "")
    if address and (not colon or not port_text.isdigit()):
        raise ConfigError(f"{key}={address!r} is not host:port; set spark.hadoop.{key}, e.g. 'namenode:9870'.")
    if web_host in ("", "0.0.0.0"):
        web_host = host
    if not web_host:
        raise ConfigError(
            f"{_safe_uri(uri)!r} names no NameNode and {key} is unset: WebHDFS needs one of them. "
            f"Write hdfs://namenode:8020/path or set spark.hadoop.{key}: namenode:9870."
        )
    port = int(port_text) if port_text else (9871 if https else 9870)
    # Simple authentication: HDFS trusts the user name the client sends, as libhdfs sends the login name.
    user = (conf.get(HDFS_USER_KEY) or "").strip() or getpass.getuser()
    return _connect_webhdfs(os.getpid(), web_host, port, user, https)


@functools.lru_cache(maxsize=8)
def _connect_webhdfs(pid: int, host: str, port: int, user: str, https: bool) -> "FileSystem":
    from lakeloop.io.webhdfs import webhdfs_filesystem

    return webhdfs_filesystem(host, port, user, use_https=https)


# Connecting starts a JVM inside this process: reuse the connection. The process id is part
# of the key because a JVM does not survive fork (pandas-UDF workers are forked).
@functools.lru_cache(maxsize=8)
def _connect_hdfs(pid: int, host: str, port: int, extra: tuple[tuple[str, str], ...]) -> "FileSystem":
    from pyarrow.fs import HadoopFileSystem

    return HadoopFileSystem(host, port, extra_conf=dict(extra) or None)


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class LakeFiles:
    """File operations on lake URIs without Spark, with the Hadoop settings bound once.

    ``LakeFiles(profile.hadoop_conf())``; plain data, so it pickles into training processes
    and pandas-UDF workers. Every method takes a lake URI (``file:/...``, ``s3a://...``,
    ``hdfs://...``, ``dbfs:/...``) and raises what :func:`filesystem_for` raises for a bad one.
    """

    hadoop_conf: Mapping[str, str] = field(default_factory=dict)

    def filesystem(self, uri: str) -> tuple["FileSystem", str]:
        """The pyarrow filesystem serving ``uri`` and the path inside it (:func:`filesystem_for`)."""
        return filesystem_for(uri, self.hadoop_conf)

    def read_bytes(self, uri: str) -> bytes:
        """The whole content of the file at ``uri``.

        Raises
        ------
        FileNotFoundError
            nothing at ``uri`` (the message names the URI).
        """
        fs, path = self.filesystem(uri)
        try:
            with fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no file at {_safe_uri(uri)}") from exc

    def read_verified(self, uri: str, sha256: str, what: str = "the file") -> bytes:
        """The content of the file at ``uri``, checked against the ``sha256`` (hex) it had when it was
        recorded: a file referenced from the lake (ingested by reference) must not change under it.

        Raises
        ------
        SourceChanged
            the file is gone, or its bytes are not the recorded ones; the message names the URI,
            both digests, and what to do.
        """
        import hashlib

        try:
            data = self.read_bytes(uri)
        except FileNotFoundError as exc:
            raise SourceChanged(f"{what} at {_safe_uri(uri)} is gone (it was recorded with sha256 {sha256}); "
                                f"{_REFERENCE_FIX}") from exc
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise SourceChanged(f"{what} at {_safe_uri(uri)} changed since it was recorded: its sha256 is now {found}, "
                                f"not {sha256}; {_REFERENCE_FIX}")
        return data

    def write_bytes_atomic(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri`` so that a reader sees the old content or the new, never a part.

        Local and HDFS: the bytes go to a hidden sibling ``.<name>.tmp-<uuid>`` (hidden names
        are skipped by Spark and Hadoop listings), which is then moved over ``uri``; the temp
        file is removed if anything fails. On local disks the move is one ``rename``. On HDFS
        pyarrow replaces an existing file by delete + rename, so for a few milliseconds the
        name is absent (never half-written); a rename refused because another writer's landed
        in between is tried again (the last writer wins, as on local disks). S3: one upload, which S3 publishes only once
        complete. Missing parent folders are created.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write_bytes_atomic({_safe_uri(uri)!r}): data must be bytes, got {type(data).__name__}")
        fs, path = self.filesystem(uri)
        if fs.type_name == "s3":
            with fs.open_output_stream(path) as out:
                out.write(data)
            return
        parent, _, base = path.rpartition("/")
        parent = parent or "/"
        fs.create_dir(parent, recursive=True)
        tmp = f"{parent.rstrip('/')}/.{base}.tmp-{uuid.uuid4().hex}"
        try:
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            for attempt in range(3):
                try:
                    fs.move(tmp, path)
                    break
                except OSError:
                    # HDFS replaces a file by delete + rename: another writer's rename landing between the
                    # two refuses ours. Its content is whole; replacing it again keeps the writes atomic.
                    if attempt == 2 or not self.exists(uri):
                        raise
        except BaseException:
            try:
                fs.delete_file(tmp)
            except OSError:
                pass  # never created, or already moved
            raise

    def move(self, source: str, target: str) -> None:
        """Move the file ``source`` to ``target`` on the same store, creating ``target``'s folder: one
        rename on local disks and HDFS, a copy then a delete on S3. ``target`` must not exist.

        Raises
        ------
        FileNotFoundError
            nothing at ``source`` (the message names both URIs).
        FileExistsError
            something already at ``target``.
        """
        from pyarrow.fs import FileType

        fs, path = self.filesystem(source)
        target_fs, target_path = self.filesystem(target)
        if fs.type_name != target_fs.type_name:
            raise ConfigError(f"cannot move {_safe_uri(source)} to {_safe_uri(target)}: they are on different stores")
        if fs.get_file_info(path).type == FileType.NotFound:
            raise FileNotFoundError(f"no file at {_safe_uri(source)} to move to {_safe_uri(target)}")
        if target_fs.get_file_info(target_path).type != FileType.NotFound:
            raise FileExistsError(f"{_safe_uri(target)} exists; {_safe_uri(source)} was not moved over it")
        fs.create_dir(target_path.rpartition("/")[0] or "/", recursive=True)
        fs.move(path, target_path)

    def digest(self, uri: str, chunk_bytes: int = 8 << 20) -> tuple[str, int]:
        """``(sha256 hex, size in bytes)`` of the file at ``uri``, read in chunks (a file of any size
        costs ``chunk_bytes`` of memory).

        Raises
        ------
        FileNotFoundError
            nothing at ``uri``.
        """
        import hashlib

        fs, path = self.filesystem(uri)
        digest, size = hashlib.sha256(), 0
        try:
            with fs.open_input_stream(path) as stream:
                while chunk := stream.read(chunk_bytes):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no file at {_safe_uri(uri)}") from exc
        return digest.hexdigest(), size

    def delete_file(self, uri: str) -> bool:
        """Delete the file at ``uri``; returns whether there was one."""
        fs, path = self.filesystem(uri)
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            return False
        return True

    def exists(self, uri: str) -> bool:
        """Whether a file or folder exists at ``uri``."""
        from pyarrow.fs import FileType

        fs, path = self.filesystem(uri)
        return fs.get_file_info(path).type != FileType.NotFound

    def list_dir(self, uri: str) -> list[str]:
        """Base names of the children of folder ``uri``, sorted; ``[]`` if the folder does not exist."""
        from pyarrow.fs import FileSelector

        fs, path = self.filesystem(uri)
        selector = FileSelector(path, allow_not_found=True, recursive=False)
        try:
            infos = fs.get_file_info(selector)
        except NotADirectoryError:
            # pyarrow's bridge to fsspec (WebHDFS) asks "a folder?", then "there at all?": a folder another
            # process creates between the two questions reads as a file once. Asking again settles it.
            infos = fs.get_file_info(selector)
        except FileNotFoundError:
            # pyarrow's local filesystem may find the folder, then fail to open it when another process
            # creates or removes it in between: it did not exist when the listing began.
            return []
        return sorted(info.base_name for info in infos)

    def makedirs(self, uri: str) -> None:
        """Create folder ``uri`` and its parents; nothing happens if it exists."""
        fs, path = self.filesystem(uri)
        fs.create_dir(path, recursive=True)

    def delete_dir(self, uri: str) -> bool:
        """Delete folder ``uri`` and everything in it; returns whether there was one.

        Raises
        ------
        NotADirectoryError
            ``uri`` is a file.
        """
        from pyarrow.fs import FileType

        fs, path = self.filesystem(uri)
        kind = fs.get_file_info(path).type
        if kind == FileType.NotFound:
            return False
        if kind != FileType.Directory:
            raise NotADirectoryError(f"{_safe_uri(uri)} is a file, not a folder; delete_dir removes folders only")
        fs.delete_dir(path)
        return True

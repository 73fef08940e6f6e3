"""lakeloop.io.lakefs and lakeloop.registry on real local folders: no Spark, no network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow
import pytest

from lakeloop.config import load_profile
from lakeloop.errors import ConfigError, LakeloopError, ModelNotFound, SetupError, SourceError
from lakeloop.io import lakefs
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import parse_model_ref
from lakeloop.registry import ModelVersion, Registry, StagedFile
from support.publishers import publish_at_once

SECRET = "wJalrXUtnFEMI-K7MDENG-SUPERSECRET"
ACCESS = "AKIAEXAMPLEACCESS1"


def s3_options(fs) -> dict:
    """The settings an S3FileSystem was built with (what pyarrow pickles it as)."""
    return fs.__reduce__()[1][0]


FILES = LakeFiles()


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- filesystem_for


@pytest.mark.parametrize(
    "uri, path",
    [
        ("file:/a/b", "/a/b"),
        ("file:///a/b", "/a/b"),
        ("file://localhost/a/b", "/a/b"),
        ("file:/a/b/", "/a/b"),
        ("file:/", "/"),
        ("dbfs:/x/y", "/dbfs/x/y"),
        ("dbfs:///x", "/dbfs/x"),
        ("dbfs:/", "/dbfs"),
        ("/Volumes/main/lakeloop/lake", "/Volumes/main/lakeloop/lake"),  # a Unity Catalog volume: local on Databricks
        ("/Volumes/main/lakeloop/lake/", "/Volumes/main/lakeloop/lake"),
        ("dbfs:/Volumes/main/lakeloop/lake", "/Volumes/main/lakeloop/lake"),  # not /dbfs/Volumes, which does not exist
    ],
)
def test_local_uris(uri: str, path: str) -> None:
    fs, inner = lakefs.filesystem_for(uri)
    assert fs.type_name == "local"
    assert inner == path


def test_a_volume_lake_root_reads_and_writes_through_a_folder_standing_in_for_the_volume_mount(tmp_path):
    """On Databricks /Volumes/... is a FUSE mount; here a folder at the same place stands in for it."""
    volume = Path("/Volumes")
    if volume.exists() and not os.access(volume, os.W_OK):
        pytest.skip("/Volumes exists here and is not writable")
    made = not volume.exists()
    root = f"/Volumes/lakeloop_test_{os.getpid()}/schema/volume"
    try:
        files = lakefs.LakeFiles()
        files.write_bytes_atomic(f"{root}/models/m/1/weights.pt", b"weights")
        assert files.read_bytes(f"dbfs:{root}/models/m/1/weights.pt") == b"weights"
        assert files.list_dir(f"{root}/models/m") == ["1"]
    finally:
        shutil.rmtree(f"/Volumes/lakeloop_test_{os.getpid()}", ignore_errors=True)
        if made:
            shutil.rmtree(volume, ignore_errors=True)


@pytest.mark.parametrize(
    "uri, conf, kind, inner",
    [
        ("s3://bucket/key", {"fs.s3a.endpoint": "http://127.0.0.1:9000", "fs.s3a.access.key": "a",
                             "fs.s3a.secret.key": "b"}, "s3", "bucket/key"),
        ("abfss://lake@acct.dfs.core.windows.net/a/b", {"fs.azure.account.key.acct.dfs.core.windows.net":
                                                       "a2V5"}, "abfs", "lake/a/b"),
        ("wasbs://lake@acct.blob.core.windows.net/a", {"lakeloop.azure.endpoint": "http://127.0.0.1:10000",
                                                       "fs.azure.account.key.acct.blob.core.windows.net": "a2V5"},
         "abfs", "lake/a"),
        ("gs://bucket/a/b", {"fs.gs.storage.root.url": "http://127.0.0.1:4443", "fs.gs.auth.type": "UNAUTHENTICATED"},
         "gcs", "bucket/a/b"),
    ],
)
def test_object_store_uris_map_to_pyarrows_own_filesystems_from_the_hadoop_settings(uri, conf, kind, inner):
    pytest.importorskip("pyarrow.fs", reason="pyarrow")
    import pyarrow.fs as pafs

    if kind == "abfs" and not hasattr(pafs, "AzureFileSystem") or kind == "gcs" and not hasattr(pafs, "GcsFileSystem"):
        pytest.skip("this stack's pyarrow has no such filesystem (the spark40 stack: pyarrow 14)")
    fs, path = lakefs.filesystem_for(uri, {f"spark.hadoop.{k}": v for k, v in conf.items()})
    assert (fs.type_name, path) == (kind, inner)


def test_a_gcs_auth_type_the_processes_without_spark_cannot_use_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"fs.gs.auth.type = SERVICE_ACCOUNT_JSON_KEYFILE .* GOOGLE_APPLICATION_"):
        lakefs.filesystem_for("gs://bucket/x", {"fs.gs.auth.type": "SERVICE_ACCOUNT_JSON_KEYFILE"})


@pytest.mark.parametrize(
    "uri, words",
    [
        ("/tmp/lake", ["no URI scheme", "file:/absolute/path"]),
        ("ftp://host/x", ["'ftp://host/x'", "file:", "dbfs:", "s3a:", "hdfs:", "abfss:", "gs:"]),
        ("s3n://bucket/key", ["s3a://bucket/key"]),
        ("abfss://account.dfs.core.windows.net/x", ["no container and account"]),
        ("gs:///x", ["names no bucket"]),
        ("file:relative/x", ["relative", "file:/data/lake"]),
        ("file://otherhost/a", ["otherhost"]),
        ("s3a:///key", ["no bucket"]),
        ("hdfs://nn:port/x", ["malformed port"]),
    ],
)
def test_bad_uris(uri: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        lakefs.filesystem_for(uri)
    for word in words:
        assert word in str(err.value)


def test_a_profiles_hadoop_settings_are_its_spark_hadoop_settings_without_the_prefix() -> None:
    profile = load_profile("local", spark_conf=["spark.hadoop.fs.s3a.endpoint=http://minio:9000",
                                                "spark.hadoop.dfs.replication=1", "spark.sql.shuffle.partitions=4"])
    removed = load_profile("local", [("spark.conf", {"spark.hadoop.fs.s3a.removed": None})])
    assert profile.hadoop_conf() == {"fs.s3a.endpoint": "http://minio:9000", "dfs.replication": "1"}
    assert removed.hadoop_conf() == {}


def test_s3_from_hadoop_conf() -> None:
    fs, path = lakefs.filesystem_for(
        "s3a://bucket/models/x.pt",
        {
            "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9",
            "spark.hadoop.fs.s3a.access.key": ACCESS,
            "spark.hadoop.fs.s3a.secret.key": SECRET,
            "fs.s3a.session.token": "tok",
            "fs.s3a.path.style.access": "true",
            "fs.s3a.endpoint.region": "eu-west-1",
        },
    )
    assert fs.type_name == "s3" and path == "bucket/models/x.pt"
    assert fs.region == "eu-west-1"
    opts = s3_options(fs)
    assert (opts["scheme"], opts["endpoint_override"]) == ("http", "127.0.0.1:9")
    assert (opts["access_key"], opts["secret_key"], opts["session_token"]) == (ACCESS, SECRET, "tok")


def test_s3_plain_key_wins_and_bucket_overrides() -> None:
    conf = {
        "spark.hadoop.fs.s3a.endpoint": "http://ignored:1",
        "fs.s3a.endpoint": "127.0.0.1:9",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.region": "us-west-2",
        "fs.s3a.bucket.special.endpoint.region": "ap-south-1",
    }
    fs, path = lakefs.filesystem_for("s3a://bucket", conf)
    assert path == "bucket" and fs.region == "us-west-2"
    assert (s3_options(fs)["scheme"], s3_options(fs)["endpoint_override"]) == ("http", "127.0.0.1:9")
    special, _ = lakefs.filesystem_for("s3a://special/k", conf)
    assert special.region == "ap-south-1"


def test_s3_defaults_leave_credentials_to_aws_chain() -> None:
    fs, path = lakefs.filesystem_for("s3a://b/k/", {"fs.s3a.endpoint": "s3.eu-central-1.amazonaws.com"})
    opts = s3_options(fs)
    assert path == "b/k" and opts["scheme"] == "https"
    assert opts["access_key"] is None and opts["secret_key"] is None and not opts["anonymous"]
    assert fs.region == "eu-central-1"  # taken from the AWS endpoint name
    anon, _ = lakefs.filesystem_for(
        "s3a://b/k",
        {"fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider",
         "fs.s3a.region": "us-east-1"},
    )
    assert s3_options(anon)["anonymous"]


def test_s3_virtual_host_request() -> None:
    conf = {"fs.s3a.endpoint": "http://127.0.0.1:9", "fs.s3a.path.style.access": "false", "fs.s3a.region": "r"}
    if int(pyarrow.__version__.split(".")[0]) < 15:
        with pytest.warns(UserWarning, match="path.style.access"):
            fs, _ = lakefs.filesystem_for("s3a://b/k", conf)
    else:
        fs, _ = lakefs.filesystem_for("s3a://b/k", conf)
    assert fs.type_name == "s3"


@pytest.mark.parametrize(
    "uri, conf, words",
    [
        ("s3a://b/k", {"fs.s3a.access.key": ACCESS}, ["fs.s3a.secret.key"]),
        ("s3a://b/k", {"spark.hadoop.fs.s3a.secret.key": SECRET}, ["fs.s3a.access.key"]),
        (f"s3a://{ACCESS}:{SECRET}@bucket/k", {}, ["credentials in the URI"]),
        (f"gs://{ACCESS}:{SECRET}@bucket/k", {}, ["names no bucket (or carries credentials)"]),
        ("abfss://c@acct.dfs.core.windows.net/k", {"fs.azure.account.oauth2.client.id.acct.dfs.core.windows.net": ACCESS,
                                                   "fs.azure.account.oauth2.client.secret.acct.dfs.core.windows.net":
                                                       SECRET}, ["client.endpoint naming the tenant"]),
        (f"hdfs://{ACCESS}:{SECRET}@nn/k", {}, ["no user or password"]),
    ],
)
def test_secrets_never_in_errors(uri: str, conf: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        lakefs.filesystem_for(uri, conf)
    text = str(err.value)
    assert SECRET not in text and ACCESS not in text
    for word in words:
        assert word in text


@pytest.mark.skipif(
    bool(os.environ.get("ARROW_LIBHDFS_DIR") or os.environ.get("HADOOP_HOME")),
    reason="this machine may have libhdfs; the HDFS tests cover it",
)
def test_hdfs_without_libhdfs_says_what_is_missing() -> None:
    with pytest.raises(SetupError) as err:
        lakefs.filesystem_for("hdfs://127.0.0.1:9/lake/x")
    text = str(err.value)
    for word in ("hdfs://127.0.0.1:9/lake/x", "ARROW_LIBHDFS_DIR", "HADOOP_HOME", "CLASSPATH", "JAVA_HOME"):
        assert word in text


# --------------------------------------------------------------------------- file helpers


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    uri = f"file:{tmp_path}/a/b/blob.bin"
    FILES.write_bytes_atomic(uri, b"one")
    assert FILES.read_bytes(uri) == b"one"
    FILES.write_bytes_atomic(f"file://{tmp_path}/a/b/blob.bin", b"two" * 1000)
    assert FILES.read_bytes(uri) == b"two" * 1000
    assert all_files(tmp_path) == ["a/b/blob.bin"]  # no temp files left behind


def test_failed_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_bytes(b"x")
    with pytest.raises(OSError):
        FILES.write_bytes_atomic(f"file:{tmp_path}/target", b"data")  # cannot replace a folder
    assert sorted(os.listdir(tmp_path)) == ["target"]
    with pytest.raises(TypeError):
        FILES.write_bytes_atomic(f"file:{tmp_path}/t", "text")  # type: ignore[arg-type]


def test_exists_list_makedirs_delete(tmp_path: Path) -> None:
    root = f"file:{tmp_path}/d"
    assert not FILES.exists(root) and FILES.list_dir(root) == []
    FILES.makedirs(f"{root}/sub/deeper")
    FILES.makedirs(f"{root}/sub/deeper")  # twice is fine
    FILES.write_bytes_atomic(f"{root}/f.txt", b"x")
    assert FILES.exists(root) and FILES.exists(f"{root}/f.txt")
    assert FILES.list_dir(root) == ["f.txt", "sub"]
    with pytest.raises(NotADirectoryError):
        FILES.delete_dir(f"{root}/f.txt")
    assert FILES.delete_dir(root) is True
    assert FILES.delete_dir(root) is False
    assert not (tmp_path / "d").exists()
    with pytest.raises(FileNotFoundError, match="f.txt"):
        FILES.read_bytes(f"{root}/f.txt")


# --------------------------------------------------------------------------- registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"file:{tmp_path}/models")


def test_publish_and_read_back(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.publish("digits_lenet", b"W1", {"classes": ["0", "1"], "name": "ignored"})
    assert v1 == ModelVersion("digits_lenet", 1, f"{registry.root}/digits_lenet/1")
    files = all_files(tmp_path / "models")
    assert [f for f in files if "/_claims/" not in f] == [
        "digits_lenet/1/_COMMITTED",
        "digits_lenet/1/metadata.json",
        "digits_lenet/1/weights.pt",
        "digits_lenet/latest",
    ]
    assert [f.rpartition("/")[0] for f in files if "/_claims/" in f] == ["digits_lenet/_claims/1"]  # who claimed 1
    meta = registry.read_metadata(v1)
    assert meta["classes"] == ["0", "1"] and meta["name"] == "digits_lenet" and meta["version"] == 1
    assert meta["idempotency_key"] is None and meta["published_at"].endswith("+00:00")
    assert registry.read_weights(v1) == b"W1"
    assert registry.read_torchscript(v1) is None

    v2 = registry.publish("digits_lenet", b"W2", {}, torchscript=b"TS2")
    assert registry.read_torchscript(v2) == b"TS2" and registry.read_weights(v2) == b"W2"
    assert registry.list_versions("digits_lenet") == [1, 2]
    assert registry.list_models() == ["digits_lenet"]


def test_idempotency_key(registry: Registry) -> None:
    a = registry.publish("m", b"W", {}, idempotency_key="run-1")
    again = registry.publish("m", b"other bytes", {}, idempotency_key="run-1")
    assert again == a and registry.list_versions("m") == [1]
    assert registry.read_weights(a) == b"W"
    b = registry.publish("m", b"W", {}, idempotency_key="run-2")
    assert (a.version, b.version) == (1, 2)
    assert registry.publish("m", b"W", {}).version == 3  # no key: always a new version
    assert registry.publish("m", b"W", {}, idempotency_key="run-1").version == 1
    assert registry.resolve("m").version == 3  # a rerun does not move latest back


def test_find_by_idempotency_key(registry: Registry, tmp_path: Path) -> None:
    assert registry.find_by_idempotency_key("m", "k1") is None
    v1 = registry.publish("m", b"W", {}, idempotency_key="k1")
    registry.publish("m", b"W", {}, idempotency_key="k2")
    assert registry.find_by_idempotency_key("m", "k1") == v1
    assert registry.find_by_idempotency_key("m", "k3") is None
    # A crash between _COMMITTED and the latest pointer of version 2; the rerun's lookup repairs it.
    (tmp_path / "models" / "m" / "latest").write_text(json.dumps({"version": 1}))
    assert registry.find_by_idempotency_key("m", "k2").version == 2
    assert registry.resolve("m").version == 2
    with pytest.raises(ValueError):
        registry.find_by_idempotency_key("m", "")


def test_rerun_repairs_latest_after_crash(registry: Registry, tmp_path: Path) -> None:
    registry.publish("m", b"W", {}, idempotency_key="k1")
    registry.publish("m", b"W", {}, idempotency_key="k2")
    # A crash between _COMMITTED and the latest pointer of version 2:
    (tmp_path / "models" / "m" / "latest").write_text(json.dumps({"version": 1}))
    assert registry.resolve("m").version == 1
    assert registry.publish("m", b"W", {}, idempotency_key="k2").version == 2
    assert registry.resolve("m").version == 2
    (tmp_path / "models" / "m" / "latest").unlink()
    assert registry.resolve("m", "latest").version == 2  # falls back to the highest committed


def test_eight_processes_publishing_one_model_at_once_get_eight_versions_each_with_its_own_weights(
        registry: Registry, reliability) -> None:
    lost, shared = publish_at_once(registry, 8)
    reliability.record("8 processes publish one model name at once (file:)", "registry.publish",
                       "each publisher's weights vs its version's", 8, lost, shared)


def test_staged_weights_are_moved_into_the_version_and_checked_against_their_digest(registry: Registry) -> None:
    staging = registry.staging_uri("m", "run-1")
    registry.files.write_bytes_atomic(f"{staging}/weights.pt", b"big weights")
    staged = StagedFile(f"{staging}/weights.pt", hashlib.sha256(b"big weights").hexdigest(), 11)
    version = registry.publish("m", staged, {})
    assert registry.read_weights(version) == b"big weights" and not registry.files.exists(staged.uri)

    registry.files.write_bytes_atomic(staged.uri, b"other bytes")  # changed after staging
    with pytest.raises(SourceError, match="changed after they were written.*Train again"):
        registry.publish("m", staged, {})
    assert registry.list_versions("m") == [1]


def test_an_uncommitted_version_is_ignored_and_the_next_publish_leaves_it_as_it_is(registry: Registry,
                                                                                   tmp_path: Path) -> None:
    registry.publish("m", b"W1", {})
    leftover = tmp_path / "models" / "m" / "2"
    leftover.mkdir()
    (leftover / "weights.pt").write_bytes(b"half")
    (leftover / "stale.bin").write_bytes(b"junk")
    assert registry.list_versions("m") == [1]
    assert registry.resolve("m").version == 1
    with pytest.raises(ModelNotFound, match="version 2"):
        registry.resolve("m", 2)
    with pytest.raises(ModelNotFound, match="_COMMITTED"):
        registry.read_weights(ModelVersion("m", 2, f"{registry.root}/m/2"))
    # It may be another publisher's work in progress: the next publish takes the number above it.
    v3 = registry.publish("m", b"W3", {"try": 3})
    assert v3.version == 3 and registry.read_weights(v3) == b"W3"
    assert sorted(os.listdir(leftover)) == ["stale.bin", "weights.pt"]
    assert registry.resolve("m").version == 3 and registry.leftover_versions("m") == [2]


def test_latest_and_production(registry: Registry) -> None:
    for n in (1, 2, 3):
        assert registry.publish("m", f"W{n}".encode(), {}).version == n
        assert registry.resolve("m").version == n
    registry.set_alias("m", "production", 2)
    assert registry.resolve("m", "production").version == 2
    assert registry.resolve("m", "3") == registry.resolve("m", 3)
    registry.publish("m", b"W4", {})
    assert registry.resolve("m", "production").version == 2  # publish moves latest only
    assert registry.list_aliases("m") == {"latest": 4, "production": 2}
    registry.set_alias("m", "production", 4)
    name, ref = parse_model_ref("m@production")
    assert registry.resolve(name, ref).version == 4
    with pytest.raises(ConfigError, match="publish only"):
        registry.set_alias("m", "latest", 1)
    with pytest.raises(ConfigError, match="not all digits"):
        registry.set_alias("m", "7", 1)
    with pytest.raises(ModelNotFound, match="version 9"):
        registry.set_alias("m", "staging", 9)
    # Every move of an alias is logged, with the version it left (refused moves are not).
    assert [(e["alias"], e["previous"], e["version"], e["action"]) for e in registry.alias_log("m")] == \
        [("production", None, 2, "set"), ("production", 2, 4, "set")]
    assert registry.list_aliases("m") == {"latest": 4, "production": 4}  # the log is not an alias
    # A damaged log is named, with what to do; the aliases themselves still resolve.
    registry.files.write_bytes_atomic(f"{registry.model_uri('m')}/_alias_log.json", b"{not json")
    with pytest.raises(SourceError, match=r"_alias_log.json is not a JSON list of alias moves"):
        registry.alias_log("m")
    assert registry.resolve("m", "production").version == 4


def test_resolve_errors_list_what_exists(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="Models there: none"):
        registry.resolve("m")
    registry.publish("m", b"W", {})
    registry.publish("m", b"W", {})
    registry.set_alias("m", "production", 1)
    with pytest.raises(ModelNotFound) as err:
        registry.resolve("m", 5)
    text = str(err.value)
    assert "version 5" in text and "Committed versions: 1, 2" in text
    assert "latest -> 2" in text and "production -> 1" in text
    with pytest.raises(ModelNotFound, match="alias 'staging'.*Committed versions: 1, 2"):
        registry.resolve("m", "staging")
    with pytest.raises(ModelNotFound, match="Models there: m"):
        registry.resolve("other")


def test_altered_version_is_detected(registry: Registry, tmp_path: Path) -> None:
    v = registry.publish("m", b"W", {})
    (tmp_path / "models" / "m" / "1" / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(SourceError, match="checksum"):
        registry.read_weights(v)


def test_publish_argument_checks(registry: Registry) -> None:
    with pytest.raises(ValueError, match="JSON"):
        registry.publish("m", b"W", {"x": object()})
    with pytest.raises(ValueError, match="non-empty"):
        registry.publish("m", b"", {})
    with pytest.raises(TypeError):
        registry.publish("m", b"W", {}, torchscript="ts")  # type: ignore[arg-type]
    assert registry.list_versions("m") == []


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "_x", "a/b", "a b", "é", "x" * 129])
def test_bad_names_rejected(registry: Registry, name: str) -> None:
    with pytest.raises(ConfigError, match="letters, digits"):
        registry.publish(name, b"W", {})
    with pytest.raises(ConfigError):
        registry.resolve(name)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("digits_lenet", ("digits_lenet", "latest")),
        ("digits_lenet:3", ("digits_lenet", "3")),
        ("digits_lenet@production", ("digits_lenet", "production")),
        ("a.b-c_1@latest", ("a.b-c_1", "latest")),
        (" m:12 ", ("m", "12")),
    ],
)
def test_parse_model_ref(text: str, expected: tuple[str, str]) -> None:
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize("text", ["", "m:", "m:0", "m:x", "m@", "m@3", "m:1@p", "../m", ":3"])
def test_parse_model_ref_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="NAME:VERSION"):
        parse_model_ref(text)


def test_errors_are_lakeloop_errors() -> None:
    assert issubclass(ModelNotFound, LakeloopError)

"""The whole pipeline on s3a:// against a real S3-protocol server on loopback (S3Proxy,
lakeloop_dev.s3), each job a ./spark-submit.sh subprocess under conf/s3-test.yaml:
ingest_images -> ingest_tables -> build_features -> train (TorchDistributor, 2 processes,
Petastorm reading the training set from s3a://) -> score. The lake it leaves must match the
local run on the same data; a fault test breaks the S3 endpoint in the middle of an ingest.

One server per test session: reused if one already answers on the profile's port
(./dev/services.sh start s3), otherwise started here and stopped at the end.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.pipeline import (COMPARED_SETTINGS, check_features, check_ingestion_matches_local,
                              check_scoring_matches_local, check_training_matches_local, delta_table,
                              local_reference, run_job, run_pipeline, service_for_session, table_rows)

pytestmark = [pytest.mark.s3, pytest.mark.slow]

PROFILE = "s3-test"


@pytest.fixture(scope="session")
def s3_server():
    from lakeloop_dev.s3 import default_s3_server

    yield from service_for_session(default_s3_server())


@pytest.fixture(scope="module")
def s3_lake(s3_server, tmp_path_factory):
    """A fresh prefix in the test bucket holding the demo raw zone; removed afterwards."""
    from lakeloop_dev.demo_data import write_demo_raw_zone

    bucket = s3_server.settings.bucket
    prefix = f"it-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    local = tmp_path_factory.mktemp("s3-raw") / "raw"
    write_demo_raw_zone(local)
    fs = s3_server.filesystem()
    files = sorted(p for p in local.rglob("*") if p.is_file())

    def put(path: Path) -> None:
        with fs.open_output_stream(f"{bucket}/{prefix}/raw/{path.relative_to(local).as_posix()}") as out:
            out.write(path.read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    root = f"s3a://{bucket}/{prefix}"
    yield {"root": root, "raw": f"{root}/raw", "lake": f"{root}/lake", "files": len(files)}
    fs.delete_dir(f"{bucket}/{prefix}")


def _sets(s3_lake: dict, lake: str | None = None) -> list[str]:
    return [f"lake_root={lake or s3_lake['lake']}",
            f"ingest_images.source={s3_lake['raw']}/images",
            f"ingest_tables.tables.digits_meta.source={s3_lake['raw']}/tables/digits_meta.csv",
            *COMPARED_SETTINGS]


@pytest.fixture
def local_copy(s3_server, tmp_path_factory):
    """``local_copy(s3a_uri) -> file: URI`` of a fresh copy of a table's objects.

    The checks read S3 tables with delta-rs from a local copy: delta-rs' own S3 client now
    and then aborts the interpreter at exit ("terminate called without an active exception"),
    which would fail the whole test run after its tests passed.
    """
    from pyarrow.fs import FileSelector, FileType

    fs = s3_server.filesystem()

    def copy(uri: str) -> str:
        key = uri.removeprefix("s3a://").rstrip("/")
        dest = tmp_path_factory.mktemp("s3-table")
        for info in fs.get_file_info(FileSelector(key, recursive=True)):
            if info.type == FileType.File:
                target = dest / info.path[len(key) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with fs.open_input_stream(info.path) as src:
                    target.write_bytes(src.read())
        return f"file:{dest}"

    return copy


@pytest.fixture(scope="module")
def s3_pipeline(s3_server, s3_lake, tmp_path_factory):
    """Every job once, in order, on the s3a:// lake; returns their reports, logs and timings."""
    return run_pipeline(PROFILE, _sets(s3_lake), tmp_path_factory.mktemp("s3-logs"), s3_lake["lake"],
                        s3_server.settings.hadoop_conf(), secrets=[s3_server.settings.secret_key])


def test_ingestion_on_s3_matches_the_local_run(s3_pipeline, s3_lake, local_copy, spark, digits_lake,
                                               tmp_path_factory):
    check_ingestion_matches_local(s3_pipeline["reports"], s3_lake["lake"], local_copy,
                                  local_reference(spark, digits_lake, tmp_path_factory))


def test_features_on_s3(s3_pipeline):
    check_features(s3_pipeline["reports"]["build_features"])


def test_training_reads_s3_and_publishes_there_like_the_local_run(s3_pipeline, s3_lake, spark, digits_lake,
                                                                   tmp_path_factory):
    check_training_matches_local(s3_pipeline["reports"]["train"], s3_lake["lake"], "digits_lenet",
                                 s3_pipeline["conf"], local_reference(spark, digits_lake, tmp_path_factory))


def test_scoring_on_s3_like_the_local_run(s3_pipeline, s3_lake, local_copy, spark, digits_lake, tmp_path_factory):
    check_scoring_matches_local(s3_pipeline["reports"]["score"], s3_lake["lake"], local_copy,
                                local_reference(spark, digits_lake, tmp_path_factory))


def test_credentials_appear_in_no_output_or_report(s3_pipeline, s3_server, s3_lake):
    from pyarrow.fs import FileSelector

    secret = s3_server.settings.secret_key
    for job, output in s3_pipeline["outputs"].items():
        assert secret not in output, f"{job} printed the S3 secret key"
    fs = s3_server.filesystem()
    prefix = s3_lake["lake"].removeprefix("s3a://")
    reports = [i.path for i in fs.get_file_info(FileSelector(f"{prefix}/_reports", recursive=True))
               if i.path.endswith((".json", ".html"))]  # run reports and their pages
    reports += [i.path for i in fs.get_file_info(FileSelector(f"{prefix}/models", recursive=True))
                if i.path.endswith("metadata.json")]
    assert len(reports) >= 10
    for path in reports:
        with fs.open_input_stream(path) as handle:
            assert secret.encode() not in handle.read(), f"{path} holds the S3 secret key"


def test_s3_endpoint_dying_mid_ingest_leaves_no_partial_table(s3_pipeline, s3_server, s3_lake, local_copy, tmp_path):
    """The S3 endpoint dies in the middle of ingest_images: after bronze and quarantine are
    committed and the ledger's data files are written, at the PUT that would commit the ledger.
    The job fails; the ledger has data files and no commit, so readers see no ledger at all
    (a Delta commit is the single PUT of _delta_log/N.json). The endpoint comes back, the job
    is rerun, and the tables end exactly as the clean run left them for the same source.

    The front dies rather than S3Proxy: the test server keeps objects in memory, and real S3
    never loses what it stored; to the job it is the same outage (see tests/tcp_front.py)."""
    from pyarrow.fs import FileSelector, FileType

    from lakeloop_dev.processes import free_port
    from support.tcp_front import TcpFront

    settings = s3_server.settings
    fs = s3_server.filesystem()  # straight to the server, past the front
    # One label folder of the demo zone (a fraction of the run time), with one broken file,
    # copied under a root of its own so that its labels still come from the parent folder.
    clean_source, source = f"{s3_lake['raw']}/images", f"{s3_lake['root']}/raw-one-folder/images"
    folder = fs.get_file_info(FileSelector(f"{clean_source.removeprefix('s3a://')}/3", recursive=True))
    for info in folder:
        fs.copy_file(info.path, info.path.replace(clean_source.removeprefix("s3a://"), source.removeprefix("s3a://")))
    lake = f"{s3_lake['root']}/fault-lake"
    prefix = lake.removeprefix("s3a://")
    sets = [*_sets(s3_lake, lake), f"ingest_images.source={source}"]
    port = free_port()
    confs = [f"spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:{port}"]

    def stored(table: str, suffix: str) -> list[str]:
        try:
            infos = fs.get_file_info(FileSelector(f"{prefix}/{table}", recursive=True))
        except FileNotFoundError:
            return []
        return sorted(i.path for i in infos if i.type == FileType.File and i.path.endswith(suffix))

    commit_ledger = rf"PUT /{re.escape(prefix)}/_ledger/images/_delta_log/\d+\.json "
    front = TcpFront(port, settings.port, tmp_path / "front.log", die_on=commit_ledger).start()
    try:
        killed = run_job(PROFILE, "ingest_images", sets=sets, confs=confs, log=tmp_path / "killed-run.log",
                         secrets=[settings.secret_key], check=False, timeout_s=300)
    finally:
        died = front.died()
        front.kill()
    assert died, "the endpoint never saw the ledger's commit PUT: the fault was not injected"
    assert killed.returncode != 0, "the job did not notice that S3 went away"

    tables = ("bronze/images", "quarantine/images", "_ledger/images")
    commits = {t: [p.rsplit("/", 1)[1] for p in stored(f"{t}/_delta_log", ".json")] for t in tables}
    data = {t: [p for p in stored(t, ".parquet") if "/_delta_log/" not in p] for t in tables}
    print(f"\nafter the outage: commits {commits}; data files {({t: len(v) for t, v in data.items()})}")
    assert commits["bronze/images"] and commits["quarantine/images"], "bronze/quarantine were committed before"
    assert data["_ledger/images"] and not commits["_ledger/images"], "ledger: data files written, no commit"
    from deltalake.exceptions import TableNotFoundError

    with pytest.raises(TableNotFoundError):  # the written files are invisible: no table
        delta_table(local_copy(f"{lake}/_ledger/images"))

    # Back up, rerun: the tables end exactly as the clean run's rows for this folder.
    front = TcpFront(port, settings.port, tmp_path / "front.log").start()
    try:
        run_job(PROFILE, "ingest_images", sets=sets, confs=confs, log=tmp_path / "rerun.log",
                secrets=[settings.secret_key])
    finally:
        front.kill()
    columns = {"bronze/images": ["image_id", "label", "path", "width", "height"],
               "quarantine/images": ["path", "error"], "_ledger/images": ["path", "length", "outcome"]}
    for table, cols in columns.items():
        clean = [{**r, "path": r["path"].replace(clean_source, source)}
                 for r in table_rows(local_copy(f"{s3_lake['lake']}/{table}"), None, cols).to_pylist()
                 if r["path"].startswith(f"{clean_source}/3/")]
        after_uri = local_copy(f"{lake}/{table}")
        after = table_rows(after_uri, None, cols).to_pylist()
        assert after and len(after) == len({tuple(r.values()) for r in after}), f"{table}: empty or duplicated"
        assert sorted(map(str, after)) == sorted(map(str, clean)), f"{table} differs from the clean run"
        # Readers see only files that commits name; the killed run's ledger files stay unread.
        referenced = {f"{prefix}/{table}/{f}" for f in delta_table(after_uri).files()}
        on_store = set(p for p in stored(table, ".parquet") if "/_delta_log/" not in p)
        assert referenced <= on_store, f"{table}: a commit names a file that is not there"
        if table == "_ledger/images":
            assert set(data[table]) <= on_store - referenced, "the killed run's ledger files are unreferenced"
        print(f"{table}: {len(after)} rows = clean run, {len(referenced)} files read, "
              f"{len(on_store - referenced)} unreferenced")


def test_the_server_checks_signatures(s3_server):
    """The profile's keys are really used: the same request signed with another secret is refused."""
    from pyarrow.fs import S3FileSystem

    s = s3_server.settings
    wrong = S3FileSystem(access_key=s.access_key, secret_key=s.secret_key + "-wrong", region=s.region,
                         scheme="http", endpoint_override=f"{s.host}:{s.port}", connect_timeout=2, request_timeout=5)
    with pytest.raises(OSError):
        wrong.get_file_info(f"{s.bucket}/anything")
    assert s3_server.filesystem().get_file_info(s.bucket).type.name == "Directory"


def test_eight_publishers_of_one_model_on_s3_get_eight_versions_and_staged_weights_move_in(s3_server, s3_lake,
                                                                                              reliability):
    """Version claims need no rename and no conditional put: a claim file per publisher and a listing,
    which S3 serves strongly consistent."""
    import hashlib

    from lakeloop.config import load_profile
    from lakeloop.registry import Registry, StagedFile
    from support.publishers import publish_at_once

    registry = Registry.for_profile(load_profile(PROFILE, [("lake_root", f"{s3_lake['root']}/registry-race")]))
    lost, shared = publish_at_once(registry, 8)
    reliability.record("8 processes publish one model name at once (s3a:)", "registry.publish",
                       "each publisher's weights vs its version's", 8, lost, shared)
    staged = f"{registry.staging_uri('raced', 'run-1')}/weights.pt"
    registry.files.write_bytes_atomic(staged, b"staged weights")
    version = registry.publish("raced", StagedFile(staged, hashlib.sha256(b"staged weights").hexdigest(), 14), {})
    assert registry.read_weights(version) == b"staged weights" and not registry.files.exists(staged)

"""lakeloop.io.petastorm_fs without a server: Petastorm 0.12 / pyarrow 14 reading an s3a:// URL
through the legacy-filesystem adapter, here over a local folder standing in for the bucket.

The adapter exists for the Petastorm reader alone, which runs on the spark40 stack only (newer
pyarrow removed ``pyarrow.filesystem``): CI runs this file there (marker ``stacks``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyarrow.filesystem", reason="pyarrow >= 16 has no legacy filesystem API; the spark40 stack runs these")
pytest.importorskip("petastorm", reason="Petastorm is installed on the spark40 stack only")
pytestmark = pytest.mark.stacks

from lakeloop.io.petastorm_fs import LegacyArrowFileSystem, petastorm_filesystem, register_path_rules


@pytest.fixture
def bucket_fs(tmp_path):
    """A pyarrow filesystem whose root is a folder: ``bucket/key`` paths land in ``tmp_path``."""
    from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

    for i in range(3):
        path = tmp_path / "bucket" / "set" / f"part-{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [f"{i}-{j}" for j in range(4)], "x": list(range(4))}), path)
    (tmp_path / "bucket" / "set" / "_SUCCESS").write_bytes(b"")
    return SubTreeFileSystem(str(tmp_path), LocalFileSystem())


def test_local_urls_are_left_to_petastorm():
    assert petastorm_filesystem("file:///tmp/x") is None


def test_adapter_answers_the_legacy_api(bucket_fs):
    fs = LegacyArrowFileSystem(bucket_fs)
    assert fs.isdir("bucket/set") and not fs.isfile("bucket/set")
    assert fs.isfile("bucket/set/part-0.parquet") and fs.exists("bucket/set/_SUCCESS")
    top, dirs, files = next(fs.walk("bucket"))
    assert (top, dirs, files) == ("bucket", ["set"], [])
    assert next(fs.walk("bucket/set"))[2] == ["_SUCCESS", "part-0.parquet", "part-1.parquet", "part-2.parquet"]
    with fs.open("bucket/set/part-1.parquet") as handle:
        assert pq.ParquetFile(handle).metadata.num_rows == 4


def test_petastorm_reads_an_s3a_url_through_it_sharded(bucket_fs):
    from petastorm import make_batch_reader

    from lakeloop.training.loader import row_groups

    register_path_rules("s3a")  # what petastorm_filesystem does for an s3a:// URL
    fs = LegacyArrowFileSystem(bucket_fs)
    with make_batch_reader("s3a://bucket/set", filesystem=fs, reader_pool_type="dummy", num_epochs=1,
                           shuffle_row_groups=False, cur_shard=1, shard_count=3) as reader:
        ids = [i for batch in reader for i in batch.id]
    assert ids == ["1-0", "1-1", "1-2", "1-3"]
    with pytest.raises(ImportError, match="s3fs"):  # the scheme is registered for path rules only
        import fsspec

        fsspec.filesystem("s3a")
    assert [g.rows for g in row_groups("file://" + str(bucket_fs.base_path) + "/bucket/set")] == [4, 4, 4]

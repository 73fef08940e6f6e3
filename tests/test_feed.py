"""The training feed without Spark: the plan (row groups per rank, order per seed, epoch and pass),
the Arrow reader that executes it, and on the spark40 stack Petastorm executing the same plan.

Every test here runs on every stack (marker ``stacks``): CI runs them on both."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakeloop.errors import ConfigError, SetupError, SourceError
from lakeloop.preprocess import PreprocessSpec
from lakeloop.training.loader import (PLAN_VERSION, Feed, epoch_batches, pass_order, plan_shards, prefetched,
                                      row_groups, shard_batches)
from lakeloop.training.readers import ArrowReader, column_values, open_reader

pytestmark = pytest.mark.stacks

SPEC = PreprocessSpec(height=8, width=8, channels=1, resize="pad", mean=(0.5,), std=(0.5,))


def _write_set(folder, files=((40, 13), (25,), (60, 7, 19)), table_width=0):
    """A training set: file ``f`` holds row groups of the given sizes; image ``k`` is filled with
    ``k % 251``, its label is ``k % 10``; with ``table_width``, ``inputs`` holds ``k`` that many times."""
    folder.mkdir(parents=True)
    k = 0
    for f, sizes in enumerate(files):
        writer = None
        for n in sizes:
            ids = range(k, k + n)
            columns = {
                "image_id": pa.array([f"img-{i:04d}" for i in ids]),
                "label_index": pa.array([i % 10 for i in ids], pa.int32()),
                "pixels": pa.array([bytes([i % 251]) * SPEC.pixel_bytes for i in ids], pa.binary()),
            }
            if table_width:
                columns["inputs"] = pa.array([np.full(table_width, i, np.float32).tobytes() for i in ids], pa.binary())
            table = pa.table(columns)
            writer = writer or pq.ParquetWriter(folder / f"part-{f:05d}.snappy.parquet", table.schema)
            writer.write_table(table)
            k += n
        writer.close()
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000.snappy.parquet.crc").write_bytes(b"not parquet")
    return f"file:{folder}"


def _digest(batches) -> str:
    h = hashlib.sha256()
    for x, y, ids in batches:
        for part in (x if isinstance(x, tuple) else (x,)):
            h.update(np.ascontiguousarray(part).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
        h.update("\n".join(str(i) for i in ids).encode())
    return h.hexdigest()


def test_the_plan_lists_every_row_group_in_file_order_and_skips_markers_and_checksums(tmp_path):
    url = _write_set(tmp_path / "train")
    groups = row_groups(url)
    assert [g.rows for g in groups] == [40, 13, 25, 60, 7, 19]
    assert [g.index for g in groups] == [0, 1, 0, 0, 1, 2]
    assert len({g.path for g in groups}) == 3


def test_shards_give_every_rank_the_same_steps_and_cover_every_row(tmp_path):
    url = _write_set(tmp_path / "train")
    plan = plan_shards(url, world_size=2, batch_size=16)
    assert plan.rows_per_rank == (40 + 25 + 7, 13 + 60 + 19) and plan.version == PLAN_VERSION
    seen = set()
    for rank in range(2):
        batches = list(epoch_batches(url, plan, SPEC, rank=rank, epoch=0, seed=3))
        assert len(batches) == plan.steps_per_epoch and all(len(y) == 16 for _, y, _ in batches)
        ids = {i for _, _, batch in batches for i in batch}
        assert len(ids) == plan.rows_per_rank[rank]  # the smaller shard repeats rows, drops none
        seen |= ids
    assert len(seen) == 164


@pytest.mark.parametrize("batch_size", [5, 16, 64, 200])
def test_every_batch_holds_each_rows_own_pixels_label_and_table_inputs(tmp_path, batch_size):
    url = _write_set(tmp_path / "train", table_width=3)
    feed = Feed.for_images(SPEC, table_width=3)
    plan = plan_shards(url, world_size=2, batch_size=batch_size)
    for rank in range(2):
        for (images, table), y, ids in epoch_batches(url, plan, feed, rank=rank, epoch=1, seed=1):
            k = np.array([int(i.removeprefix("img-")) for i in ids])
            assert images.shape == (batch_size, 1, 8, 8) and images.dtype == np.float32
            np.testing.assert_allclose(images[:, 0, 5, 7], ((k % 251) / 255.0 - 0.5) / 0.5, atol=1e-6)
            assert (y == k % 10).all() and y.dtype == np.int64
            assert table.shape == (batch_size, 3) and (table == k[:, None]).all() and table.flags.writeable


def test_an_epochs_batches_are_a_function_of_seed_epoch_and_rank_with_or_without_prefetch(tmp_path):
    url = _write_set(tmp_path / "train")
    plan = plan_shards(url, world_size=2, batch_size=16)

    def digest(seed, epoch, rank, prefetch=2):
        return _digest(epoch_batches(url, plan, SPEC, rank=rank, epoch=epoch, seed=seed, max_shift=2,
                                     prefetch=prefetch))

    assert digest(5, 1, 0) == digest(5, 1, 0) == digest(5, 1, 0, prefetch=0)
    assert len({digest(5, 1, 0), digest(5, 2, 0), digest(6, 1, 0), digest(5, 1, 1)}) == 4


SEED_EDGES = [0, 42, 43, 2**32 - 1, 2**63 - 1]


@pytest.mark.parametrize("seed", SEED_EDGES)
def test_any_seed_from_0_to_2_63_gives_full_augmented_epochs_of_its_own(tmp_path, seed):
    """``train.seed`` 43 and up once failed in every rank: the reader's seed was derived by
    arithmetic that left numpy's range. Every seed the profile accepts feeds whole epochs, and
    two neighbouring seeds give two orders."""
    from lakeloop.config import AugmentConfig

    url = _write_set(tmp_path / "train")
    plan = plan_shards(url, world_size=2, batch_size=16)
    augmentation = AugmentConfig(shift=2, flip=True)
    neighbour = seed - 1 if seed else seed + 1

    def digest(seed, epoch, rank):
        batches = list(epoch_batches(url, plan, SPEC, rank=rank, epoch=epoch, seed=seed,
                                     augmentation=augmentation))
        assert len(batches) == plan.steps_per_epoch and all(len(y) == 16 for _, y, _ in batches)
        return _digest(batches)

    assert digest(seed, 29, 1) == digest(seed, 29, 1) != digest(neighbour, 29, 1)


def test_a_pass_reads_a_ranks_row_groups_in_a_shuffled_order_with_shuffled_rows(tmp_path):
    groups = row_groups(_write_set(tmp_path / "train"))
    orders = [[(g.path, g.index) for g, _ in pass_order(groups, seed=1, epoch=e, rank=0, pass_no=0)] for e in range(6)]
    assert len(set(map(tuple, orders))) > 1 and all(sorted(o) == sorted(orders[0]) for o in orders)
    for group, rows in pass_order(groups, seed=1, epoch=0, rank=0, pass_no=0):
        assert sorted(rows) == list(range(group.rows))


def test_the_evaluation_pass_reads_every_row_once_in_the_sets_order(tmp_path):
    url = _write_set(tmp_path / "val")
    ids = [i for rank in range(2) for _, _, batch in shard_batches(url, SPEC, rank=rank, world=2, batch_size=9)
           for i in batch]
    assert sorted(ids) == [f"img-{k:04d}" for k in range(164)] and len(ids) == 164


def test_the_arrow_reader_views_fixed_size_binary_cells_without_a_copy():
    cells = pa.array([bytes([i]) * 6 for i in range(5)], pa.binary())
    view = column_values(cells)
    assert view.shape == (5, 6) and view.dtype == np.uint8 and not view.flags.owndata
    assert (view[:, 0] == np.arange(5)).all()
    sliced = column_values(cells.slice(2, 2))
    assert (sliced[:, 0] == [2, 3]).all()
    ragged = column_values(pa.array([b"a", b"bcd"], pa.binary()))
    assert ragged.dtype == object and list(ragged) == [b"a", b"bcd"]


def test_a_training_set_rewritten_during_a_run_is_a_clear_error(tmp_path):
    url = _write_set(tmp_path / "train")
    plan = plan_shards(url, world_size=2, batch_size=16)
    (tmp_path / "train" / "part-00001.snappy.parquet").unlink()
    with pytest.raises(ConfigError, match="rewritten during the run"):
        next(epoch_batches(url, plan, SPEC, rank=0, epoch=0, seed=1))


def test_a_file_that_is_not_parquet_names_the_file_and_the_fix(tmp_path):
    url = _write_set(tmp_path / "train")
    (tmp_path / "train" / "part-00009.snappy.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError, match="part-00009.*build_features"):
        row_groups(url)


def test_a_missing_training_set_names_it_and_the_fix(tmp_path):
    with pytest.raises(SourceError, match="build_features"):
        plan_shards(f"file:{tmp_path}/nothing", world_size=2, batch_size=8)


def test_an_unknown_reader_is_refused_with_the_choices(tmp_path):
    url = _write_set(tmp_path / "train")
    with pytest.raises(ConfigError, match="arrow, petastorm"):
        with open_reader("tfrecord", url, ["image_id"]):
            pass


def test_an_error_while_prefetching_reaches_the_training_loop_and_stopping_early_stops_the_thread():
    def failing():
        yield 1
        raise RuntimeError("row group 2 is bad")

    got = prefetched(failing(), 2)
    assert next(got) == 1
    with pytest.raises(RuntimeError, match="row group 2 is bad"):
        next(got)
    before = threading.active_count()
    endless = prefetched(iter(range(10**9)), 2)
    assert next(endless) == 0
    endless.close()
    assert threading.active_count() <= before


def test_the_petastorm_reader_is_refused_where_petastorm_cannot_run(tmp_path):
    try:
        import petastorm  # noqa: F401
        import pyarrow.filesystem  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Petastorm imports on this stack (spark40); the next test compares its batches")
    url = _write_set(tmp_path / "train")
    with pytest.raises(SetupError, match="spark40.*train.reader=arrow"):
        with open_reader("petastorm", url, ["image_id"]):
            pass


def test_petastorm_and_the_arrow_reader_give_identical_batches_for_two_epochs(tmp_path):
    pytest.importorskip("petastorm", reason="Petastorm runs on the spark40 stack only (CI runs this test there)")
    pytest.importorskip("pyarrow.filesystem", reason="Petastorm needs pyarrow < 16 (the spark40 stack)")
    url = _write_set(tmp_path / "train", table_width=2)
    feed = Feed.for_images(SPEC, table_width=2)
    plan = plan_shards(url, world_size=2, batch_size=12)
    for rank in range(2):
        for epoch in range(2):
            arrow = list(epoch_batches(url, plan, feed, rank=rank, epoch=epoch, seed=9, max_shift=1, reader="arrow"))
            peta = list(epoch_batches(url, plan, feed, rank=rank, epoch=epoch, seed=9, max_shift=1, reader="petastorm"))
            assert len(arrow) == len(peta) == plan.steps_per_epoch
            for a, p in zip(arrow, peta):  # batch by batch, so a difference names its batch
                assert _digest([a]) == _digest([p])
    evaluation = {kind: _digest(shard_batches(url, feed, rank=0, world=2, batch_size=10, reader=kind))
                  for kind in ("arrow", "petastorm")}
    assert evaluation["arrow"] == evaluation["petastorm"]


def test_the_arrow_reader_closes_its_files(tmp_path):
    url = _write_set(tmp_path / "train")
    reader = ArrowReader(url, ["image_id"])
    group = row_groups(url)[0]
    assert len(reader.read(group, None).image_id) == group.rows
    reader.close()
    assert reader._files == {}


def test_the_training_key_names_the_plans_version_but_not_the_reader(monkeypatch):
    """A resumed run continues from checkpoints of the same key: a new plan version is a new run (never
    a resume in another order), while switching reader or prefetch resumes the same run."""
    import dataclasses

    from lakeloop.config import TrainConfig
    from lakeloop.training import driver
    from lakeloop.training.dataset import TrainingSet

    ts = TrainingSet("file:/lake/_training_sets/v1", 1, SPEC, ("a", "b"), {"train": 10}, False)
    cfg = TrainConfig()
    key = driver.training_key(cfg, ts)
    assert driver.training_key(dataclasses.replace(cfg, reader="petastorm", prefetch=0), ts) == key
    assert driver.training_key(dataclasses.replace(cfg, seed=cfg.seed + 1), ts) != key
    monkeypatch.setattr(driver, "PLAN_VERSION", PLAN_VERSION + 1)
    assert driver.training_key(cfg, ts) != key


def test_a_profile_still_naming_petastorms_pool_is_told_what_replaced_it():
    from lakeloop.config import load_profile

    with pytest.raises(ConfigError, match=r"train.reader_pool is now train.reader"):
        load_profile("test", [("train.reader_pool", "thread")])
    with pytest.raises(ConfigError, match=r"train.reader = 'tfrecord'|must be one of|tfrecord"):
        load_profile("test", [("train.reader", "tfrecord")])

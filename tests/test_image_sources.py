"""The lake follows its image folder: a file moved to another label folder relabels its image, the
same bytes under two labels is a conflict left out of training, a changed labels-table row relabels,
and with ``source_mode: mirror`` a deleted or rewritten file's old image leaves bronze, silver and
gold. Checked with delta-rs, an independent reader, after ingest, features, train and score."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lakeloop.features import build_features
from lakeloop.ingest.images import ingest_images
from lakeloop.io import delta
from lakeloop.report import RunReport
from lakeloop.scoring import score_table
from lakeloop.training.driver import train
from support.imagefiles import grayscale_png
from support.lakes import layout, make_profile
from support.pipeline import table_rows

pytestmark = pytest.mark.slow
LABELS = ("0", "1", "2", "3")


def _write_source(root: Path, per_label: int = 6) -> None:
    for index, label in enumerate(LABELS):
        for number in range(per_label):
            target = root / label / f"img_{number}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(grayscale_png(28, 28, seed=100 * index + number))


def _folder(root: Path) -> dict[str, tuple[str, str]]:
    """path URI -> (sha256, label folder) of every image file now in the folder."""
    return {f"file:{p}": (hashlib.sha256(p.read_bytes()).hexdigest(), p.parent.name)
            for p in sorted(root.rglob("*.png"))}


def _change_the_folder(root: Path) -> dict[str, str]:
    """Move one file to another label folder, rewrite one in place, delete one, and copy one into a
    second label folder; returns the image ids each change concerns."""
    sha = {name: hashlib.sha256((root / name).read_bytes()).hexdigest()
           for name in ("0/img_0.png", "1/img_1.png", "2/img_2.png", "3/img_3.png")}
    shutil.move(root / "0" / "img_0.png", root / "3" / "moved_from_0.png")
    (root / "1" / "img_1.png").write_bytes(grayscale_png(28, 28, seed=9_999))
    (root / "2" / "img_2.png").unlink()
    shutil.copyfile(root / "3" / "img_3.png", root / "0" / "also_img_3.png")
    return {"moved": sha["0/img_0.png"], "rewritten_old": sha["1/img_1.png"], "deleted": sha["2/img_2.png"],
            "conflict": sha["3/img_3.png"],
            "rewritten_new": hashlib.sha256((root / "1" / "img_1.png").read_bytes()).hexdigest()}


def _versions(spark, profile) -> dict[str, int]:
    lake = layout(profile)
    tables = [lake.bronze_images, lake.quarantine_images, lake.images_ledger, lake.features, lake.predictions,
              lake.image_label_conflicts]
    return {t: delta.table_version(spark, t) for t in tables if delta.is_delta_table(spark, t)}


def _by_id(uri: str, columns: list[str]) -> dict[str, dict]:
    rows = table_rows(uri, columns=columns).to_pylist()
    ids = [r["image_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"an image twice in {uri}"
    return {r["image_id"]: r for r in rows}


@pytest.fixture(scope="module")
def followed(spark, tmp_path_factory):
    """A mirrored folder run through ingest, features, train and score; then changed, and ingest,
    features and score run again (their reports kept)."""
    base = tmp_path_factory.mktemp("follow")
    source = base / "raw"
    _write_source(source)
    profile = make_profile(f"file:{base}/lake", ("ingest_images.source", f"file:{source}"),
                           ("ingest_images.source_mode", "mirror"), ("features.join_table", None),
                           ("train.epochs", 1), ("train.num_processes", 1), ("train.model_name", "follow"),
                           ("score.model", "follow"))
    ingest_images(spark, profile)
    build_features(spark, profile)
    train(spark, profile)
    score_table(spark, profile)
    changed = _change_the_folder(source)
    reports = {"ingest": ingest_images(spark, profile, RunReport("ingest_images", "after")),
               "features": build_features(spark, profile, RunReport("build_features", "after")),
               "score": score_table(spark, profile, RunReport("score", "after"))}
    return profile, source, changed, reports


def test_every_table_agrees_with_the_mirrored_folder_after_a_move_a_rewrite_a_deletion_and_a_copy(followed):
    profile, source, changed, _ = followed
    lake = layout(profile)
    folder = _folder(source)
    labels: dict[str, set[str]] = {}
    for image_id, label in folder.values():
        labels.setdefault(image_id, set()).add(label)
    expected = {i: (next(iter(ls)) if len(ls) == 1 else None) for i, ls in labels.items()}

    bronze = _by_id(lake.bronze_images, ["image_id", "path", "label"])
    assert {i: r["label"] for i, r in bronze.items()} == expected
    assert all(r["path"] in folder and folder[r["path"]][0] == i for i, r in bronze.items())
    assert bronze[changed["moved"]]["path"].endswith("/3/moved_from_0.png")
    assert changed["deleted"] not in bronze and changed["rewritten_old"] not in bronze
    silver = _by_id(lake.features, ["image_id", "label", "label_index", "path"])
    assert {i: r["label"] for i, r in silver.items()} == expected
    assert silver[changed["conflict"]]["label_index"] is None  # left out of training
    gold = _by_id(lake.predictions, ["image_id", "true_label"])
    assert {i: r["true_label"] for i, r in gold.items()} == expected
    ledger = table_rows(lake.images_ledger, columns=["path"]).column("path").to_pylist()
    assert sorted(ledger) == sorted(folder)
    conflicts = table_rows(lake.image_label_conflicts).to_pylist()
    assert [(c["image_id"], c["labels"]) for c in conflicts] == [(changed["conflict"], ["0", "3"])]
    assert sorted(p.rsplit("/", 2)[1] for p in conflicts[0]["paths"]) == ["0", "3"]


def test_each_job_counts_what_it_updated_and_removed(followed):
    _, _, _, reports = followed
    ingest, features, score = (reports[k].counts for k in ("ingest", "features", "score"))
    assert (ingest["ingested"], ingest["duplicates"]) == (1, 2)  # the rewrite; the moved file and the copy
    assert (ingest["relabelled"], ingest["moved"], ingest["label_conflicts"], ingest["removed"],
            ingest["paths_removed"]) == (2, 1, 1, 2, 2)
    assert (features["inserted"], features["updated"], features["removed"]) == (1, 2, 2)
    assert (score["scored"], score["removed"], score["relabelled"]) == (1, 2, 2)
    assert any("image_label_conflicts" in w for w in reports["ingest"].warnings)


def test_a_rerun_on_the_unchanged_folder_commits_nothing(spark, followed):
    profile, _, _, _ = followed
    before = _versions(spark, profile)
    ingest_images(spark, profile)
    build_features(spark, profile)
    report = score_table(spark, profile)
    assert _versions(spark, profile) == before
    assert report.counts["scored"] == 0


def test_under_landing_a_deletion_changes_nothing_and_relabels_still_apply(spark, tmp_path):
    source = tmp_path / "raw"
    _write_source(source, per_label=4)
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_images.source", f"file:{source}"),
                           ("features.join_table", None))
    ingest_images(spark, profile)
    build_features(spark, profile)
    changed = _change_the_folder(source)

    report = ingest_images(spark, profile)
    build_features(spark, profile)

    lake = layout(profile)
    bronze = _by_id(lake.bronze_images, ["image_id", "label"])
    silver = _by_id(lake.features, ["image_id", "label"])
    for table in (bronze, silver):
        assert table[changed["deleted"]]["label"] == "2" and table[changed["rewritten_old"]]["label"] == "1"
        assert table[changed["moved"]]["label"] == "3" and table[changed["conflict"]]["label"] is None
        assert changed["rewritten_new"] in table
    assert (report.counts["removed"], report.counts["paths_removed"], report.counts["relabelled"]) == (0, 0, 2)


def test_a_changed_labels_table_row_relabels_the_image(spark, tmp_path):
    source = tmp_path / "raw"
    _write_source(source, per_label=2)
    rows = [(f"{label}/img_{n}.png", label) for label in LABELS for n in range(2)]
    labels_uri = f"file:{tmp_path}/labels"
    spark.createDataFrame(rows, "path string, label string").write.format("delta").save(labels_uri)
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_images.source", f"file:{source}"),
                           ("ingest_images.label_from", "labels_table"), ("ingest_images.labels_table", labels_uri),
                           ("features.join_table", None))
    ingest_images(spark, profile)
    build_features(spark, profile)
    spark.sql(f"UPDATE delta.`{labels_uri}` SET label = '2' WHERE path = '1/img_0.png'")

    report = ingest_images(spark, profile)
    features = build_features(spark, profile)

    image_id = hashlib.sha256((source / "1" / "img_0.png").read_bytes()).hexdigest()
    lake = layout(profile)
    assert _by_id(lake.bronze_images, ["image_id", "label"])[image_id]["label"] == "2"
    assert _by_id(lake.features, ["image_id", "label"])[image_id]["label"] == "2"
    assert report.counts["relabelled"] == 1 and features.counts["updated"] == 1


def _lake_parquet_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.parquet") if "/models/" not in str(p)]


def _files_holding(root: Path, image_id: str) -> list[str]:
    """Every Parquet file under the lake (any table's data, change-feed and removed files, the
    training sets) with a column that holds ``image_id``, read with pyarrow."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    holding = []
    for path in _lake_parquet_files(root):
        table = pq.read_table(path)
        for column in ("image_id", "content_sha256", "key"):
            if column in table.column_names and pc.any(pc.equal(table[column], image_id)).as_py():
                holding.append(str(path))
    return holding


def test_forget_erases_an_image_from_every_table_and_training_set_and_names_the_model_versions(
        spark, followed, capsys):
    """Runs last in this module: it erases one image from the shared lake."""
    from lakeloop.cli.lake import forget
    from lakeloop.registry import Registry

    profile, source, _, _ = followed
    lake = layout(profile)
    root = Path(lake.root.removeprefix("file:"))
    row = delta.read_table(spark, lake.features).where("split = 'train' AND label IS NOT NULL") \
        .orderBy("image_id").first()
    image_id = row["image_id"]
    assert _files_holding(root, image_id) and list((root / "_training_sets").glob("*"))
    args = ["--profile", "test", "--set", f"lake_root={lake.root}", "--set", f"ingest_images.source=file:{source}",
            "--set", "maintain.vacuum_retention_hours=0", "--set", "maintain.allow_short_retention=true",
            "--image-id", image_id]

    before = _versions(spark, profile)
    assert forget([*args, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "dry run, nothing changed" in dry and "would delete: bronze.images: 1 row(s)" in dry
    assert _versions(spark, profile) == before and list((root / "_training_sets").glob("*"))

    assert forget(args) == 0
    out = capsys.readouterr().out
    assert "follow:1 (train)" in out and "deleted: silver.features: 1 row(s)" in out
    # Vacuumed with retention 0: no data file, change-feed file or training-set file holds it; the tombstone does.
    assert [f for f in _files_holding(root, image_id) if "/_ledger/forgotten/" not in f] == []
    for name in ("bronze/images", "silver/features", "gold/predictions", "_ledger/images"):
        ids = table_rows(f"{lake.root}/{name}", columns=["image_id"]).column("image_id").to_pylist()
        assert image_id not in ids, name
    assert not list((root / "_training_sets").glob("*"))  # retired: the next train makes a new one
    registry = Registry.for_profile(profile)
    [mark] = registry.erasures(registry.resolve("follow", 1))
    assert mark["splits"] == ["train"] and image_id in mark["record"]

    report = ingest_images(spark, profile)  # the file is still in the source: not taken in again
    assert report.counts["forgotten"] == 1
    assert image_id not in table_rows(lake.bronze_images, columns=["image_id"]).column("image_id").to_pylist()
    assert forget(args) == 1 and "no table or training set of this lake holds it" in capsys.readouterr().out

"""Bad input at every door: each ends in a quarantine row with a reason, a clear error or a warning,
never a bare stack trace and never a silently dropped record. Each test records what it tried and
how it ended in the reliability figures (``./dev/test.sh -m fault``).

The image zoo (tests/support/imagefiles.py) holds the broken, animated, huge and misnamed images;
tests/test_ingest_tables.py the malformed CSV and JSON records. Here: what is left of the list."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lakeloop.errors import JobFailed, SourceError
from lakeloop.features import build_features
from lakeloop.ingest import images
from lakeloop.ingest.images import ingest_images
from lakeloop.ingest.tables import ingest_tables
from lakeloop.io import delta
from lakeloop.registry import Registry
from support.imagefiles import rgb_png
from support.lakes import layout, make_profile
from support.pipeline import REPO, submit_command

pytestmark = [pytest.mark.fault, pytest.mark.slow]

QUARANTINE_CAP = 1000  # ingest_images.quarantine_content_max_bytes here; tables: raw_max_chars


def _multi_page_tiff() -> bytes:
    from PIL import Image

    pages = [Image.fromarray(np.full((16, 16, 3), i * 40, np.uint8)) for i in range(3)]
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


@pytest.fixture(scope="module")
def image_door(spark, tmp_path_factory):
    """A source with links (to a file inside, to one outside, to nothing), a multi-page TIFF, a
    broken file over the quarantine's byte cap, and a file deleted between listing and reading;
    ingested once, then again."""
    root = tmp_path_factory.mktemp("image-door")
    raw = root / "raw"
    for folder in ("cat", "dog"):
        (raw / folder).mkdir(parents=True)
    (raw / "cat" / "good.png").write_bytes(rgb_png(20, 20, seed=1))
    (raw / "cat" / "pages.tif").write_bytes(_multi_page_tiff())
    os.symlink(raw / "cat" / "good.png", raw / "cat" / "link.png")
    os.symlink(raw / "cat" / "gone.png", raw / "cat" / "dangling.png")
    (root / "elsewhere.png").write_bytes(rgb_png(20, 20, seed=2))
    os.symlink(root / "elsewhere.png", raw / "dog" / "outside.png")
    (raw / "dog" / "noise.png").write_bytes(np.random.default_rng(0).bytes(5 * QUARANTINE_CAP))
    (raw / "dog" / "vanishing.png").write_bytes(rgb_png(20, 20, seed=3))
    profile = make_profile(f"file:{root}/lake", ("ingest_images.source", f"file:{raw}"),
                           ("ingest_images.quarantine_content_max_bytes", QUARANTINE_CAP))
    read_files = images.read_files

    def delete_then_read(*args, **kwargs):  # the file goes after the listing, before the read
        (raw / "dog" / "vanishing.png").unlink(missing_ok=True)
        return read_files(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "read_files", delete_then_read)
        first = ingest_images(spark, profile)
    versions = {name: delta.table_version(spark, uri) for name, uri in _image_tables(profile).items()}
    second = ingest_images(spark, profile)
    return profile, first, second, versions


def _image_tables(profile) -> dict[str, str]:
    lake = layout(profile)
    return {"bronze": lake.bronze_images, "quarantine": lake.quarantine_images, "ledger": lake.images_ledger}


def _ledger(spark, profile) -> dict[str, tuple]:
    rows = delta.read_table(spark, layout(profile).images_ledger).collect()
    return {r.path.rsplit("/raw/", 1)[1]: (r.outcome, r.reason) for r in rows}


def test_a_symbolic_link_to_nothing_is_quarantined_with_where_it_points(spark, image_door, reliability):
    profile, first, *_ = image_door
    row = delta.read_table(spark, layout(profile).quarantine_images).where("path LIKE '%dangling.png'").first()
    assert row.reason == "broken_link" and row.content is None
    assert "broken symbolic link: it points to" in row.error and row.error.split("points to ")[1].startswith(
        str(Path(profile.ingest_images.source.removeprefix("file:")) / "cat" / "gone.png"))
    assert first.details["quarantine_reasons"].get("broken_link") == 1
    reliability.bad_input("ingest_images", "a symbolic link to a file that does not exist",
                          "quarantine, reason broken_link, naming the missing target")


def test_links_to_real_files_and_a_multi_page_tiff_are_ingested(spark, image_door, reliability):
    profile, *_ = image_door
    ledger = _ledger(spark, profile)
    assert ledger["cat/pages.tif"] == ("ingested", None)
    assert ledger["dog/outside.png"] == ("ingested", None)  # a link out of the source is followed
    assert ledger["cat/link.png"][0] == "duplicate"  # the same bytes as cat/good.png
    reliability.bad_input("ingest_images", "a multi-page TIFF", "ingested (its first page)")
    reliability.bad_input("ingest_images", "symbolic links to a file inside and outside the source",
                          "ingested (the inside one a duplicate of its target)")


def test_a_file_deleted_between_listing_and_reading_is_named_in_a_warning_and_left_out(spark, image_door,
                                                                                      reliability):
    profile, first, *_ = image_door
    assert "dog/vanishing.png" not in _ledger(spark, profile)
    assert any("1 listed file(s) changed or vanished before they were read" in w for w in first.warnings)
    assert first.counts["inputs"] == len(_ledger(spark, profile)) + 1  # listed, then gone
    reliability.bad_input("ingest_images", "a file deleted between listing and reading",
                          "a warning; not in the ledger (the next run takes it if it comes back)")


def test_a_refused_payload_over_the_cap_keeps_its_digest_and_size_not_its_bytes(spark, image_door, reliability):
    profile, *_ = image_door
    row = delta.read_table(spark, layout(profile).quarantine_images).where("path LIKE '%noise.png'").first()
    assert row.reason == "not_an_image" and row.length == 5 * QUARANTINE_CAP
    assert row.content is None and len(row.content_sha256) == 64
    reliability.bad_input("ingest_images", f"a broken file over quarantine_content_max_bytes ({QUARANTINE_CAP})",
                          "quarantine with its size and sha256, without its bytes")


def test_a_second_run_over_the_bad_inputs_adds_nothing(spark, image_door):
    profile, _, second, versions = image_door
    assert second.counts["inputs"] == 0
    assert {name: delta.table_version(spark, uri) for name, uri in _image_tables(profile).items()} == versions


# Root reads any file; without these two capabilities it obeys file modes as any user does.
AS_A_PLAIN_USER = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search"]


def test_a_file_the_job_may_not_read_is_quarantined_and_a_folder_it_may_not_list_is_a_clear_error(
        spark, tmp_path, reliability):
    raw = tmp_path / "raw"
    (raw / "cat").mkdir(parents=True)
    (raw / "cat" / "good.png").write_bytes(rgb_png(20, 20, seed=1))
    (raw / "cat" / "locked.png").write_bytes(rgb_png(20, 20, seed=2))
    (raw / "cat" / "locked.png").chmod(0)
    sets = [f"lake_root=file:{tmp_path}/lake", f"ingest_images.source=file:{raw}"]
    run = subprocess.run([*AS_A_PLAIN_USER, *submit_command("test", "ingest_images", sets=sets)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_images.source", f"file:{raw}"))
    (row,) = delta.read_table(spark, layout(profile).quarantine_images).collect()
    assert row.path.endswith("cat/locked.png") and row.reason == "unreadable"
    assert "permission denied" in row.error and "chmod a+r" in row.error
    assert _ledger(spark, profile)["cat/good.png"] == ("ingested", None)

    (raw / "dog").mkdir()
    (raw / "dog" / "inside.png").write_bytes(rgb_png(20, 20, seed=3))
    (raw / "dog").chmod(0)
    try:
        run = subprocess.run([*AS_A_PLAIN_USER, *submit_command("test", "ingest_images", sets=sets)], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    finally:
        (raw / "dog").chmod(0o755)
    assert run.returncode != 0
    assert (f"error: SourceError: cannot list {raw}/dog under the image source file:{raw}: permission denied"
            in run.stdout), run.stdout[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    reliability.bad_input("ingest_images", "a file the job's user may not read",
                          "quarantine, reason unreadable, saying to chmod a+r and touch it")
    reliability.bad_input("ingest_images", "a folder the job's user may not list",
                          "the run fails naming the folder and the fix (nothing can be accounted for in it)")


# --- tables ---------------------------------------------------------------------------------------

ROWS = ["1,Zoë,1.5", "2,Ångström,2.5", "3,plain,3.0"]
TABLE_SOURCES = {
    "latin1_declared": ("id,name,score\n" + "\n".join(ROWS) + "\n").encode("latin-1"),
    "latin1_undeclared": ("id,name,score\n" + "\n".join(ROWS) + "\n").encode("latin-1"),
    "bom": b"\xef\xbb\xbf" + ("id,name,score\n" + "\n".join(ROWS) + "\n").encode(),
    "crlf": ("id,name,score\r\n" + "\r\n".join(ROWS) + "\r\n").encode(),
    "nul": "id,name,score\n1,a\x00b,1.5\n2,ok,2.5\n".encode(),
    "huge_field": ("id,name,score\n1," + "x" * 50_000 + ",oops\n2,ok,2.5\n").encode(),
    "all_bad": b"id,name,score\nx,a,b\ny,c,d\n",
    "renamed_column": ("id,full_name,score\n" + "\n".join(ROWS) + "\n").encode(),
}


@pytest.fixture(scope="module")
def table_door(spark, tmp_path_factory):
    """Every table of TABLE_SOURCES ingested in one run (a failing one does not stop the others)."""
    root = tmp_path_factory.mktemp("table-door")
    tables = {}
    for name, content in TABLE_SOURCES.items():
        (root / f"{name}.csv").write_bytes(content)
        tables[name] = {"source": f"file:{root}/{name}.csv", "format": "csv", "keys": ["id"],
                        "schema": "id INT, name STRING, score DOUBLE", "options": {"header": "true"},
                        "raw_max_chars": QUARANTINE_CAP}
    tables["latin1_declared"]["options"]["encoding"] = "ISO-8859-1"
    profile = make_profile(f"file:{root}/lake", ("ingest_tables.tables", tables))
    with pytest.raises(JobFailed) as failed:
        ingest_tables(spark, profile)
    return profile, str(failed.value)


def _table(spark, profile, layer: str, name: str) -> list:
    return delta.read_table(spark, layout(profile).table(layer, name)).collect()


def test_text_in_another_encoding_is_read_when_declared_and_quarantined_with_the_setting_to_fix_when_not(
        spark, table_door, reliability):
    profile, _ = table_door
    assert sorted(r.name for r in _table(spark, profile, "bronze", "latin1_declared")) == sorted(["plain", "Zoë", "Ångström"])
    assert [r.name for r in _table(spark, profile, "bronze", "latin1_undeclared")] == ["plain"]
    errors = [r.error for r in _table(spark, profile, "quarantine", "latin1_undeclared")]
    assert len(errors) == 2 and all("is not valid UTF-8" in e and
                                    "ingest_tables.tables.latin1_undeclared.options.encoding" in e for e in errors)
    reliability.bad_input("ingest_tables", "a Latin-1 CSV, encoding declared", "ingested, text intact")
    reliability.bad_input("ingest_tables", "a Latin-1 CSV, encoding not declared",
                          "its non-ASCII rows quarantined: 'not valid UTF-8', naming options.encoding")


def test_a_byte_order_mark_crlf_line_ends_and_an_embedded_nul_are_read_as_text(spark, table_door, reliability):
    profile, _ = table_door
    for name in ("bom", "crlf"):
        assert sorted((r.id, r.name, r.score) for r in _table(spark, profile, "bronze", name)) == [
            (1, "Zoë", 1.5), (2, "Ångström", 2.5), (3, "plain", 3.0)], name
    assert {r.id: r.name for r in _table(spark, profile, "bronze", "nul")} == {1: "a\x00b", 2: "ok"}
    reliability.bad_input("ingest_tables", "a UTF-8 byte order mark; CRLF line ends", "ingested, as without them")
    reliability.bad_input("ingest_tables", "a NUL character inside a field", "ingested, the NUL kept in the text")


def test_a_huge_bad_field_is_quarantined_with_its_line_capped(spark, table_door, reliability):
    profile, _ = table_door
    (row,) = _table(spark, profile, "quarantine", "huge_field")
    assert len(row.raw) == QUARANTINE_CAP and row.raw.startswith("1,xxx") and "'oops' is not a valid DOUBLE" in row.error
    assert [r.id for r in _table(spark, profile, "bronze", "huge_field")] == [2]
    reliability.bad_input("ingest_tables", "a 50,000-character field in a bad row",
                          f"quarantine, the raw line capped at raw_max_chars ({QUARANTINE_CAP})")


def test_a_table_whose_rows_are_all_bad_is_all_in_quarantine(spark, table_door, reliability):
    profile, _ = table_door
    assert _table(spark, profile, "bronze", "all_bad") == []
    assert sorted(r.raw for r in _table(spark, profile, "quarantine", "all_bad")) == ["x,a,b", "y,c,d"]
    reliability.bad_input("ingest_tables", "a CSV whose every row is bad", "every row in quarantine with its reason")


def test_a_column_renamed_in_the_source_fails_its_table_naming_both_names_and_the_others_are_ingested(
        table_door, reliability):
    _, error = table_door
    assert "1 of 8 tables failed (7 ingested): table renamed_column" in error
    assert "declared column(s) name missing" in error and "found instead: full_name" in error
    reliability.bad_input("ingest_tables", "a column renamed in the source",
                          "that table fails naming both names; the other tables are ingested")


# --- labels and model versions ----------------------------------------------------------------------

def test_labels_that_look_like_paths_stay_data_and_nothing_is_written_outside_the_lake(spark, tmp_path, reliability):
    raw = tmp_path / "raw"
    (raw / "a").mkdir(parents=True)
    for i in range(4):
        (raw / "a" / f"{i}.png").write_bytes(rgb_png(20, 20, seed=i))
    labels_uri = f"file:{tmp_path}/labels"
    hostile = ["../../escaped", "/etc/passwd", "<script>alert(1)</script>", "a/../../b"]
    spark.createDataFrame([(f"a/{i}.png", label) for i, label in enumerate(hostile)], "path STRING, label STRING") \
        .write.format("delta").save(labels_uri)
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_images.source", f"file:{raw}"),
                           ("ingest_images.label_from", "labels_table"), ("ingest_images.labels_table", labels_uri),
                           ("features.join_table", None))
    before = {p for p in tmp_path.parent.rglob("*") if not p.is_relative_to(tmp_path)}

    ingest_images(spark, profile)
    build_features(spark, profile)

    assert sorted(r.label for r in delta.read_table(spark, layout(profile).features).collect()) == sorted(hostile)
    assert {p for p in tmp_path.parent.rglob("*") if not p.is_relative_to(tmp_path)} == before
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "b").exists()
    reliability.bad_input("ingest_images", "labels like ../../escaped, /etc/passwd and <script>",
                          "kept as labels; no file written outside the lake")


def test_a_model_version_whose_weights_were_deleted_is_a_clear_error(tmp_path, reliability):
    registry = Registry.for_profile(make_profile(f"file:{tmp_path}/lake"))
    version = registry.publish("m", b"W", {})
    (tmp_path / "lake" / "models" / "m" / "1" / "weights.pt").unlink()
    with pytest.raises(SourceError, match=r"weights.pt"):
        registry.read_weights(version)
    reliability.bad_input("score / train.init_from", "a committed model version whose weights file was deleted",
                          "SourceError naming the file")

"""inspect_image on real files written to disk: what ingestion accepts, what it refuses and why.

No Spark: these run in seconds. The files come from ``tests/imagefiles.py`` (generated with
Pillow and numpy at test time); each case writes its file under ``tmp_path`` and reads it back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import astuple
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from support import imagefiles as files
from lakeloop.config import ImageIngestConfig
from lakeloop.ingest.image_checks import REASONS, ImageCheck, inspect_image

LIMIT = files.ZOO_MAX_PIXELS


def on_disk(tmp_path: Path, name: str, content: bytes) -> bytes:
    """Write ``content`` as ``tmp_path/name`` and read it back, as ingestion would see the file."""
    path = tmp_path / name
    path.write_bytes(content)
    return path.read_bytes()


def facts(check: ImageCheck) -> tuple:
    return check.format, check.width, check.height, check.mode


webp = pytest.mark.skipif(not files.WEBP_SUPPORTED, reason="this Pillow has no WebP support")

# (file name, bytes maker, expected format, width, height, mode): width/height as shown.
ACCEPTED = [
    pytest.param("rgb.png", lambda: files.rgb_png(64, 48), ("PNG", 64, 48, "RGB"), id="rgb-png"),
    pytest.param("photo.jpg", lambda: files.rgb_jpeg(64, 48), ("JPEG", 64, 48, "RGB"), id="rgb-jpeg"),
    pytest.param("gray.png", lambda: files.grayscale_png(30, 20), ("PNG", 30, 20, "L"), id="grayscale-L"),
    pytest.param("palette.png", lambda: files.palette_png(36, 28), ("PNG", 36, 28, "P"), id="palette-P-transparency"),
    pytest.param("depth.png", lambda: files.gray16_png(30, 20), ("PNG", 30, 20, "I;16"), id="16-bit-grayscale"),
    pytest.param("print.jpg", lambda: files.cmyk_jpeg(32, 24), ("JPEG", 32, 24, "CMYK"), id="cmyk-jpeg"),
    pytest.param("alpha.png", lambda: files.rgba_png(50, 40), ("PNG", 50, 40, "RGBA"), id="rgba-png"),
    pytest.param("bits.png", lambda: files.bilevel_png(33, 17), ("PNG", 33, 17, "1"), id="1-bit"),
    pytest.param("upright.jpg", lambda: files.exif_rotated_jpeg(80, 40, 1), ("JPEG", 80, 40, "RGB"), id="exif-1"),
    pytest.param("upside down.jpg", lambda: files.exif_rotated_jpeg(80, 40, 3), ("JPEG", 80, 40, "RGB"),
                 id="exif-3-turned-180-keeps-size"),
    pytest.param("phone.jpg", lambda: files.exif_rotated_jpeg(80, 40, 6), ("JPEG", 40, 80, "RGB"),
                 id="exif-6-reports-shown-size"),
    pytest.param("phone8.jpg", lambda: files.exif_rotated_jpeg(80, 40, 8), ("JPEG", 40, 80, "RGB"),
                 id="exif-8-reports-shown-size"),
    pytest.param("anim.gif", lambda: files.animated_gif(40, 30, frames=3), ("GIF", 40, 30, "P"), id="multi-frame-gif"),
    pytest.param("scan.tif", lambda: files.rgb_tiff(44, 22), ("TIFF", 44, 22, "RGB"), id="tiff"),
    pytest.param("photo.webp", lambda: files.rgb_webp(48, 36), ("WEBP", 48, 36, "RGB"), id="webp", marks=webp),
    pytest.param("old.bmp", lambda: files.rgb_bmp(24, 18), ("BMP", 24, 18, "RGB"), id="bmp"),
    pytest.param("really a jpeg.png", lambda: files.rgb_jpeg(56, 42), ("JPEG", 56, 42, "RGB"),
                 id="jpeg-named-png-reports-JPEG"),
]


@pytest.mark.parametrize(("name", "make", "expected"), ACCEPTED)
def test_accepts_valid_images_and_reports_format_shown_size_and_mode(
    tmp_path: Path, name: str, make: Callable[[], bytes], expected: tuple
) -> None:
    check = inspect_image(on_disk(tmp_path, name, make()), max_pixels=LIMIT)

    assert check == ImageCheck(True, *expected), check.error


# (file name, bytes maker, max_pixels, words the error must contain, facts reported or None)
REFUSED = [
    pytest.param("empty.jpg", lambda: b"", LIMIT, ("empty",), None, id="empty-file"),
    pytest.param("half.jpg", lambda: files.truncated(files.rgb_jpeg(64, 48)), LIMIT, ("truncated",), None,
                 id="truncated-jpeg"),
    pytest.param("half.png", lambda: files.truncated(files.rgb_png(64, 48)), LIMIT, ("truncated",), None,
                 id="truncated-png"),
    pytest.param("head.gif", lambda: files.truncated(files.animated_gif(40, 30), 0.3), LIMIT, ("truncated",), None,
                 id="gif-cut-in-first-frame"),
    pytest.param("notes.jpg", files.text_bytes, LIMIT, ("not an image",), None, id="text-named-jpg"),
    pytest.param("cat.jpg", files.html_error_page, LIMIT, ("not an image", "HTML"), None, id="html-error-page"),
    pytest.param("noise.png", files.random_bytes, LIMIT, ("not an image",), None, id="random-bytes"),
    pytest.param("bomb.png", lambda: files.blank_bilevel_png(5000, 5000), 1_000_000,
                 ("decompression bomb", "ingest_images.max_pixels", "5000x5000", "1,000,000"), ("PNG", 5000, 5000, "1"),
                 id="bomb-over-max-pixels"),
    pytest.param("bomb.png", lambda: files.rgb_png(64, 48), 64 * 48 - 1,
                 ("decompression bomb", "ingest_images.max_pixels"), ("PNG", 64, 48, "RGB"),
                 id="one-pixel-over-max-pixels"),
    # Over PIL.Image.MAX_IMAGE_PIXELS (Pillow warns) but under twice it (Pillow raises): our guard decides.
    pytest.param("big.png", lambda: files.declared_only_png(10_000, 10_000), LIMIT,
                 ("decompression bomb", "ingest_images.max_pixels"), ("PNG", 10_000, 10_000, "1"),
                 id="over-pillow-warning-size", marks=pytest.mark.filterwarnings("error")),
]


@pytest.mark.parametrize(("name", "make", "max_pixels", "words", "expected_facts"), REFUSED)
def test_refuses_broken_files_with_an_actionable_reason(
    tmp_path: Path, name: str, make: Callable[[], bytes], max_pixels: int, words: tuple[str, ...],
    expected_facts: tuple | None,
) -> None:
    check = inspect_image(on_disk(tmp_path, name, make()), max_pixels=max_pixels)

    assert check.ok is False
    for word in words:
        assert word in check.error
    assert facts(check) == (expected_facts or (None, None, None, None))


# One file for every class of reason a refusal can have, and words of the advice that must come with it.
REASON_CASES = [
    pytest.param(lambda: b"", LIMIT, "empty", ("empty file", "copy it again"), id="empty"),
    pytest.param(lambda: files.truncated(files.rgb_png(64, 48)), LIMIT, "truncated",
                 ("truncated", "cut short", "copy it again"), id="truncated"),
    pytest.param(files.corrupt_data_png, LIMIT, "corrupt", ("corrupt", "damaged", "replace the file"),
                 id="corrupt-pixel-data"),
    pytest.param(files.bad_header_checksum_png, LIMIT, "corrupt", ("PNG file that Pillow cannot open", "damaged"),
                 id="corrupt-header"),
    pytest.param(files.unsupported_compression_bmp, LIMIT, "unsupported",
                 ("unsupported image format feature", "Unsupported BMP compression", "convert the file"),
                 id="unsupported-bmp-compression"),
    pytest.param(files.unsupported_compression_tiff, LIMIT, "unsupported",
                 ("TIFF file that Pillow cannot open", "TIFF compression 34712", "convert the file"),
                 id="unsupported-tiff-codec"),
    pytest.param(files.text_chunk_bomb_png, LIMIT, "security_limit",
                 ("Pillow security limit", "MAX_TEXT_CHUNK", "strip its metadata"), id="text-chunk-bomb"),
    pytest.param(lambda: files.declared_only_png(100_000, 100_000), LIMIT, "security_limit",
                 ("Pillow security limit", "will not admit"), id="pillow-pixel-ceiling"),
    pytest.param(files.html_error_page, LIMIT, "not_an_image", ("not an image", "HTML"), id="not-an-image"),
    pytest.param(lambda: files.rgb_png(64, 48), 100, "too_many_pixels",
                 ("decompression bomb guard", "raise that setting"), id="too-many-pixels"),
]


@pytest.mark.parametrize(("make", "max_pixels", "reason", "words"), REASON_CASES)
def test_every_refusal_has_its_reason_class_and_the_advice_for_it(tmp_path, make, max_pixels, reason, words):
    from lakeloop.ingest.image_checks import REASONS

    check = inspect_image(on_disk(tmp_path, "file.img", make()), max_pixels=max_pixels)

    assert (check.ok, check.reason) == (False, reason), check.error
    assert reason in REASONS
    for word in words:
        assert word in check.error


def test_every_reason_class_is_produced_by_a_case_here_or_by_ingestion():
    from lakeloop.ingest.image_checks import REASONS

    # too_large: tests/test_ingest_images.py; broken_link, unreadable: tests/test_bad_inputs.py;
    # check_failed: test_a_file_whose_check_raises_what_no_check_expects_is_refused_with_that_error
    covered = {case.values[2] for case in REASON_CASES} | {"too_large", "broken_link", "unreadable", "check_failed"}
    assert covered == set(REASONS)


def test_no_content_at_all_is_an_empty_file() -> None:
    check = inspect_image(None, max_pixels=LIMIT)

    assert (check.ok, "empty" in check.error) == (False, True)


@pytest.mark.parametrize(
    ("max_pixels", "ok", "word"),
    [
        pytest.param(8000 * 8000 - 1, False, "decompression bomb", id="refused-from-header"),
        pytest.param(8000 * 8000, False, "truncated", id="decoded-when-allowed"),
    ],
)
def test_bomb_is_refused_from_its_header_without_decoding(
    tmp_path: Path, max_pixels: int, ok: bool, word: str
) -> None:
    """The file declares 8000x8000 but holds almost no pixel data: decoding it can only fail as
    truncated. Refused as a bomb with the declared facts, it was judged on its header alone."""
    content = on_disk(tmp_path, "declared.png", files.declared_only_png(8000, 8000))
    assert len(content) < 200

    check = inspect_image(content, max_pixels=max_pixels)

    assert (check.ok, word in check.error) == (ok, True), check.error


@pytest.mark.parametrize(
    ("max_pixels", "ok"),
    [
        pytest.param(files.ZOO_MAX_PIXELS, False, id="default-limit"),
        pytest.param(6000 * 6000, True, id="limit-raised-to-its-size"),
    ],
)
def test_genuine_bomb_is_small_on_disk_and_obeys_max_pixels(tmp_path: Path, max_pixels: int, ok: bool) -> None:
    content = on_disk(tmp_path, "blank.png", files.blank_bilevel_png(6000, 6000))
    assert len(content) < 16_384  # 36 M pixels in a few KB: the point of a decompression bomb

    check = inspect_image(content, max_pixels=max_pixels)

    assert (check.ok, facts(check)) == (ok, ("PNG", 6000, 6000, "1")), check.error


@pytest.mark.parametrize("max_pixels", [LIMIT, 10**12], ids=["default-limit", "limit-above-pillow-ceiling"])
def test_pillow_own_bomb_error_is_refused_not_raised(tmp_path: Path, max_pixels: int) -> None:
    """A header declaring 10^10 pixels makes Image.open raise DecompressionBombError before our
    guard runs (Pillow's ceiling is 2 x MAX_IMAGE_PIXELS): refused, and the reason must not
    send the user to raise a setting that cannot admit the file."""
    width = height = 100_000
    assert width * height > 2 * Image.MAX_IMAGE_PIXELS  # Pillow's error path, not its warning
    content = on_disk(tmp_path, "huge header.png", files.declared_only_png(width, height))
    assert len(content) < 200  # nothing huge is allocated: only the header is read

    check = inspect_image(content, max_pixels=max_pixels)

    assert check.ok is False
    assert "decompression bomb" in check.error
    assert "ingest_images.max_pixels" in check.error
    assert "will not admit" in check.error


# --- the zoo shared with the ingestion end-to-end tests -------------------------------------


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, files.ZooFile]]:
    root = tmp_path_factory.mktemp("zoo")
    return root, files.write_image_zoo_records(root)


@pytest.mark.fault  # the zoo's files are bad inputs too: listed in the reliability figures
@pytest.mark.parametrize("relative", files.zoo_paths())
def test_zoo_file_gets_its_expected_outcome(zoo: tuple[Path, dict[str, files.ZooFile]], relative: str,
                                            reliability) -> None:
    root, records = zoo
    expected = records[relative]

    check = inspect_image((root / relative).read_bytes(), max_pixels=files.ZOO_MAX_PIXELS)

    assert check.ok is (expected.outcome == "ok"), check.error
    assert facts(check) == (expected.format, expected.width, expected.height, expected.mode)
    if expected.outcome == "quarantine":
        assert expected.reason in check.error
    reliability.bad_input("ingest_images (image zoo)", relative,
                          f"accepted: {check.format} {check.mode}" if check.ok else f"quarantine: {check.error}")


def test_write_image_zoo_returns_the_inputs_and_their_outcomes(tmp_path: Path) -> None:
    outcomes = files.write_image_zoo(tmp_path)

    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == set(outcomes) | set(files.ZOO_IGNORED)
    assert set(outcomes.values()) == {"ok", "quarantine"}
    assert set(outcomes) == set(files.zoo_paths())
    # The names that break naive code are there.
    for tricky in ("dog/été photo.png", "cat/a[1].png", "cat/Whiskers.JPG", "bird/half.PNG", "bird/小鸟.bmp"):
        assert tricky in outcomes
    # Every input in a label folder, with an ending ingestion lists; the ignored files with one it does not.
    extensions = {e.lower() for e in ImageIngestConfig().extensions}
    assert {p.rsplit(".", 1)[1].lower() for p in outcomes} <= extensions
    assert all(p.count("/") == 1 for p in outcomes)
    assert not {p.rsplit(".", 1)[1].lower() for p in files.ZOO_IGNORED} & extensions


def test_zoo_duplicates_are_exactly_the_byte_identical_files(zoo: tuple[Path, dict[str, files.ZooFile]]) -> None:
    root, records = zoo
    by_digest: dict[str, list[str]] = {}
    for relative in sorted(records):
        digest = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        assert records[relative].image_id == digest
        by_digest.setdefault(digest, []).append(relative)

    expected = {rel: (group[0] if rel != group[0] else None) for group in by_digest.values() for rel in group}
    assert {rel: r.duplicate_of for rel, r in records.items()} == expected
    assert expected["cat/tabby_copy.png"] == "cat/tabby.png"
    assert records["cat/tabby_copy.png"].ledger_outcome == "duplicate"
    assert records["cat/tabby.png"].ledger_outcome == "ingested"
    assert records["dog/also empty.png"].ledger_outcome == "quarantined"


def test_zoo_bytes_are_the_same_on_every_run(tmp_path: Path) -> None:
    first = files.write_image_zoo_records(tmp_path / "one")
    second = files.write_image_zoo_records(tmp_path / "two")

    assert [astuple(r) for r in first.values()] == [astuple(r) for r in second.values()]


@pytest.mark.parametrize("payload", [b"\xef\xbb\xbf", b"BM", b"II*\x00" + b"\xff" * 4, b"\x89PNG\r\n\x1a\n"],
                         ids=["three-bytes", "bmp-magic-alone", "tiff-header-pointing-nowhere", "png-signature-alone"])
def test_a_few_bytes_that_make_a_pillow_plugin_raise_are_refused_with_a_reason_not_raised(payload):
    check = inspect_image(payload, LIMIT)
    assert not check.ok and check.reason in ("not_an_image", "corrupt") and check.error


class _Bottomless(io.RawIOBase):
    """A file whose reading raises what a decoder deep in recursion raises."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise RecursionError("maximum recursion depth exceeded")


def test_a_file_whose_check_raises_what_no_check_expects_is_refused_with_that_error():
    from lakeloop.ingest.image_checks import inspect_image_stream

    check = inspect_image_stream(io.BufferedReader(_Bottomless()), 1000, LIMIT)

    assert (check.ok, check.reason) == (False, "check_failed")
    assert "RecursionError" in check.error and "this file" in check.error


def _scan_corrupted(content: bytes) -> bytes:
    """A JPEG whose scan header names a component its frame lacks: libjpeg stops on it."""
    data = bytearray(content)
    data[content.find(b"\xff\xda") + 5] = 0x77
    return bytes(data)


def _progressive_jpeg(width: int = 640, height: int = 480) -> bytes:
    return files.encode(files.rgb_image(width, height, seed=3), "JPEG", quality=90, progressive=True)


JPEG_CASES = [
    pytest.param(lambda: files.rgb_jpeg(640, 480), id="baseline"),
    pytest.param(_progressive_jpeg, id="progressive"),
    pytest.param(lambda: files.truncated(files.rgb_jpeg(640, 480)), id="cut-short"),
    pytest.param(lambda: files.truncated(_progressive_jpeg()), id="progressive-cut-short"),
    pytest.param(lambda: files.rgb_jpeg(640, 480)[:-40], id="end-missing"),
    pytest.param(lambda: _scan_corrupted(files.rgb_jpeg(640, 480)), id="corrupt-scan"),
    pytest.param(lambda: _scan_corrupted(_progressive_jpeg()), id="progressive-corrupt-scan"),
    pytest.param(lambda: files.cmyk_jpeg(64, 48), id="cmyk"),
    pytest.param(lambda: files.exif_rotated_jpeg(80, 40, 6), id="exif-rotated"),
    pytest.param(lambda: files.encode(files.noise_image("L", 64, 48), "JPEG"), id="grey"),
]


@pytest.mark.quick
@pytest.mark.parametrize("make", JPEG_CASES)
def test_a_jpeg_checked_at_reduced_scale_is_accepted_or_refused_exactly_as_at_full_size(tmp_path, make):
    content = on_disk(tmp_path, "photo.jpg", make())

    scaled = inspect_image(content, max_pixels=LIMIT, jpeg_draft=True)
    full = inspect_image(content, max_pixels=LIMIT, jpeg_draft=False)

    assert (scaled.ok, scaled.reason, facts(scaled)) == (full.ok, full.reason, facts(full))


def test_the_reduced_scale_check_refuses_cut_short_and_corrupt_jpegs_with_their_reason_class(tmp_path):
    cut = inspect_image(on_disk(tmp_path, "cut.jpg", files.truncated(_progressive_jpeg())), max_pixels=LIMIT)
    corrupt = inspect_image(on_disk(tmp_path, "bad.jpg", _scan_corrupted(files.rgb_jpeg(640, 480))),
                            max_pixels=LIMIT)
    assert (cut.ok, cut.reason) == (False, "truncated")
    assert (corrupt.ok, corrupt.reason) == (False, "corrupt")

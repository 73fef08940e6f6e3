"""Records built to break parsers (tests/support/hostile.py: nesting 100,000 deep, 10 MB lines, lone
surrogates, NUL and overlong UTF-8, every byte value) through every door that parses: JSON lines
(strict and Spark's lenient reader), CSV, image ingest and Kafka messages. Each record ends in bronze
or in quarantine with a reason, no task fails, and the run succeeds."""

from __future__ import annotations

import uuid

import pytest

from lakeloop.ingest.images import ingest_images
from lakeloop.ingest.table_read import json_nesting, json_problem
from lakeloop.ingest.tables import ingest_tables
from lakeloop.io import delta
from lakeloop.report import RunReport
from lakeloop.scoring.stream import score_stream
from support.hostile import DEEP, hostile_corpus
from support.imagefiles import rgb_png
from support.lakes import layout, make_profile
from test_kafka import kafka_broker, kafka_lake, kafka_profile, produce  # noqa: F401 - fixtures and helpers

pytestmark = [pytest.mark.fault, pytest.mark.slow]

CORPUS = hostile_corpus()


def test_a_record_nested_a_hundred_thousand_levels_deep_is_refused_before_parsing_with_its_depth():
    for payload in (b"[" * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP):
        reason = json_problem(payload.decode())
        assert reason.startswith(f"nested {DEEP:,} levels deep, more than ingest_tables.max_nesting = 1,000")
    assert json_nesting('{"v": "[[[[", "w": [[1]]}') == 3  # brackets inside strings do not count
    assert json_problem('{"v": ' + "[" * 50 + "]" * 50 + "}", max_nesting=10).startswith("nested 51 levels deep")
    assert json_problem('{"v": [[1]]}') is None


def test_any_exception_a_json_line_provokes_is_its_reason_not_a_failed_task():
    # Nesting under the setting but past what Python's parser can take: the parser's own RecursionError.
    reason = json_problem("[" * 5000 + "]" * 5000, max_nesting=10_000)
    assert reason.startswith("the JSON check gave up on this record (RecursionError") and "flatten it" in reason


def _lines(payloads: dict[str, bytes]) -> bytes:
    return b"\n".join(payloads.values()) + b"\n"


def _csv(payloads: dict[str, bytes]) -> bytes:
    rows = [b"id,v"] + [str(i).encode() + b"," + payload for i, payload in enumerate(payloads.values())]
    return b"\n".join(rows) + b"\n"


@pytest.mark.stacks  # the text reaches the checks through each stack's Arrow
def test_the_hostile_corpus_through_json_and_csv_ends_every_record_in_bronze_or_quarantine(
        spark, tmp_path, reliability):
    sources = {"json_strict": ("json", _lines(CORPUS), {}), "json_lenient": ("json", _lines(CORPUS), {}),
               "csv": ("csv", _csv(CORPUS), {"header": "true"})}
    tables = {}
    for name, (fmt, content, options) in sources.items():
        (tmp_path / f"{name}.{fmt}").write_bytes(content)
        tables[name] = {"source": f"file:{tmp_path}/{name}.{fmt}", "format": fmt, "keys": ["id"],
                        "schema": "id INT, v STRING", "options": options, "raw_max_chars": 1000}
    tables["json_lenient"]["strict_json"] = False
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_tables.tables", tables))

    report = ingest_tables(spark, profile)  # raises JobFailed if any table failed

    for name in tables:
        assert report.details["tables"][name]["status"] == "succeeded", report.details["tables"][name]
        bronze = delta.read_table(spark, layout(profile).table("bronze", name)).count()
        quarantine = delta.read_table(spark, layout(profile).table("quarantine", name)).select("error").collect()
        assert bronze + len(quarantine) == len(CORPUS), (name, bronze, len(quarantine))
        assert all(row.error for row in quarantine)
        reliability.record("a hostile record corpus (nesting, 10 MB lines, bad UTF-8, every byte)",
                           f"ingest_tables ({name})", "records in vs bronze + quarantine", len(CORPUS),
                           max(0, len(CORPUS) - bronze - len(quarantine)), 0)
    errors = [r.error for r in delta.read_table(spark, layout(profile).table("quarantine", "json_strict")).collect()]
    assert sum("more than ingest_tables.max_nesting" in e for e in errors) == 5
    reliability.bad_input("ingest_tables (JSON)", "a line nested 100,000 levels deep",
                          "quarantine before parsing, naming its depth and ingest_tables.max_nesting")


def test_the_hostile_corpus_as_image_files_is_quarantined_file_by_file_and_the_good_photo_ingested(
        spark, tmp_path, reliability):
    source = tmp_path / "raw" / "hostile"
    source.mkdir(parents=True)
    for name, payload in CORPUS.items():
        (source / f"{name}.png").write_bytes(payload)
    (source / "good.png").write_bytes(rgb_png(24, 24, seed=4))
    profile = make_profile(f"file:{tmp_path}/lake", ("ingest_images.source", f"file:{tmp_path}/raw"))

    report = ingest_images(spark, profile)

    assert report.counts["ingested"] == 1 and report.counts["quarantined"] == len(CORPUS)
    quarantine = delta.read_table(spark, layout(profile).quarantine_images).select("path", "reason", "error").collect()
    assert len(quarantine) == len(CORPUS) and all(r.reason and r.error for r in quarantine)
    reliability.record("a hostile record corpus as image files", "ingest_images", "files in vs bronze + quarantine",
                       len(CORPUS) + 1, len(CORPUS) + 1 - report.counts["ingested"] - len(quarantine), 0)


@pytest.mark.kafka
def test_the_hostile_corpus_as_kafka_messages_is_quarantined_message_by_message(
        spark, kafka_broker, kafka_lake, tmp_path, reliability):
    profile = kafka_profile(kafka_lake, tmp_path / "lake", f"hostile-{uuid.uuid4().hex[:8]}",
                            ("score.kafka.max_message_bytes", 16 * 1024 * 1024))
    # The broker itself refuses messages over 1 MB (message.max.bytes) before lakeloop sees them.
    fitting = {name: payload for name, payload in CORPUS.items() if len(payload) < 1_000_000}
    messages = [(f"hostile-{name}", payload, "3") for name, payload in fitting.items()]
    messages += [(b"key-with-nul\x00", CORPUS["every-byte"], None), (CORPUS["overlong-utf8"], b"x", None)]
    produce(spark, profile, messages)

    report = score_stream(spark, profile, report=RunReport("score", "hostile"))

    assert report.counts["inputs"] == len(messages) and report.counts["quarantined"] == len(messages)
    quarantine = delta.read_table(spark, layout(profile).quarantine_predictions).select("image_id", "error").collect()
    assert len(quarantine) == len(messages) and all(r.error for r in quarantine)
    assert {f"hostile-{name}" for name in fitting} <= {r.image_id for r in quarantine}
    reliability.record("a hostile record corpus as Kafka messages", "score --stream (Kafka)",
                       "messages sent vs predictions + quarantine", len(messages), len(messages) - len(quarantine), 0)

"""Scoring frames from Kafka (score --stream with score.input: kafka) against a real broker: Apache
Kafka in KRaft mode from Maven Central's jars, on loopback (``./dev/services.sh start kafka``).
Every message ends exactly once in gold.predictions or in quarantine.predictions with its topic,
partition and offset, also when the stream's driver is killed mid-way and restarted."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lakeloop.config import REPO_ROOT, load_profile
from lakeloop.errors import ConfigError, SourceError
from lakeloop.io import delta
from lakeloop.report import RunReport
from lakeloop.scoring.kafka import checkpoint_name
from lakeloop.scoring.stream import score_stream
from support.lakes import copy_lake, layout
from support.reliability import lost_and_duplicated
from support.kills import kill_after_first_commit
from test_scoring import publish_lenet

KEY = ["image_id", "model_name", "model_version"]
MAX_MESSAGE_BYTES = 65536
# The malformed messages: (key, value), each refused for its own reason.
MALFORMED = {
    "bad-not-an-image": b"this is not an image",
    "bad-empty": b"",
    "bad-oversize": bytes(range(256)) * (MAX_MESSAGE_BYTES // 256 + 8),
    "bad-no-value": None,
}


@pytest.fixture(scope="session")
def kafka_broker():
    from lakeloop_dev.kafka import default_kafka

    broker = default_kafka().start()
    yield broker
    if broker.owned:
        broker.stop()


@pytest.fixture(scope="module")
def kafka_lake(spark, digits_lake, tmp_path_factory):
    """The digits lake with a published LeNet, and 240 of its images as frames (PNG bytes and label)."""
    profile = copy_lake(digits_lake, tmp_path_factory.mktemp("kafka") / "lake")
    publish_lenet(spark, profile, seed=0, train_steps=60)
    frames = delta.read_table(spark, layout(profile).bronze_images).orderBy("image_id").limit(240) \
        .select("image_id", "content", "label").toPandas()
    return profile, frames


def kafka_profile(kafka_lake, target: Path, topic: str, *overrides):
    profile, _ = kafka_lake
    copied = copy_lake(profile, target)
    return load_profile("kafka-test", [("lake_root", copied.lake_root), ("features.join_table", None),
                                       ("score.kafka.topic", topic),
                                       ("score.kafka.max_message_bytes", MAX_MESSAGE_BYTES), *overrides])


def produce(spark, profile, messages: list[tuple[str | bytes | None, bytes | None, str | None]]) -> None:
    """Send (key, value, label header) messages to the profile's topic with Spark's Kafka sink."""
    from pyspark.sql import functions as F

    encoded = [(k.encode() if isinstance(k, str) else k, v, label) for k, v, label in messages]
    rows = spark.createDataFrame(encoded, "key binary, value binary, label string")
    headers = F.when(F.col("label").isNotNull(), F.array(F.struct(F.lit("label").alias("key"),
                                                                  F.col("label").cast("binary").alias("value"))))
    (rows.select("key", "value", headers.alias("headers")).write.format("kafka")
     .option("kafka.bootstrap.servers", profile.score.kafka.bootstrap_servers)
     .option("topic", profile.score.kafka.topic).save())


def frame_messages(frames, start: int, stop: int) -> list[tuple[str, bytes, str]]:
    return [(r.image_id, bytes(r.content), r.label) for r in frames.iloc[start:stop].itertuples()]


# Good images under keys that cannot be theirs: quarantined under their position (kafka:<topic>/<p>/<o>).
UNUSABLE_KEYS = [None, b"\xff\xfe not utf-8", "kafka:spoofed/0/0"]


def malformed_messages(frames) -> list[tuple[str | bytes | None, bytes | None, str | None]]:
    """The broken messages, good images under unusable keys, and one that repeats the key of the
    first frame (sent in the same batch, after it)."""
    image = bytes(frames.iloc[0].content)
    return [*[(key, value, "3") for key, value in MALFORMED.items()], *[(key, image, "0") for key in UNUSABLE_KEYS],
            (frames.iloc[0].image_id, image, "0")]


# Messages stored under their position: the unusable keys and the repeat.
N_POSITIONAL = len(UNUSABLE_KEYS) + 1


def outcome(spark, profile):
    gold = delta.read_table(spark, layout(profile).predictions).toPandas()
    quarantine = delta.read_table(spark, layout(profile).quarantine_predictions).toPandas()
    return gold, quarantine


def assert_each_message_once(spark, profile, keys: list[str], n_positional: int) -> str:
    """Every message with a usable key of its own has one prediction or one quarantine row under it,
    every other one a quarantine row under its position; nothing else is there, nothing twice.
    Returns the summary line."""
    gold, quarantine = outcome(spark, profile)
    n_duplicates = int(gold.duplicated(KEY).sum() + quarantine.duplicated(KEY).sum())
    assert n_duplicates == 0
    assert set(gold["image_id"]).isdisjoint(quarantine["image_id"])
    written = [*gold["image_id"], *quarantine["image_id"]]
    positional = [i for i in written if i.startswith(f"kafka:{profile.score.kafka.topic}/")]
    assert len(written) == len(keys) + n_positional
    assert sorted(set(written) - set(positional)) == sorted(keys) and len(positional) == n_positional
    assert set(quarantine["image_id"]) == {*MALFORMED, *positional}
    return (f"inputs {len(keys) + n_positional}, predictions {len(gold)}, quarantined {len(quarantine)}, "
            f"duplicates {n_duplicates}")


@pytest.mark.kafka
@pytest.mark.slow
def test_frames_on_a_kafka_topic_are_each_scored_once_and_broken_messages_quarantined_with_their_offset(
        spark, kafka_broker, kafka_lake, tmp_path):
    _, frames = kafka_lake
    secret = f"planted-{uuid.uuid4().hex}"
    # A credential among the consumer's settings (unused by this broker): it must not be reported.
    jaas = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="{secret}";'
    profile = kafka_profile(kafka_lake, tmp_path / "lake", f"frames-{uuid.uuid4().hex[:8]}",
                            ("score.kafka.max_offsets_per_trigger", 60), ("score.kafka.options", {
                                "kafka.sasl.jaas.config": jaas}))
    produce(spark, profile, [*frame_messages(frames, 0, 120), *malformed_messages(frames)])

    first = score_stream(spark, profile, report=RunReport("score", "kafka-1"))

    assert secret not in first.to_json() and first.details["input"]["options"] == ["kafka.sasl.jaas.config"]
    n_sent = 120 + len(MALFORMED) + N_POSITIONAL
    assert first.counts["inputs"] == n_sent and first.counts["batches"] >= 2
    assert first.counts["scored"] == 120 and first.counts["quarantined"] == len(MALFORMED) + N_POSITIONAL
    summary = assert_each_message_once(spark, profile, [*frames.image_id[:120], *MALFORMED], N_POSITIONAL)
    gold, quarantine = outcome(spark, profile)
    assert set(gold["kafka_topic"]) == {profile.score.kafka.topic}
    assert gold["kafka_offset"].notna().all() and gold["true_label"].notna().all()
    assert first.metrics["accuracy_this_run"] > 0.5  # the label header is the truth
    errors = quarantine.set_index("image_id")
    assert "cannot decode image" in errors.loc["bad-not-an-image", "error"]
    assert "fix what produced the message" in errors.loc["bad-not-an-image", "error"]
    assert f"over score.kafka.max_message_bytes = {MAX_MESSAGE_BYTES}" in errors.loc["bad-oversize", "error"]
    for key in ("bad-no-value", "bad-empty"):
        assert "message without an image: its value is empty" in errors.loc[key, "error"]
    positional = errors[errors.index.str.startswith("kafka:")]
    assert sorted(positional["error"].str.extract(r"^(message [a-z ]+)")[0]) == [
        "message key is not ", "message key starts with ", "message repeats a key ", "message without a key "]
    for row in positional.itertuples():
        assert row.Index == f"kafka:{row.kafka_topic}/{row.kafka_partition}/{row.kafka_offset}"
        assert f"partition {row.kafka_partition} offset {row.kafka_offset}" in row.error
    reasons = first.details["quarantine_reasons"]  # over every micro-batch; the two empty values are one reason
    assert sum(reasons.values()) == len(MALFORMED) + N_POSITIONAL and len(reasons) == len(MALFORMED) + N_POSITIONAL - 1

    produce(spark, profile, frame_messages(frames, 120, 150))
    second = score_stream(spark, profile, report=RunReport("score", "kafka-2"))

    assert second.counts["inputs"] == 30 and second.counts["scored"] == 30
    assert_each_message_once(spark, profile, [*frames.image_id[:150], *MALFORMED], N_POSITIONAL)
    print(f"\nkafka: {summary}")


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.fault
def test_a_kafka_stream_killed_mid_way_and_restarted_leaves_one_prediction_or_quarantine_row_per_message(
        spark, kafka_broker, kafka_lake, tmp_path, reliability):
    """A real kill: the spark-submit'ed score --stream is SIGKILLed once its first micro-batch is
    committed; messages keep arriving while it is down; the restart goes on from the checkpoint."""
    _, frames = kafka_lake
    topic = f"frames-{uuid.uuid4().hex[:8]}"
    profile = kafka_profile(kafka_lake, tmp_path / "lake", topic, ("score.kafka.max_offsets_per_trigger", 40))
    produce(spark, profile, [*frame_messages(frames, 0, 160), *malformed_messages(frames)])
    lake = Path(profile.lake_root.removeprefix("file:"))
    cmd = [str(REPO_ROOT / "spark-submit.sh"), "--profile", "kafka-test", "--set", f"lake_root=file:{lake}",
           "--set", "features.join_table=null", "--set", f"score.kafka.topic={topic}",
           "--set", "score.kafka.max_offsets_per_trigger=40",
           "--set", f"score.kafka.max_message_bytes={MAX_MESSAGE_BYTES}", "score", "--stream"]
    commits = lake / "_streams" / "score" / checkpoint_name(profile.score.kafka) / "digits_lenet" / "v1" / "commits"
    done = kill_after_first_commit(cmd, commits)
    assert done < 4, "the stream finished before the kill"
    produce(spark, profile, frame_messages(frames, 160, 200))  # frames keep arriving while it is down

    report = score_stream(spark, profile, report=RunReport("score", "kafka-after-kill"))

    gold, quarantine = outcome(spark, profile)
    keyed = [i for i in [*gold["image_id"], *quarantine["image_id"]] if not i.startswith("kafka:")]
    expected = [*frames.image_id[:200], *MALFORMED]
    reliability.record("SIGKILL of the spark-submit'ed driver after its first micro-batch; messages arrive while it "
                       "is down; restart", "score --stream (Kafka)", "killed + restarted vs every message sent",
                       len(expected) + N_POSITIONAL, *lost_and_duplicated(expected, keyed))
    summary = assert_each_message_once(spark, profile, [*frames.image_id[:200], *MALFORMED], N_POSITIONAL)
    assert report.counts["batches"] >= 1
    print(f"\nkafka stream kill after {done} committed micro-batch(es): {summary}")


def test_a_kafka_broker_that_does_not_answer_is_named_in_the_error(spark, lake):
    from lakeloop_dev.processes import free_port

    profile = load_profile("kafka-test", [("lake_root", lake),
                                          ("score.kafka.bootstrap_servers", f"127.0.0.1:{free_port()}")])
    with pytest.raises(SourceError, match=r"no Kafka broker .* answers: 127\.0\.0\.1:\d+ .*services.sh start kafka"):
        score_stream(spark, profile, report=RunReport("score", "no-broker"))


def test_the_batch_score_job_says_kafka_frames_are_scored_with_stream(spark, lake):
    from lakeloop.scoring import score_table

    profile = load_profile("kafka-test", [("lake_root", lake)])
    with pytest.raises(ConfigError, match="score.input is kafka.*run score --stream"):
        score_table(spark, profile, report=RunReport("score", "batch-kafka"))


@pytest.mark.parametrize("override, message", [
    (("score.kafka.topic", None), "score.kafka.topic is not set"),
    (("score.kafka.bootstrap_servers", "broker-without-port"), "not a comma-separated list of host:port"),
    (("score.kafka.topic", "frames/2026"), "is not a Kafka topic name"),
    (("score.kafka.starting_offsets", "yesterday"), "must be earliest .* or latest"),
    (("score.kafka.options", {"subscribe": "other"}), "score.kafka.options.subscribe is set by lakeloop"),
    (("score.kafka.options", {"group.id": "g"}), r"only Kafka consumer settings \(kafka\.\*"),
    (("score.kafka.options", {"kafka.auto.offset.reset": "earliest"}), "cannot be set: use score.kafka.starting_offsets"),
])
def test_a_kafka_input_with_a_wrong_setting_is_refused_when_the_profile_loads(lake, override, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("kafka-test", [("lake_root", lake), override])


def test_a_consumer_setting_given_with_set_keeps_its_dots_and_its_value_is_never_shown_in_an_error(lake):
    profile = load_profile("kafka-test", [("lake_root", lake), "score.kafka.options.kafka.sasl.mechanism=PLAIN"])
    assert profile.score.kafka.options == {"kafka.sasl.mechanism": "PLAIN"}
    with pytest.raises(ConfigError) as caught:
        load_profile("kafka-test", [("lake_root", lake), ("score.kafka.options", "password=planted-secret")])
    assert "planted-secret" not in str(caught.value) and "not shown" in str(caught.value)

"""``score.*``: the scoring job's settings (batch, ``--stream``, Kafka), and their checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lakeloop.config.checks import at_least, check_batch_bytes, check_trigger, require_uri
from lakeloop.errors import ConfigError
from lakeloop.layout import parse_model_ref, table_ref


@dataclass(frozen=True)
class ScoreStreamConfig:
    """``score --stream``: Structured Streaming over ``score.input``; see
    docs/jobs/score.md#streaming-scoring-score---stream."""

    # "available_now": score what is new, then stop (scheduled runs); an interval such as
    # "30 seconds": keep going, one micro-batch per interval, until the job is stopped.
    trigger: str = "available_now"
    max_files_per_trigger: int = 100  # the Delta source's maxFilesPerTrigger: input files per micro-batch
    # false: a commit that rewrites input rows (a full features rebuild, an UPDATE) stops the stream with
    # Delta's error. true: such commits are skipped whole, rows they add too (run the batch score after).
    skip_change_commits: bool = False
    checkpoint: str | None = None  # default <lake>/_streams/score/<input>/<model>/v<version>


@dataclass(frozen=True)
class ScoreKafkaConfig:
    """``score.input: kafka``: frames on a Kafka topic, scored by ``score --stream``; see
    docs/jobs/score.md#scoring-from-kafka-scoreinput-kafka.

    A message is one frame: its key the frame's id (``image_id`` in gold.predictions), its value the
    encoded image (PNG, JPEG ...), an optional header holding the true label.
    """

    bootstrap_servers: str | None = None  # host:port[,host:port ...]
    topic: str | None = None  # one topic, or several separated by commas
    starting_offsets: str = "earliest"  # where a new checkpoint (a new model version) starts: earliest or latest
    max_offsets_per_trigger: int = 10000  # messages per micro-batch, over all partitions
    max_message_bytes: int = 16 * 1024 * 1024  # a larger value is quarantined without being decoded
    label_header: str | None = "label"  # the header whose UTF-8 value is the frame's true label, if sent
    # true: offsets the broker deleted before they were scored (retention) stop the stream with Spark's error.
    fail_on_data_loss: bool = True
    # More settings of Spark's Kafka source, e.g. kafka.security.protocol, kafka.sasl.jaas.config.
    # Their values are never written to reports or logs.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of ``jobs/score.py``; see :mod:`lakeloop.scoring`."""

    model: str = "digits_lenet"
    input: str = "features"
    input_column: str | None = None
    batch_size: int = 512
    max_batch_bytes: int = 64 * 1024 * 1024
    torch_threads_per_task: int = 1
    max_rows_per_run: int | None = None  # a bounded backfill: score at most this many rows, the rest next run
    commit_every_rows: int | None = None  # MERGE every so many rows, so a killed run keeps what it scored
    stream: ScoreStreamConfig = field(default_factory=ScoreStreamConfig)
    kafka: ScoreKafkaConfig = field(default_factory=ScoreKafkaConfig)


SCORE_INPUT_FORMS = "features, images, kafka, a lake table such as silver.features, or a Delta table URI"


def check_score(cfg: ScoreConfig) -> None:
    parse_model_ref(cfg.model)
    if cfg.input not in ("features", "images", "kafka") and table_ref(cfg.input) is None:
        require_uri(cfg.input, f"score.input ({SCORE_INPUT_FORMS})")
    at_least(cfg.batch_size, 1, "score.batch_size", "512")
    at_least(cfg.torch_threads_per_task, 1, "score.torch_threads_per_task",
              "1 (one thread per task when Spark runs one task per core)")
    for setting, value, example in (("max_rows_per_run", cfg.max_rows_per_run, "1000000"),
                                    ("commit_every_rows", cfg.commit_every_rows, "100000")):
        if value is not None:
            at_least(value, 1, f"score.{setting}", example)
    check_batch_bytes(cfg.max_batch_bytes, "score.max_batch_bytes", "67108864")
    _check_score_stream(cfg.stream)
    if cfg.input == "kafka":
        _check_score_kafka(cfg.kafka)


# Spark's Kafka source options lakeloop sets from score.kafka.* (options may not set them again).
_KAFKA_OWN_OPTIONS = ("kafka.bootstrap.servers", "subscribe", "subscribepattern", "assign", "startingoffsets",
                      "maxoffsetspertrigger", "failondataloss", "includeheaders")


# Kafka consumer settings Spark's source manages itself and refuses, and what to do instead.
_KAFKA_REFUSED_OPTIONS = {
    "kafka.auto.offset.reset": "use score.kafka.starting_offsets",
    "kafka.enable.auto.commit": "the offsets live in the stream's checkpoint, not in Kafka",
    "kafka.key.deserializer": "keys arrive as bytes; lakeloop reads them as UTF-8",
    "kafka.value.deserializer": "values arrive as bytes: the encoded image",
    "kafka.interceptor.classes": "Spark's Kafka source does not take consumer interceptors",
}


def _check_score_kafka(cfg: ScoreKafkaConfig) -> None:
    for setting, value, example in (("bootstrap_servers", cfg.bootstrap_servers, "broker1:9092,broker2:9092"),
                                    ("topic", cfg.topic, "camera-frames")):
        if not value or not value.strip():
            raise ConfigError(f"score.input is kafka but score.kafka.{setting} is not set; set it, e.g. "
                              f"--set score.kafka.{setting}={example}")
    if any(not re.match(r"^[^\s,:]+:[0-9]+$", server) for server in cfg.bootstrap_servers.split(",")):
        raise ConfigError(f"score.kafka.bootstrap_servers = {cfg.bootstrap_servers!r} is not a comma-separated "
                          f"list of host:port, e.g. broker1:9092,broker2:9092")
    if any(not re.match(r"^[A-Za-z0-9._-]{1,249}$", topic) for topic in cfg.topic.split(",")):
        raise ConfigError(f"score.kafka.topic = {cfg.topic!r} is not a Kafka topic name (letters, digits, '.', '_', "
                          f"'-'), or several separated by commas")
    if cfg.starting_offsets not in ("earliest", "latest"):
        raise ConfigError(f"score.kafka.starting_offsets = {cfg.starting_offsets!r} must be earliest (score every "
                          f"message the topic still holds) or latest (only those that arrive from now on)")
    at_least(cfg.max_offsets_per_trigger, 1, "score.kafka.max_offsets_per_trigger", "10000")
    at_least(cfg.max_message_bytes, 1, "score.kafka.max_message_bytes", "16777216")
    for key in cfg.options:
        if key.lower() in _KAFKA_REFUSED_OPTIONS:
            raise ConfigError(f"score.kafka.options.{key} cannot be set: {_KAFKA_REFUSED_OPTIONS[key.lower()]}")
        if key.lower() in _KAFKA_OWN_OPTIONS:
            raise ConfigError(f"score.kafka.options.{key} is set by lakeloop from score.kafka.*; remove it and use "
                              f"the score.kafka setting instead")
        if not key.startswith("kafka."):
            raise ConfigError(f"score.kafka.options.{key}: only Kafka consumer settings (kafka.*, e.g. "
                              f"kafka.security.protocol) can be passed here")


def _check_score_stream(cfg: ScoreStreamConfig) -> None:
    check_trigger(cfg.trigger, "score.stream.trigger")
    at_least(cfg.max_files_per_trigger, 1, "score.stream.max_files_per_trigger", "100")
    if cfg.checkpoint is not None:
        require_uri(cfg.checkpoint, "score.stream.checkpoint")

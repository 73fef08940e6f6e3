"""Frames from Kafka for ``score --stream``: Spark's own Kafka source, one message per frame.

A message's key is the frame's id (``image_id`` in ``gold.predictions``), its value the encoded
image, and the header ``score.kafka.label_header`` (if sent) its true label. Every message ends in
``gold.predictions`` or ``quarantine.predictions`` with its topic, partition and offset
(``kafka_topic``, ``kafka_partition``, ``kafka_offset``). A message is refused without being
decoded when it has no key (its quarantine row is keyed ``kafka:<topic>/<partition>/<offset>``),
no value, or a value over ``score.kafka.max_message_bytes``; a value Pillow cannot decode is
refused by the scoring UDF. Exactly once as for a Delta input (:mod:`lakeloop.scoring.stream`):
the offsets of each micro-batch are in the checkpoint before it runs, and its MERGEs carry
Delta's transaction identifier.
"""

from __future__ import annotations

import hashlib
import socket
from typing import TYPE_CHECKING

from lakeloop.config import ScoreKafkaConfig
from lakeloop.errors import SourceError
from lakeloop.scoring.batch import DECODE_FIX

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Where each message came from: kept with its prediction or its quarantine row.
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset")
# Why a message was refused before scoring (null: it is scored).
REFUSED = "refused"


def kafka_uri(cfg: ScoreKafkaConfig) -> str:
    """The input as reports name it: ``kafka://<bootstrap servers>/<topic>``."""
    return f"kafka://{cfg.bootstrap_servers}/{cfg.topic}"


def checkpoint_name(cfg: ScoreKafkaConfig) -> str:
    """A folder name for the stream's checkpoint: the topic, and a hash of the servers (in any
    order) and topic, as two clusters may hold topics of one name. A new list of servers is a new
    checkpoint: a new stream, from ``starting_offsets``."""
    servers = ",".join(sorted(s.strip() for s in cfg.bootstrap_servers.split(",")))
    digest = hashlib.sha256(f"{servers}/{cfg.topic}".encode()).hexdigest()[:8]
    return f"kafka-{cfg.topic.replace(',', '+')}-{digest}"


def check_reachable(cfg: ScoreKafkaConfig, timeout_s: float = 10.0) -> None:
    """Fail fast when no bootstrap server accepts a connection (Spark's source would retry for minutes).

    Raises
    ------
    SourceError
        none of ``score.kafka.bootstrap_servers`` answers.
    """
    failures = []
    for server in cfg.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        except OSError as exc:
            failures.append(f"{server} ({exc.strerror or exc})")
    raise SourceError(f"no Kafka broker of score.kafka.bootstrap_servers answers: {'; '.join(failures)}. Check the "
                      f"addresses and that the brokers run (the test broker: ./dev/services.sh start kafka)")


def read_messages(spark: "SparkSession", cfg: ScoreKafkaConfig) -> "DataFrame":
    """The topic as a streaming DataFrame (key, value, topic, partition, offset, headers ...)."""
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", cfg.bootstrap_servers)
              .option("subscribe", cfg.topic)
              .option("startingOffsets", cfg.starting_offsets)
              .option("maxOffsetsPerTrigger", cfg.max_offsets_per_trigger)
              .option("failOnDataLoss", str(cfg.fail_on_data_loss).lower())
              .option("includeHeaders", "true"))
    for key, value in cfg.options.items():
        reader = reader.option(key, value)
    return reader.load()


def frames_from_messages(messages: "DataFrame", cfg: ScoreKafkaConfig, taken: "DataFrame | None" = None
                         ) -> "DataFrame":
    """One row per message: ``image_id``, ``content`` (null when refused), ``label``, the Kafka
    columns and :data:`REFUSED`, the reason a message is not scored (or null).

    A message whose key is not usable (none, not UTF-8, or starting with ``kafka:``), and one that
    repeats a key, are refused and keyed by their position, ``kafka:<topic>/<partition>/<offset>``:
    a key is taken when ``taken`` (image_id and the Kafka columns of the rows already written for
    the model version) holds it from another message, and of the messages of this micro-batch that
    share a key, the first scorable one by (partition, offset) takes it. A replayed micro-batch's
    own messages are not repeats: ``taken`` holds them with their own positions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.col("key").cast("string")
    size = F.length("value")
    where = _position_text()
    bad_key = (
        F.when(F.col("key").isNull() | (F.length("key") == 0), "message without a key (")
        .when(~F.is_valid_utf8(F.col("key")), "message key is not UTF-8 text (")
        .when(key.startswith(_POSITIONAL), "message key starts with 'kafka:', which lakeloop keeps for the ids of "
                                           "messages without a usable key (")
    )
    refused = (
        F.when(bad_key.isNotNull(), F.concat(bad_key, where, F.lit("): the key is the frame's id in gold.predictions; "
                                                                  "have the producer send one per frame")))
        .when(F.col("value").isNull() | (size == 0), F.concat(F.lit("message without an image: its value is empty ("),
                                                              where, F.lit("); have the producer send the image")))
        .when(size > F.lit(cfg.max_message_bytes), F.concat(
            F.lit(f"message over score.kafka.max_message_bytes = {cfg.max_message_bytes} ("), size.cast("string"),
            F.lit(" bytes, "), where, F.lit("): send smaller images or raise the setting")))
    )
    frames = messages.select(
        F.when(bad_key.isNotNull(), _positional_id()).otherwise(key).alias("image_id"),
        "value",
        _header(cfg.label_header).alias("label"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        refused.alias(REFUSED),
    )
    if taken is not None:
        frames = _refuse_taken_keys(frames, taken)
    first = Window.partitionBy("image_id").orderBy(F.col(REFUSED).isNotNull(), "kafka_partition", "kafka_offset")
    repeat = F.row_number().over(first) > 1
    frames = frames.withColumn("_repeat", repeat)
    refused = F.when(F.col("_repeat"), F.concat(
        F.lit("message repeats a key ("), F.col("image_id"), F.lit(", "), _position_text("kafka_"),
        F.lit(") of another message of this micro-batch, which was taken: a key must name one frame"),
    )).otherwise(F.col(REFUSED))
    return frames.select(
        F.when(F.col("_repeat"), _positional_id("kafka_")).otherwise(F.col("image_id")).alias("image_id"),
        F.when(refused.isNull(), F.col("value")).alias("content"),
        "label", *KAFKA_COLUMNS, refused.alias(REFUSED),
    )


_POSITIONAL = "kafka:"


def _refuse_taken_keys(frames: "DataFrame", taken: "DataFrame") -> "DataFrame":
    """Frames whose key an earlier message (or another input) already took: refused, keyed by position."""
    from pyspark.sql import functions as F

    earlier = taken.select(F.col("image_id").alias("_taken_id"), *[F.col(c).alias(f"_taken_{c}") for c in KAFKA_COLUMNS]
                           ).dropDuplicates(["_taken_id"])
    joined = frames.join(earlier, frames["image_id"] == earlier["_taken_id"], "left")
    same_message = F.lit(True)
    for c in KAFKA_COLUMNS:
        same_message = same_message & F.col(c).eqNullSafe(F.col(f"_taken_{c}"))
    elsewhere = F.col("_taken_id").isNotNull() & ~same_message
    taken_from = F.when(F.col("_taken_kafka_topic").isNull(), F.lit("another input")).otherwise(F.concat(
        F.lit("topic "), F.col("_taken_kafka_topic"), F.lit(" partition "), F.col("_taken_kafka_partition").cast("string"),
        F.lit(" offset "), F.col("_taken_kafka_offset").cast("string")))
    reason = F.concat(F.lit("message repeats a key ("), F.col("image_id"), F.lit(", "), _position_text("kafka_"),
                      F.lit(") already scored from "), taken_from, F.lit(": a key must name one frame"))
    return joined.select(
        F.when(elsewhere, _positional_id("kafka_")).otherwise(F.col("image_id")).alias("image_id"),
        "value", "label", *KAFKA_COLUMNS,
        F.when(elsewhere, F.coalesce(F.col(REFUSED), reason)).otherwise(F.col(REFUSED)).alias(REFUSED),
    )


def _position_text(prefix: str = "") -> "Column":
    from pyspark.sql import functions as F

    return F.concat(F.lit("topic "), F.col(f"{prefix}topic"), F.lit(" partition "),
                    F.col(f"{prefix}partition").cast("string"), F.lit(" offset "),
                    F.col(f"{prefix}offset").cast("string"))


def _positional_id(prefix: str = "") -> "Column":
    """``kafka:<topic>/<partition>/<offset>``: the id of a message that has no usable key of its own."""
    from pyspark.sql import functions as F

    return F.concat(F.lit(_POSITIONAL), F.col(f"{prefix}topic"), F.lit("/"), F.col(f"{prefix}partition").cast("string"),
                    F.lit("/"), F.col(f"{prefix}offset").cast("string"))


def _header(name: str | None) -> "Column":
    """The UTF-8 value of the first header called ``name`` (null when there is none)."""
    from pyspark.sql import functions as F

    if not name:
        return F.lit(None).cast("string")
    matching = F.filter(F.col("headers"), lambda header: header["key"] == F.lit(name))
    return F.try_element_at(matching, F.lit(1)).getField("value").cast("string")


def message_error(error: "Column") -> "Column":
    """The error a quarantined message gets: why it was refused, or why it could not be decoded
    (said as a message's fix, not a file's)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.col(REFUSED), F.regexp_replace(error, DECODE_FIX, "fix what produced the message"))

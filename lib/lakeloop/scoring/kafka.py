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
    """A folder name for the stream's checkpoint: the topic, and a hash of the servers and topic
    (two clusters may hold topics of one name)."""
    digest = hashlib.sha256(kafka_uri(cfg).encode()).hexdigest()[:8]
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


def frames_from_messages(messages: "DataFrame", cfg: ScoreKafkaConfig) -> "DataFrame":
    """One row per message: ``image_id``, ``content`` (null when refused), ``label``, the Kafka
    columns and :data:`REFUSED`, the reason a message is not scored (or null)."""
    from pyspark.sql import functions as F

    key = F.col("key").cast("string")
    size = F.length("value")
    where = F.concat(F.lit("topic "), F.col("topic"), F.lit(" partition "), F.col("partition").cast("string"),
                     F.lit(" offset "), F.col("offset").cast("string"))
    no_key = key.isNull() | (key == F.lit(""))
    refused = (
        F.when(no_key, F.concat(F.lit("message without a key ("), where, F.lit("): the key is the frame's id in "
                                                                           "gold.predictions; have the producer send one")))
        .when(F.col("value").isNull(), F.concat(F.lit("message without a value ("), where,
                                                F.lit("): nothing to score; have the producer send the image")))
        .when(size > F.lit(cfg.max_message_bytes), F.concat(
            F.lit("message of "), size.cast("string"), F.lit(f" bytes is over score.kafka.max_message_bytes = "
                                                            f"{cfg.max_message_bytes} ("), where,
            F.lit("): send smaller images or raise the setting")))
    )
    image_id = F.when(no_key, F.concat(F.lit("kafka:"), F.col("topic"), F.lit("/"),
                                       F.col("partition").cast("string"), F.lit("/"),
                                       F.col("offset").cast("string"))).otherwise(key)
    return messages.select(
        image_id.alias("image_id"),
        F.when(refused.isNull(), F.col("value")).alias("content"),
        _header(cfg.label_header).alias("label"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        refused.alias(REFUSED),
    )


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

"""How a table row becomes a model input, and a target a training target: the contract between
table features, training and scoring (the table counterpart of :mod:`lakeloop.preprocess`).

An **encoding** is fitted on the train split only and stored in the model's metadata, so
scoring prepares rows exactly as training did:

* a numeric column: a missing value is filled (``features.table.fill``: the train mean, or 0),
  then standardised with the train mean and standard deviation; with
  ``missing_indicators`` a 0/1 input "this value was missing" follows it;
* a categorical column: one-hot over its most frequent train values (at most
  ``max_categories``) plus one "unknown" input for any other value, a missing one included.

The input vector is those blocks in the order the columns are configured; its layout is
:func:`input_layout` (also the model spec's ``table_features``). :func:`encode_inputs` works on a
pandas DataFrame of raw columns: no Spark, so the scoring UDF and a notebook use the same code.

A **target** per task: ``classification`` a class index into a stable class list;
``multilabel`` a 0/1 vector over a stable label list; ``regression`` the value standardised
with the train mean and standard deviation (training works in those units, predictions are
turned back with :func:`regression_values`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lakeloop.errors import ConfigError
from lakeloop.layout import LakeLayout

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pyspark.sql import DataFrame

    from lakeloop.config import Profile, TableFeaturesConfig, TableInputsConfig

# silver.<table>_features' table property holding what it was built with (key, columns, task, classes).
TABLE_PROPERTY = "lakeloop.table_features"
# The target column of silver.<table>_features, per task.
TARGET_COLUMNS = {"classification": "label", "multilabel": "labels", "regression": "target"}


def table_features_uri(profile: "Profile") -> str:
    """Where ``features.table``'s features live: ``silver.<source name>_features``."""
    return LakeLayout(profile.lake_root).table_features(LakeLayout.source_name(profile.features.table.source))


def fit_encoding(train: "DataFrame", cfg: "TableFeaturesConfig | TableInputsConfig") -> dict[str, Any]:
    """The encoding of ``cfg``'s input columns (``features.table``, or an image model's
    ``features.table_inputs``), from the rows of the train split (one aggregation for every
    numeric column, one count per categorical value)."""
    from pyspark.sql import functions as F

    numeric: list[dict[str, Any]] = []
    if cfg.numeric:
        aggregates = []
        for c in cfg.numeric:
            value = F.col(c).cast("double")
            aggregates += [F.avg(value).alias(f"{c}__mean"), F.stddev_pop(value).alias(f"{c}__std"),
                           F.count(value).alias(f"{c}__count")]
        row = train.agg(*aggregates).first().asDict()
        for c in cfg.numeric:
            mean = row[f"{c}__mean"] if row[f"{c}__mean"] is not None else 0.0
            std = row[f"{c}__std"] or 1.0  # a constant (or empty) column: standardising must not divide by 0
            numeric.append({"name": c, "mean": float(mean), "std": float(std),
                            "fill": float(mean) if cfg.fill == "mean" else 0.0,
                            "train_rows_present": int(row[f"{c}__count"])})
    categorical = []
    for c in cfg.categorical:
        counts = train.where(F.col(c).isNotNull()).groupBy(F.col(c).cast("string").alias("v")).count() \
            .orderBy(F.desc("count"), "v").limit(cfg.max_categories).collect()
        categorical.append({"name": c, "vocabulary": sorted(r["v"] for r in counts)})
    return {"numeric": numeric, "categorical": categorical, "missing_indicators": cfg.missing_indicators}


def input_layout(encoding: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The blocks of the input vector, in order: ``{"name", "kind", "width"}`` each."""
    layout = []
    for column in encoding["numeric"]:
        layout.append({"name": column["name"], "kind": "numeric", "width": 1})
        if encoding["missing_indicators"]:
            layout.append({"name": f"{column['name']}__missing", "kind": "missing_indicator", "width": 1})
    for column in encoding["categorical"]:
        layout.append({"name": column["name"], "kind": "categorical", "width": len(column["vocabulary"]) + 1,
                       "values": [*column["vocabulary"], "<unknown>"]})
    return layout


def input_width(encoding: Mapping[str, Any]) -> int:
    return sum(block["width"] for block in input_layout(encoding))


def encoded_columns(encoding: Mapping[str, Any]) -> list[str]:
    """The raw columns :func:`encode_inputs` reads."""
    return [c["name"] for c in encoding["numeric"]] + [c["name"] for c in encoding["categorical"]]


def encode_inputs(frame: "pd.DataFrame", encoding: Mapping[str, Any]) -> "np.ndarray":
    """Raw rows (a pandas DataFrame with the encoded columns) -> float32 ``rows x width`` inputs.

    A value that is not a number in a numeric column counts as missing. Raises ``KeyError``
    naming a column the frame lacks.
    """
    import numpy as np
    import pandas as pd

    n = len(frame)
    blocks = []
    for column in encoding["numeric"]:
        values = pd.to_numeric(frame[column["name"]], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        filled = np.where(missing, column["fill"], values)
        blocks.append(((filled - column["mean"]) / column["std"])[:, None])
        if encoding["missing_indicators"]:
            blocks.append(missing.astype(np.float64)[:, None])
    for column in encoding["categorical"]:
        vocabulary = column["vocabulary"]
        index = {v: i for i, v in enumerate(vocabulary)}
        raw = frame[column["name"]]
        positions = np.array([index.get(str(v), len(vocabulary)) if not _missing(v) else len(vocabulary)
                              for v in raw], dtype=np.int64)
        one_hot = np.zeros((n, len(vocabulary) + 1))
        one_hot[np.arange(n), positions] = 1.0
        blocks.append(one_hot)
    return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


# --------------------------------------------------------------------------- targets


def labels_column(column: "Any", data_type: Any, delimiter: str):
    """A multilabel target as ``array<string>``: a list column as is, a text one split on ``delimiter``;
    names trimmed, empty ones dropped, each label once."""
    import re

    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    parts = column.cast("array<string>") if isinstance(data_type, ArrayType) else \
        F.split(column.cast("string"), re.escape(delimiter))
    return F.when(column.isNull(), F.lit(None)).otherwise(
        F.array_distinct(F.filter(F.transform(parts, lambda x: F.trim(x)), lambda x: (x.isNotNull()) & (x != ""))))


NUMERIC_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal")


def task_target(frame: "DataFrame", name: str, task: str, delimiter: str, setting: str, text_numbers: bool = False):
    """Column ``name`` of ``frame`` as ``task``'s target (:data:`TARGET_COLUMNS`): a double for
    regression, ``array<string>`` for multilabel, text for classification; raises a ConfigError
    naming ``setting`` when the column's type cannot serve the task. With ``text_numbers`` a text
    column may hold a regression target (an image label such as ``"3.25"``; other text: no target)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, StringType

    data_type = frame.schema[name].dataType
    column = F.col(name)
    if task == "regression":
        text = text_numbers and isinstance(data_type, StringType)
        if not data_type.simpleString().startswith(NUMERIC_TYPES) and not text:
            raise ConfigError(f"train.task = regression but {setting} {name!r} is {data_type.simpleString()}; "
                              f"give it a numeric type in the ingest schema (ingest_tables.tables.<t>.schema) "
                              f"or pick a numeric column")
        value = F.expr(f"try_cast(`{name}` AS double)") if text else column.cast("double")
        # NaN or infinite is no target: it would turn the train mean and every loss into NaN.
        return F.when(F.isnan(value) | F.abs(value).eqNullSafe(float("inf")), F.lit(None).cast("double")) \
            .otherwise(value)
    if task == "multilabel":
        if not isinstance(data_type, (StringType, ArrayType)):
            raise ConfigError(f"train.task = multilabel but {setting} {name!r} is {data_type.simpleString()}; "
                              f"it must be text ('a,b') or an array of text")
        return labels_column(column, data_type, delimiter)
    return column.cast("string")


def target_stats(train: "DataFrame") -> dict[str, float]:
    """Mean and standard deviation of a regression target over the train split."""
    from pyspark.sql import functions as F

    row = train.agg(F.avg("target").alias("mean"), F.stddev_pop("target").alias("std")).first()
    return {"mean": float(row["mean"] or 0.0), "std": float(row["std"] or 1.0) or 1.0}


def regression_values(outputs: "np.ndarray", target: Mapping[str, float]) -> "np.ndarray":
    """Model outputs (standardised units) -> values in the target's own units."""
    return outputs * target["std"] + target["mean"]


def multi_hot(labels: Sequence[Sequence[str] | None], classes: Sequence[str]) -> "np.ndarray":
    """0/1 float32 ``rows x classes``; a label outside ``classes`` is left out."""
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, names in enumerate(labels):
        for name in names if names is not None else ():
            if name in index:
                out[row, index[name]] = 1.0
    return out


def table_properties(cfg: "TableFeaturesConfig", task: str, classes: Sequence[str]) -> dict[str, str]:
    """The table property silver.<table>_features carries: what it was built with."""
    return {TABLE_PROPERTY: json.dumps({"source": cfg.source, "key": cfg.key, "target": cfg.target, "task": task,
                                        "numeric": list(cfg.numeric), "categorical": list(cfg.categorical),
                                        "classes": list(classes)})}


def check_columns(columns: Sequence[str], cfg: "TableFeaturesConfig", uri: str) -> None:
    """Raise a ConfigError naming the configured columns that ``uri`` does not have."""
    missing = [c for c in (cfg.key, cfg.target, *cfg.numeric, *cfg.categorical) if c not in columns]
    if missing:
        raise ConfigError(f"features.table names column(s) {missing} that {uri} does not have (it has "
                          f"{', '.join(columns)}); fix features.table.key / target / numeric / categorical")


def encode_training_rows(frame: "pd.DataFrame", encoding: Mapping[str, Any], task: str, classes: Sequence[str],
                         target: Mapping[str, float] | None) -> "pd.DataFrame":
    """Rows of silver.<table>_features -> training-set rows: ``row_id``, ``inputs`` (float32 bytes) and
    ``label_index`` (classification) or ``target`` (float32 bytes: the standardised value, or 0/1 per label)."""
    import numpy as np
    import pandas as pd

    x = encode_inputs(frame, encoding)
    out = pd.DataFrame({"row_id": frame["row_id"].astype(str).to_numpy(), "inputs": [r.tobytes() for r in x]})
    if task == "classification":
        index = {c: i for i, c in enumerate(classes)}
        out["label_index"] = np.array([index[v] for v in frame["label"]], dtype=np.int32)
    else:
        out["target"] = encode_targets(frame, task, classes, target)
    return out


def encode_targets(frame: "pd.DataFrame", task: str, classes: Sequence[str],
                   target: Mapping[str, float] | None) -> list[bytes]:
    """A multilabel or regression target per row as float32 bytes: 0/1 per label of ``classes`` (from
    ``labels``), or the ``target`` value standardised with the train split's ``target`` mean and std."""
    import numpy as np

    if task == "regression":
        values = ((frame["target"].to_numpy(dtype=np.float64) - target["mean"]) / target["std"]).astype(np.float32)
        return [v.tobytes() for v in values[:, None]]
    return [r.tobytes() for r in multi_hot(list(frame["labels"]), classes)]


def with_encoded_inputs(frame: "pd.DataFrame", encoding: Mapping[str, Any]) -> "pd.DataFrame":
    """``frame`` with its encoded columns replaced by ``inputs``: each row's float32 vector as bytes
    (an image training set's rows when the model also reads table columns)."""
    x = encode_inputs(frame, encoding)
    out = frame.drop(columns=encoded_columns(encoding))
    out["inputs"] = [row.tobytes() for row in x]
    return out

"""The features step: bronze images (+ a joined table) -> Delta ``silver.features``, or a bronze
table -> ``silver.<table>_features`` when ``features.table`` is set.

See :mod:`lakeloop.features.silver` and :mod:`lakeloop.features.tables`; the preprocessing
they rely on is :mod:`lakeloop.preprocess` and :mod:`lakeloop.tabular`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeloop.features.silver import build_features as build_image_features
from lakeloop.features.tables import build_table_features

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakeloop.config import Profile
    from lakeloop.report import RunReport


def build_features(spark: "SparkSession", profile: "Profile", report: "RunReport | None" = None) -> "RunReport":
    """``silver.features`` from bronze.images, or ``silver.<table>_features`` with ``features.table``."""
    if profile.features.table is not None:
        return build_table_features(spark, profile, report)
    return build_image_features(spark, profile, report)


__all__ = ["build_features", "build_image_features", "build_table_features"]

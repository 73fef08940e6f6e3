"""The features step: bronze images (+ a joined table) -> Delta ``silver.features``.

See :mod:`lakeloop.features.silver`; the preprocessing it applies is :mod:`lakeloop.preprocess`.
"""

from lakeloop.features.silver import build_features

__all__ = ["build_features"]

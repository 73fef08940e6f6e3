"""lakeloop: lake -> Delta features -> Petastorm -> distributed PyTorch -> scoring -> lake.

The handful of names a notebook needs::

    from lakeloop import LakeLayout, Registry, build_session, load_model, load_profile, score

    profile = load_profile("local", ["ingest_images.max_pixels=50000000"])
    spark = build_session(profile)
    lake = LakeLayout(profile.lake_root)
    registry = Registry.for_profile(profile)
    predicted = score(spark.read.format("delta").load(lake.features), "digits_lenet", registry=registry)

Figures and image grids for notebooks are in :mod:`lakeloop.ops.explore` (``from lakeloop.ops import
explore``), beside the other operator tools (:mod:`lakeloop.ops`). Everything else is reachable in its subpackage (see docs/architecture.md#modules); these
are imported on first use, so ``import lakeloop`` stays light on executors.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "load_profile": "lakeloop.config",
    "Profile": "lakeloop.config",
    "build_session": "lakeloop.runtime.session",
    "LakeLayout": "lakeloop.layout",
    "Registry": "lakeloop.registry",
    "ModelVersion": "lakeloop.registry",
    "load_model": "lakeloop.models",
    "ModelSpec": "lakeloop.models",
    "score": "lakeloop.scoring.udf",
    "score_batch": "lakeloop.scoring.batch",
    "show_lake": "lakeloop.ops.summary",
    "RunReport": "lakeloop.report",
    "evaluate_model": "lakeloop.evaluation",
    "render_page": "lakeloop.ops.pages",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""``lakeloop train-rank --plan plan.json [--out result.pt]``: one training process without Spark.

What runs on a GPU box, given a plan file (``jobs/train.py --plan-only``): :func:`lakeloop.training.rank.train_rank`
under ``torchrun`` (or alone); rank 0 prints the summary and writes the result to ``--out``. Imports no pyspark.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from lakeloop.training.rank import TrainPlan, train_rank

    parser = argparse.ArgumentParser(prog="lakeloop train-rank", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="TrainPlan JSON (written by jobs/train.py --plan-only)")
    parser.add_argument("--out", help="where to write rank 0's result (torch.save)")
    args = parser.parse_args(argv)
    with open(args.plan, encoding="utf-8") as handle:
        plan = TrainPlan.from_json(handle.read())
    result = train_rank(plan)
    # Rank 0 writes (a local_mode plan hands its result to every rank); torchrun sets RANK.
    if result is not None and os.environ.get("RANK", "0") == "0":
        summary = {k: v for k, v in result.items() if k != "shard_audit"}
        print(json.dumps(summary, indent=2))
        if args.out:
            import torch

            torch.save(result, args.out)
    return 0

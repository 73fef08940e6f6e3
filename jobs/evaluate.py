"""Evaluate a model version's predictions against the labels into Delta gold.model_evaluations.

    ./spark-submit.sh [--profile P] evaluate [--model NAME[:V|@ALIAS]] [--split test] [--group-by COLUMN]

Per split: accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix, top-k,
calibration; per group of --group-by (quality.group_column): accuracy and the largest gap.
"""

import sys

from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("evaluate", __doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference NAME, NAME:VERSION or NAME@ALIAS (evaluate.model; "
                                        "default score.model)")
    parser.add_argument("--split", choices=["train", "validation", "test"], help="the headline split (evaluate.split)")
    parser.add_argument("--group-by", help="a column of silver.features to compare groups by (quality.group_column)")

    def overrides(args):
        pairs = [("evaluate.model", args.model), ("evaluate.split", args.split),
                 ("quality.group_column", args.group_by)]
        return [(k, v) for k, v in pairs if v is not None]

    def run(spark, profile, report, args):
        from lakeloop.evaluation import evaluate_model

        evaluate_model(spark, profile, report=report)

    return run_job("evaluate", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

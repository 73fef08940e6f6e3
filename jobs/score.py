"""Score lake images with a registered model into Delta gold.predictions (+ quarantine.predictions).

    ./spark-submit.sh [--profile P] score [--model NAME[:V|@ALIAS]] [--input features|images|URI]
                                          [--batch-size N]
"""

import sys

from lakeloop.runtime.runner import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("score", __doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference NAME, NAME:VERSION or NAME@ALIAS (score.model)")
    parser.add_argument("--input", help="features, images, a lake table (layer.name) or a Delta URI (score.input)")
    parser.add_argument("--batch-size", type=int, help="rows per Arrow batch and forward pass (score.batch_size)")

    def overrides(args):
        pairs = [("score.model", args.model), ("score.input", args.input), ("score.batch_size", args.batch_size)]
        return [(k, v) for k, v in pairs if v is not None]

    def run(spark, profile, report, args):
        from lakeloop.scoring.job import score_table

        score_table(spark, profile, report=report)

    return run_job("score", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

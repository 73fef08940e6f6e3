"""Score lake images with a registered model into Delta gold.predictions (+ quarantine.predictions).

    ./spark-submit.sh [--profile P] score [--model NAME[:V|@ALIAS]] [--input features|images|URI]
                                          [--batch-size N] [--stream [--trigger available_now|"30 seconds"]]

--stream scores the input as a Structured Streaming query (lakeloop.scoring.stream): each new row
once, exactly once across kills and restarts, its checkpoint in the lake.
"""

import sys

from lakeloop.cli.jobs import base_parser, run_job


def make_parser():
    """The job's arguments (also what a scheduler's task parameters must parse as)."""
    parser = base_parser("score", __doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference NAME, NAME:VERSION or NAME@ALIAS (score.model)")
    parser.add_argument("--input", help="features, images, kafka (with --stream), a lake table (layer.name) or a "
                                        "Delta URI (score.input)")
    parser.add_argument("--batch-size", type=int, help="rows per Arrow batch and forward pass (score.batch_size)")
    parser.add_argument("--stream", action="store_true",
                        help="score as a Structured Streaming query over the input Delta table, from its checkpoint")
    parser.add_argument("--trigger", help="with --stream: available_now (what is new, then stop) or an interval such "
                                          "as '30 seconds' (score.stream.trigger)")
    return parser


def main(argv=None) -> int:
    parser = make_parser()

    def overrides(args):
        if args.trigger and not args.stream:
            parser.error("--trigger needs --stream (the batch score job has no trigger)")
        pairs = [("score.model", args.model), ("score.input", args.input), ("score.batch_size", args.batch_size),
                 ("score.stream.trigger", args.trigger)]
        return [(k, v) for k, v in pairs if v is not None]

    def run(spark, profile, report, args):
        if args.stream:
            from lakeloop.scoring.stream import score_stream

            score_stream(spark, profile, report=report)
        else:
            from lakeloop.scoring import score_table

            score_table(spark, profile, report=report)

    return run_job("score", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

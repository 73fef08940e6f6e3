"""Train a model on silver.features with TorchDistributor and publish it to the lake's registry.

    ./spark-submit.sh [--profile P] [--py-files my_models.py] train [--model-name N] [--model REF]
        [--init-from NAME:VERSION|NAME@alias|URI] [--epochs E] [--num-processes K] [--use-gpu] [--plan-only FILE]
"""

import sys

from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("train", __doc__.splitlines()[0])
    parser.add_argument("--model-name", help="registry name (train.model_name)")
    parser.add_argument("--model", help="train.model: lenet5, small_resnet, resnet18 or a factory package.module:name")
    parser.add_argument("--init-from", help="train.init_from: start from NAME:VERSION, NAME@alias or a weights file URI")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--num-processes", type=int, help="train.num_processes")
    parser.add_argument("--use-gpu", action="store_true", default=None, help="train.use_gpu = true")
    parser.add_argument("--plan-only", metavar="FILE",
                        help="materialize the training set and write the per-process TrainPlan JSON to FILE "
                             "instead of training (run it with lakeloop train-rank --plan FILE)")

    def overrides(args):
        pairs = [("train.model_name", args.model_name), ("train.model", args.model),
                 ("train.init_from", args.init_from),
                 ("train.epochs", args.epochs), ("train.num_processes", args.num_processes),
                 ("train.use_gpu", args.use_gpu)]
        return [(k, v) for k, v in pairs if v is not None]

    def run(spark, profile, report, args):
        from lakeloop.training import driver

        if args.plan_only:
            driver.write_plan(spark, profile, args.plan_only, report=report)
            return
        driver.train(spark, profile, report=report)

    return run_job("train", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

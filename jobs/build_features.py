"""Build Delta silver.features from bronze.images (+ a joined table).

    ./spark-submit.sh [--profile P] build_features [--set features.preprocess.height=28 ...]
"""

import sys

from lakeloop.features import build_features
from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("build_features", __doc__.splitlines()[0])

    def run(spark, profile, report, args):
        build_features(spark, profile, report=report)

    return run_job("build_features", parser, run, argv=argv)


if __name__ == "__main__":
    sys.exit(main())

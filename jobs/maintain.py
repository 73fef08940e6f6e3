"""Lake housekeeping: OPTIMIZE and VACUUM every Delta table, drop old training sets, stale checkpoints
and the registry folders of crashed publishes.

    ./spark-submit.sh [--profile P] maintain [--retention-hours H] [--no-optimize]

A retention under Delta's 7 days (168 hours) also needs --set maintain.allow_short_retention=true,
and no other job running meanwhile.
"""

import sys

from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("maintain", __doc__.splitlines()[0])
    parser.add_argument("--retention-hours", type=float, help="maintain.vacuum_retention_hours (default 168)")
    parser.add_argument("--no-optimize", action="store_false", dest="optimize", default=None,
                        help="maintain.optimize = false: VACUUM only")

    def overrides(args):
        pairs = [("maintain.vacuum_retention_hours", args.retention_hours), ("maintain.optimize", args.optimize)]
        return [(k, v) for k, v in pairs if v is not None]

    def run(spark, profile, report, args):
        from lakeloop.ops.maintenance import maintain_lake

        maintain_lake(spark, profile, report=report)

    return run_job("maintain", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

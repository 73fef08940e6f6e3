"""Ingest CSV / JSON lines / Parquet tables into Delta bronze.<table> (+ quarantine.<table>).

    ./spark-submit.sh [--profile P] ingest_tables [--table NAME ...] [--set k=v ...]

Without --table every table under ingest_tables.tables of the profile is ingested.
"""

import sys

from lakeloop.ingest.tables import ingest_tables
from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("ingest_tables", __doc__.splitlines()[0])
    parser.add_argument(
        "--table", dest="tables", action="append", default=[], metavar="NAME",
        help="a table of ingest_tables.tables to ingest (repeatable; default: all of them)",
    )

    def run(spark, profile, report, args):
        ingest_tables(spark, profile, args.tables or None, report=report)

    return run_job("ingest_tables", parser, run, argv=argv)


if __name__ == "__main__":
    sys.exit(main())

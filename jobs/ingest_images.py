"""Ingest a folder tree of images into Delta bronze.images (+ quarantine.images).

    ./spark-submit.sh [--profile P] ingest_images [--source URI] [--max-pixels N] [--set k=v ...]
"""

import sys

from lakeloop.ingest.images import ingest_images
from lakeloop.runtime.runner import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("ingest_images", __doc__.splitlines()[0])
    parser.add_argument("--source", help="folder URI to read (overrides ingest_images.source)")
    parser.add_argument("--max-pixels", type=int, help="decompression-bomb limit (ingest_images.max_pixels)")
    parser.add_argument("--label-from", choices=["parent_folder", "labels_table", "none"],
                        help="where labels come from (ingest_images.label_from)")

    def overrides(args):
        out = []
        if args.source:
            out.append(("ingest_images.source", args.source))
        if args.max_pixels is not None:
            out.append(("ingest_images.max_pixels", args.max_pixels))
        if args.label_from:
            out.append(("ingest_images.label_from", args.label_from))
        return out

    def run(spark, profile, report, args):
        ingest_images(spark, profile, report=report)

    return run_job("ingest_images", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

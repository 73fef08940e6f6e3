"""Ingest a folder tree of images into Delta bronze.images (+ quarantine.images).

    ./spark-submit.sh [--profile P] ingest_images [--source URI] [--max-pixels N] [--set k=v ...]
                                                  [--stream [--trigger available_now|"1 minute"]]

--stream takes the files that arrived since the last run as a Structured Streaming query
(lakeloop.ingest.stream), its checkpoint in the lake.
"""

import sys

from lakeloop.ingest.images import ingest_images
from lakeloop.cli.jobs import base_parser, run_job


def main(argv=None) -> int:
    parser = base_parser("ingest_images", __doc__.splitlines()[0])
    parser.add_argument("--source", help="folder URI to read (overrides ingest_images.source)")
    parser.add_argument("--max-pixels", type=int, help="decompression-bomb limit (ingest_images.max_pixels)")
    parser.add_argument("--label-from", choices=["parent_folder", "labels_table", "none"],
                        help="where labels come from (ingest_images.label_from)")
    parser.add_argument("--stream", action="store_true",
                        help="take the new files as a Structured Streaming query over the folder, from its checkpoint")
    parser.add_argument("--trigger", help="with --stream: available_now (what is new, then stop) or an interval such "
                                          "as '1 minute' (ingest_images.stream.trigger)")

    def overrides(args):
        if args.trigger and not args.stream:
            parser.error("--trigger needs --stream (the batch ingest_images job has no trigger)")
        out = [("ingest_images.stream.trigger", args.trigger)] if args.trigger else []
        if args.source:
            out.append(("ingest_images.source", args.source))
        if args.max_pixels is not None:
            out.append(("ingest_images.max_pixels", args.max_pixels))
        if args.label_from:
            out.append(("ingest_images.label_from", args.label_from))
        return out

    def run(spark, profile, report, args):
        if args.stream:
            from lakeloop.ingest.stream import ingest_images_stream

            ingest_images_stream(spark, profile, report=report)
        else:
            ingest_images(spark, profile, report=report)

    return run_job("ingest_images", parser, run, overrides, argv)


if __name__ == "__main__":
    sys.exit(main())

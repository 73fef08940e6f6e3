"""``lakeloop report [JOB|RUN_ID] [--profile P] [--out FILE] [--open]``: a run's HTML page, drawn again
from its JSON report by :mod:`lakeloop.ops.pages`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lakeloop.cli.common import add_profile_arguments, load_profile_from


def main(argv: Sequence[str] | None = None) -> int:
    """Draw a run's page from its JSON report, print where it is, optionally open it."""
    import webbrowser

    from lakeloop.errors import LakeloopError
    from lakeloop.io.lakefs import LakeFiles
    from lakeloop.layout import LakeLayout
    from lakeloop.ops.pages import JOBS, find_report, render_page

    parser = argparse.ArgumentParser(prog="lakeloop report", description="Draw the HTML page of a job run.")
    parser.add_argument("run", nargs="?", metavar="JOB|RUN_ID",
                        help=f"a job ({', '.join(JOBS)}: its latest run) or a run id; default: the newest run")
    add_profile_arguments(parser)
    parser.add_argument("--out", metavar="FILE", help="where to write the page (default: next to the report in a "
                        "local lake, else ./<run_id>.html)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    args = parser.parse_args(argv)
    try:
        profile = load_profile_from(args)
        files, lake = LakeFiles(profile.hadoop_conf()), LakeLayout(profile.lake_root)
        report = find_report(files, lake, args.run, JOBS)
    except LakeloopError as exc:
        print(f"lakeloop report: {exc}", file=sys.stderr)
        return 2
    page = render_page(report)
    if args.out:
        target = Path(args.out).resolve()
    elif lake.root.startswith("file:"):
        target = Path(lake.reports(report["job"])[len("file:"):]) / f"{report['run_id']}.html"
    else:
        target = Path.cwd() / f"{report['run_id']}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    print(f"{report['job']} {report.get('status')} (run {report['run_id']}): {target}")
    if args.open:
        webbrowser.open(target.as_uri())
    return 0

"""Run pages: one self-contained HTML page per job run, rendered from its JSON report.

    lakeloop report [JOB | RUN_ID] [--profile P] [--out FILE] [--open]      (lakeloop.cli.report)

Every job writes ``_reports/<job>/<run_id>.html`` (and ``latest.html``) next to its JSON
report (``observe.html_reports``, on by default) and prints where. The page holds what the
report holds, as a person reads it: status and error, counts, seconds per step,
throughput, metrics, warnings and quality violations, and whatever the job measured —
quarantine reasons with thumbnails of the refused files, the class balance per split and
per group, training curves, the confusion matrix, per-class figures, calibration and
per-group accuracy, the input drift of a scoring run. Plots are matplotlib figures
(:mod:`lakeloop.figures`) embedded as PNG data; the page loads nothing from anywhere
(its Content-Security-Policy forbids it) and every text it shows is escaped.

A page is drawn from the report alone, so ``lakeloop report`` redraws any past run.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from lakeloop import figures
from lakeloop.errors import SourceError
from lakeloop.io import hadoop
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import LakeLayout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.succeeded{color:#176f2c} .failed{color:#b00020} .warn{background:#fff6d6;padding:.4rem .6rem;margin:.3rem 0}
figure{margin:1rem 0} figcaption{font-size:.85rem;color:#555}
.tiles{display:flex;flex-wrap:wrap;gap:.6rem} .tile{width:150px;font-size:.75rem;word-break:break-all}
.tile img{width:96px;height:96px;object-fit:contain;background:#eee;display:block}
.noimg{width:96px;height:96px;background:#eee;color:#777;display:flex;align-items:center;justify-content:center}
code{font-size:.85rem}
"""
# The jobs of jobs/*.py, whose reports live under _reports/<job>/.
JOBS = ("ingest_images", "ingest_tables", "build_features", "train", "score", "evaluate", "maintain")
# No scripts, no fetches: images only from data: URIs, styles only inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _e(value)


def _table(rows: Mapping[str, Any] | Sequence[Sequence[Any]], header: Sequence[str] = ()) -> str:
    items = rows.items() if isinstance(rows, Mapping) else rows
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(
        f"<td class='n'>{_number(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
        else f"<td>{_e('' if v is None else v)}</td>" for v in row) + "</tr>" for row in items)
    return f"<table>{head}{body}</table>"


def _img(data: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"


def _figure(fig: Any, caption: str) -> str:
    """A matplotlib figure as an embedded PNG (``data-figure`` names it for readers and tests)."""
    return (f"<figure data-figure='{_e(caption)}'>{_img(figures.png(fig), caption)}"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>" if body else ""


# --------------------------------------------------------------------------- sections by what a report holds


def _overview(report: Mapping[str, Any]) -> str:
    facts = [("status", report.get("status")), ("run", report.get("run_id")),
             ("started", report.get("started_at")), ("finished", report.get("finished_at"))]
    body = _table(facts)
    if report.get("error"):
        body += f"<p class='warn failed'>{_e(report['error'])}</p>"
    for warning in report.get("warnings") or []:
        body += f"<p class='warn'>{_e(warning)}</p>"
    return body


def _numbers(report: Mapping[str, Any]) -> str:
    body = ""
    for title, key in (("counts", "counts"), ("metrics", "metrics"), ("throughput", "throughput")):
        if report.get(key):
            body += f"<h3>{title}</h3>" + _table(report[key])
    durations = {k: v for k, v in (report.get("durations_s") or {}).items() if k != "total"}
    if durations:
        total = (report.get("durations_s") or {}).get("total")
        caption = "seconds per step" + (f" (total {total:.1f} s)" if isinstance(total, (int, float)) else "")
        body += _figure(figures.bars(durations, caption, "seconds"), caption)
    return body


def _quarantine(details: Mapping[str, Any]) -> str:
    body = ""
    reasons = details.get("quarantine_reasons")
    if reasons:
        body += _figure(figures.bars(dict(sorted(reasons.items())), "quarantined rows per reason", "rows"),
                        "quarantined rows per reason")
    samples = details.get("quarantine_samples") or []
    if samples:
        tiles = []
        for sample in samples:
            thumb = sample.get("thumbnail_png")
            picture = (_img(base64.b64decode(thumb), sample.get("path", "")) if thumb
                       else "<div class='noimg'>no preview</div>")
            tiles.append(f"<div class='tile' data-sample>{picture}<b>{_e(sample.get('reason'))}</b><br>"
                         f"<code>{_e(sample.get('path'))}</code><br>{_e(sample.get('error') or '')}</div>")
        body += f"<h3>refused files (a sample)</h3><div class='tiles'>{''.join(tiles)}</div>"
    return body


def _quality(details: Mapping[str, Any]) -> str:
    quality = details.get("quality")
    if not quality:
        return ""
    body = _table([("rows", quality["rows"]), ("labelled", quality["labelled"]),
                   ("label coverage", quality["label_coverage"])]
                  + [(f"imbalance ratio ({split})", ratio) for split, ratio in quality["imbalance_ratio"].items()])
    if quality.get("class_counts"):
        body += _figure(figures.class_counts(quality["class_counts"], "rows per class and split"),
                        "rows per class and split")
    groups = quality.get("groups")
    if groups and groups.get("class_counts"):
        caption = f"rows per class and {groups['column']}"
        body += _figure(figures.class_counts(groups["class_counts"], caption), caption)
    return body


def _training(details: Mapping[str, Any]) -> str:
    history = details.get("history")
    if not history:
        return ""
    key, name = figures.headline_metric(history)
    return _figure(figures.training_curves(history), f"training loss and validation {name} per epoch") + _table(
        [(h["epoch"], h["train_loss"], h.get(key), h.get("learning_rate"), h.get("images_per_s"))
         for h in history], ("epoch", "train loss", f"validation {name}", "learning rate", "images/s"))


def _evaluation(details: Mapping[str, Any]) -> str:
    figures_ = details.get("evaluation")
    if not figures_:
        return ""
    split, classes = details.get("split", "?"), figures_["classes"]
    body = _table([("split", split), ("rows", figures_["rows"]), ("accuracy", figures_["accuracy"]),
                   ("macro F1", figures_["macro_f1"]),
                   (f"top-{figures_['top_k']['k']} accuracy", figures_["top_k"]["accuracy"]),
                   ("expected calibration error", figures_["calibration"]["expected_calibration_error"])])
    body += _figure(figures.confusion_matrix(figures_["confusion_matrix"], classes, f"confusion matrix ({split})"),
                    f"confusion matrix ({split} split)")
    body += _table([(r["class"], r["precision"], r["recall"], r["f1"], r["support"]) for r in figures_["per_class"]],
                   ("class", "precision", "recall", "F1", "support"))
    body += _figure(figures.reliability(figures_["calibration"]["bins"], f"calibration ({split})"),
                    f"calibration ({split} split)")
    groups = figures_.get("groups")
    if groups and groups["groups"]:
        column = details.get("group_column") or "group"
        body += _figure(figures.group_accuracy(groups["groups"], groups["largest_gap"], column),
                        f"accuracy per {column} ({split} split)")
        body += _table([(g["group"], g["rows"], g["accuracy"]) for g in groups["groups"]],
                       (column, "rows", "accuracy"))
    if details.get("accuracy_by_split"):
        body += "<h3>accuracy by split</h3>" + _table(details["accuracy_by_split"])
    return body


def _scoring(details: Mapping[str, Any]) -> str:
    body = ""
    if details.get("accuracy_this_run") is not None:
        # The run's own rows only; the version's accuracy per split is the evaluation's.
        body += "<h3>accuracy of this run's labelled rows</h3>" + _table(
            [("labelled rows", details.get("labelled_this_run")), ("accuracy", details["accuracy_this_run"])])
    if details.get("model_evaluations"):
        body += (f"<p>The model version's accuracy by split is in {_e(details['model_evaluations'])}: "
                 f"<code>./spark-submit.sh evaluate</code> computes it.</p>")
    drift = details.get("drift")
    if drift:
        caption = f"input drift: {drift['statistic']} (PSI {drift['psi']:.3f})"
        body += _figure(figures.distributions(drift["train_fractions"], drift["this_run_fractions"], caption), caption)
    return body


def _rest(report: Mapping[str, Any]) -> str:
    shown = {"quarantine_reasons", "quarantine_samples", "quality", "history", "evaluation", "drift",
             "accuracy_by_split", "quality_violations"}
    rest = {k: v for k, v in (report.get("details") or {}).items() if k not in shown}
    outputs = report.get("outputs") or {}
    body = _table(outputs, ("output", "location")) if outputs else ""
    if rest:
        body += f"<details><summary>all details</summary><pre>{_e(json.dumps(rest, indent=2, default=str))}</pre>" \
                f"</details>"
    return body


# Each renders from the report's details and shows nothing when they hold nothing for it.
_SECTIONS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("quarantine", _quarantine),
    ("data quality", _quality),
    ("training", _training),
    ("evaluation", _evaluation),
    ("scoring", _scoring),
)


def render_page(report: Mapping[str, Any]) -> str:
    """The self-contained HTML page of one run report (the dict its JSON holds)."""
    details = report.get("details") or {}
    title = f"{report.get('job', 'job')} {report.get('status', '')}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        f"<title>{_e(title)} · {_e(report.get('run_id', ''))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>lakeloop {_e(report.get('job', ''))} <span class='{_e(report.get('status', ''))}'>"
        f"{_e(report.get('status', ''))}</span></h1>",
        _overview(report),
        _section("numbers", _numbers(report)),
    ]
    parts += [_section(name, render(details)) for name, render in _SECTIONS]
    parts += [_section("outputs and details", _rest(report)), "</body></html>"]
    return "".join(parts)


def page_uri(report_dir: str, run_id: str) -> str:
    return f"{report_dir}/{run_id}.html"


def write_page(spark: "SparkSession", report: Mapping[str, Any], report_dir: str) -> str:
    """Write ``<report_dir>/<run_id>.html`` and ``latest.html``; return the run's page URI."""
    text = render_page(report)
    uri = page_uri(report_dir, report["run_id"])
    hadoop.write_text(spark, uri, text)
    hadoop.write_text(spark, f"{report_dir}/latest.html", text)
    return uri


# --------------------------------------------------------------------------- lakeloop report

_RUN_ID = re.compile(r"^(?P<job>[a-z_]+)-\d{8}T\d{6}Z-[0-9a-f]{8}$")


def find_report(files: LakeFiles, lake: LakeLayout, job_or_run: str | None, jobs: Sequence[str]) -> dict[str, Any]:
    """The report of a run id, of a job's latest run, or (None) of the newest run of any job.

    Raises
    ------
    SourceError
        no such run or job report in the lake; the message lists the jobs that have one.
    """
    have = [job for job in jobs if files.exists(lake.latest_report(job))]
    match = _RUN_ID.match(job_or_run or "")
    if match:
        uri = f"{lake.reports(match['job'])}/{job_or_run}.json"
    elif job_or_run:
        uri = lake.latest_report(job_or_run)
    elif have:
        latest = [json.loads(files.read_bytes(lake.latest_report(job))) for job in have]
        return max(latest, key=lambda r: r.get("started_at") or "")
    else:
        uri = None
    if uri is None or not files.exists(uri):
        raise SourceError(f"no run report {uri or 'at all'} in {lake.root}; runs with reports: "
                          f"{', '.join(have) or 'none yet (run a job first)'}")
    return json.loads(files.read_bytes(uri))

"""Write ``docs/settings.md``, the settings reference, from the typed config itself.

Every setting a profile may hold is a field of :class:`lakeloop.config.Profile` or of one of the
section dataclasses it reaches. This module walks them (``typing.get_type_hints`` from ``Profile``
down, so it does not matter which file of ``lakeloop.config`` defines a class) and writes, per
section, each field's dotted name, type (as written in the source), default and explanation. The
explanation is the comment on the field's line or the comment lines right above it, read from the
class's own source file (``inspect.getsourcefile``); :data:`EXPLAIN` supplies one for the fields
whose source has none. ``tests/test_docs.py`` checks that the page in the repository is what this
writes today, so the reference cannot drift from the code.

    PYTHONPATH=lib:dev .venv/bin/python -m lakeloop_dev.settings_doc           # writes docs/settings.md
    PYTHONPATH=lib:dev .venv/bin/python -m lakeloop_dev.settings_doc --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "docs" / "settings.md"

# The guide that explains each top-level section (linked from its heading).
SECTION_GUIDES = {
    "spark": "profiles.md", "jvm": "profiles.md#jvm-packages",
    "ingest_images": "jobs/ingest_images.md", "ingest_tables": "jobs/ingest_tables.md",
    "features": "jobs/build_features.md", "train": "jobs/train.md", "score": "jobs/score.md",
    "evaluate": "jobs/evaluate.md", "promote": "operations.md#champion-and-challenger-lakeloop-registry",
    "maintain": "jobs/maintain.md", "schedule": "jobs/score.md#scheduled-scoring-schedule",
    "quality": "jobs/evaluate.md#data-quality-and-bias-thresholds-quality",
    "observe": "operations.md#run-pages-progress-tensorboard-and-mlflow", "demo": "../README.md",
    "faults": "reliability.md",
}

# Explanations of the fields whose source carries no comment. The comment in the config source wins
# where there is one; a key here that names no setting fails tests/test_docs.py.
EXPLAIN = {
    "name": "the profile's name: its file name without `.yaml` (set by the loader, not written in the file)",
    "lake_root": ("URI of the lake (`file:`, `hdfs:`, `s3a:` or `dbfs:`); every table, model and report "
                  "lives under it"),
    "spark.master": ("Spark master URL (`local[*]`, `yarn`, `spark://host:7077`); null where the platform "
                     "sets it (Databricks)"),
    "spark.app_name": "the Spark application name",
    "spark.log_level": "Spark's log level for the driver",
    "jvm.packages": "Maven coordinates resolved once by `./dev/setup.sh` and handed to Spark as `spark.jars`; "
                    "`{delta}`, `{kafka}`, `{hadoop_aws}` name the installed stack's",
    "jvm.cache_dir": "where the resolved jars (and the JVM class archives) are cached",
    "ingest_images.source": "folder URI of the images (`file:/…`, `hdfs://…`, `s3a://…`)",
    "ingest_images.extensions": ("file endings taken as images, in any case (`.PNG` counts); other files are"
                                 " not inputs"),
    "ingest_images.max_pixels": ("larger images are quarantined as decompression bombs, checked from the "
                                 "header before decoding"),
    "ingest_images.label_from": "where a label comes from: the parent folder's name, `labels_table`, or none",
    "ingest_images.labels_table": "Delta table URI with labels, when `label_from: labels_table`",
    "ingest_images.labels_path_column": "the labels table's column holding the path relative to the source",
    "ingest_images.labels_label_column": "the labels table's column holding the label",
    "ingest_images.quarantine_content_max_bytes": ("larger refused files are quarantined without their bytes"
                                                   " (size and sha256 only)"),
    "ingest_tables.tables": "the tables to ingest, by name: each becomes `bronze.<name>` and `quarantine.<name>`",
    "ingest_tables.tables.<name>.source": "file or folder URI of the table's records",
    "ingest_tables.tables.<name>.format": "`csv`, `json` (JSON lines) or `parquet`",
    "ingest_tables.tables.<name>.keys": "columns that identify a row: the MERGE key",
    "ingest_tables.tables.<name>.schema": "declared schema as DDL, e.g. `\"id INT, name STRING\"`",
    "ingest_tables.tables.<name>.infer_schema": "let Spark infer the schema instead (when no `schema`)",
    "ingest_tables.tables.<name>.options": ("reader options, e.g. "
                                            "`{header: \"true\", sep: \";\", encoding: ISO-8859-1}`"),
    "ingest_tables.tables.<name>.evolve_schema": ("add new source columns to the table; otherwise they are "
                                                  "an error"),
    "ingest_tables.tables.<name>.on_type_error": ("a value that does not fit its declared type: `quarantine`"
                                                  " the row or `fail` the job"),
    "ingest_tables.tables.<name>.raw_max_chars": "how much of a raw record quarantine keeps",
    "features.preprocess.height": "model input height in pixels",
    "features.preprocess.width": "model input width in pixels",
    "features.preprocess.channels": "1 (grey) or 3 (RGB)",
    "features.preprocess.mean": "per channel, subtracted from pixels scaled to [0, 1]",
    "features.preprocess.std": "per channel, divides the pixels after the mean",
    "features.preprocess.encoded_short_side": ("`storage: encoded`: larger images are scaled down to this "
                                               "shorter side (never up)"),
    "features.preprocess.encoded_format": "`storage: encoded`: `JPEG` or `PNG` (lossless)",
    "features.preprocess.encoded_quality": "`storage: encoded`, JPEG: quality 1–100",
    "features.table_inputs.numeric": ("joined columns standardised with the train split's mean and standard "
                                      "deviation"),
    "features.table_inputs.categorical": ("joined columns one-hot encoded over the train split's values, "
                                          "plus \"unknown\""),
    "features.table_inputs.fill": "what a missing numeric value becomes: the train mean (`mean`) or 0 (`zero`)",
    "features.table_inputs.missing_indicators": "add a 0/1 input per numeric column: the value was missing",
    "features.table_inputs.max_categories": ("a categorical column's most frequent training values kept; "
                                             "the rest are \"unknown\""),
    "features.split_seed": "changes which rows land in which split (a hash of the id and this seed)",
    "features.split_fractions": "train, validation, test",
    "features.join_table": "a lake table (`bronze.digits_meta`) or Delta URI to join to the images",
    "features.join_key": "the joined table's column holding the image path relative to the image source",
    "features.join_columns": "the joined table's columns copied into `silver.features`",
    "features.training_set_files": "Parquet files (row groups) per split in the materialized training set",
    "train.model_name": "the registry name the version is published under",
    "train.model_options": "handed to the model factory untouched, as `spec.options`",
    "train.task": "`classification`, `multilabel` (sigmoid per label) or `regression` (squared error)",
    "train.num_processes": ("training processes (barrier tasks; with `local_mode`, processes on the driver's"
                            " machine)"),
    "train.use_gpu": "one GPU per process; needs Spark GPU scheduling on the cluster",
    "train.local_mode": "run the processes on the driver instead of in barrier tasks on executors "
                        "(the `local` profiles set it: about 5 s less a run)",
    "train.epochs": "passes over the training split",
    "train.batch_size": "rows per step, per process",
    "train.optimizer": "`adamw`, or `sgd` (nesterov, with `momentum`)",
    "train.learning_rate": "the optimizer's learning rate at the start of the schedule",
    "train.weight_decay": "the optimizer's weight decay",
    "train.momentum": "`optimizer: sgd`: its momentum",
    "train.lr_schedule": "`cosine`, `step` (÷10 every third of the run) or `constant`",
    "train.augment": "augment training images (`train.augmentation`); scoring never does",
    "train.amp": "mixed precision on GPU",
    "train.torch_threads": "intra-op threads per training process",
    "train.early_stopping_patience": ("stop after this many epochs without a better validation figure "
                                      "(unset: never)"),
    "train.publish_epoch": "publish the `best` epoch (by `early_stopping_metric`) or the `last`",
    "train.class_weights": "`balanced` weights the loss by rows / (classes × rows of the class)",
    "train.alias": "an alias to point at the new version (e.g. `production`)",
    "score.model": "`NAME`, `NAME:VERSION` or `NAME@ALIAS` (`latest` when none)",
    "score.input": "`features`, `images`, a lake table `layer.name`, a Delta URI, or `kafka` (`--stream` only)",
    "score.input_column": "`pixels` or `content`; unset: found from the input",
    "score.batch_size": "rows per Arrow batch and forward pass",
    "score.max_batch_bytes": "Arrow batch byte cap (`spark.sql.execution.arrow.maxBytesPerBatch`) for the run",
    "score.torch_threads_per_task": ("CPU threads per scoring task, so concurrent tasks do not oversubscribe"
                                     " the cores"),
    "schedule.on_failure_emails": ("addresses told when a run fails (Databricks: every job; Airflow: the "
                                   "DAG's task)"),
    "maintain.optimize": "compact the small files each MERGE adds before vacuuming",
    "promote.alias": "the alias `lakeloop registry promote` and `rollback` move",
    "promote.lower_is_better": "true for losses and errors",
    "evaluate.split": "the headline split of the report",
    "evaluate.top_k": "k of top-k accuracy",
    "evaluate.calibration_bins": "reliability bins of the calibration table",
    "quality.group_column": "a column of `silver.features` (a joined table column) to compare groups by",
    "quality.max_class_imbalance": "largest / smallest class on the train split (unset: not checked)",
    "quality.min_label_coverage": "share of feature rows with a label, 0..1 (unset: not checked)",
    "quality.max_group_accuracy_gap": "best minus worst group accuracy on `evaluate.split` (unset: not checked)",
    "quality.max_input_psi": ("population stability index of a scoring run's inputs against the training set"
                              " (unset: not checked)"),
    "quality.on_violation": "a crossed threshold: `warn` in the report, or `fail` the job after writing (exit 1)",
    "observe.html_reports": "write `<run_id>.html` beside each JSON run report",
    "observe.progress_interval_s": "seconds between a running job's progress lines; 0: none",
    "observe.tensorboard": "TensorBoard event files of each training run",
    "observe.mlflow_tracking_uri": ("log training runs to this MLflow tracking store (`sqlite:///…`, "
                                    "`http://…`, `databricks`)"),
    "observe.mlflow_experiment": "the MLflow experiment",
    "demo.raw_root": "URI the demo writer writes its raw zone to",
    "faults.fail_task": "a task to make fail, once (test profiles only)",
    "faults.fail_task.job": "the job whose work fails: `ingest_images`, `build_features` or `score`",
    "faults.fail_task.partition": "the partition whose task fails",
    "faults.fail_task.attempt": "the attempt that fails (0: the first; Spark's retry then succeeds)",
}


@dataclass(frozen=True)
class Setting:
    """One row of the reference."""

    key: str  # dotted, e.g. "train.augmentation.shift"; "<name>" stands for a key of a mapping
    type: str  # as written in the source
    default: str  # rendered for the page
    explanation: str


@dataclass(frozen=True)
class Section:
    """One table of the reference: a dataclass reached from ``Profile`` at ``key``."""

    key: str  # "" for Profile itself
    cls: type
    doc: str
    settings: tuple[Setting, ...]


# --------------------------------------------------------------------------- reading the config


def _dataclasses_in(hint: Any) -> tuple[type | None, bool]:
    """The dataclass a field's type holds, and whether it sits under a mapping (``dict[str, X]``)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint, False
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found, mapped = _dataclasses_in(arg)
            if found:
                return found, mapped
    if origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], True
    return None, False


def _field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation as written, its comment: trailing, else the comment lines above it),
    read from the class's own source (``inspect.getsourcefile``), whichever module defines it."""
    lines, start = inspect.getsourcelines(cls)
    source = textwrap.dedent("".join(lines))
    comments: dict[int, str] = {}  # line (1-based, within source) -> comment text
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    (node,) = ast.parse(source).body
    out: dict[str, tuple[str, str]] = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        annotation = " ".join(ast.get_source_segment(source, stmt.annotation).split())
        trailing = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments]
        above: list[str] = []
        n = stmt.lineno - 1
        while n in comments and n not in code_lines:
            above.insert(0, comments[n])
            n -= 1
        out[stmt.target.id] = (annotation, " ".join(trailing or above))
    return out


def _render(value: Any) -> str:
    """A default as a profile would write it (YAML flow style)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"{value} ({value // (1024 * 1024)} MiB)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "required"
    return "unset" if value is None else f"`{_render(value)}`"


def _clean_doc(doc: str | None) -> str:
    """A class docstring as one paragraph of markdown: reST roles and README pointers dropped (the
    section's heading links its guide)."""
    text = " ".join((doc or "").split())
    text = re.sub(r":(?:mod|class|func|data|meth):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = re.sub(r"[;,.]?\s*[Ss]ee README \"[^\"]*\"(?: and `[^`]*`)?\.?", ".", text)
    text = re.sub(r"[;,]?\s*see `lakeloop\.[a-z_.]+`\.?", ".", text)
    text = re.sub(r"\(\s*\.\s*\)", "", text)
    text = re.sub(r" \.(\s|$)", r".\1", re.sub(r"(?<!\.)\.\.(?!\.)", ".", text))
    return text.strip()


def sections(root: type | None = None) -> list[Section]:
    """Every section reachable from ``Profile`` (or ``root``), depth first, in field order."""
    if root is None:
        from lakeloop.config import Profile
        root = Profile
    found: list[Section] = []

    def walk(cls: type, key: str) -> None:
        hints = typing.get_type_hints(cls)
        written: dict[str, tuple[str, str]] = {}
        for klass in reversed(cls.__mro__):  # a field a subclass redeclares takes the subclass's comment
            if dataclasses.is_dataclass(klass):
                written.update(_field_comments(klass))
        rows: list[Setting] = []
        below: list[tuple[type, str]] = []
        for f in dataclasses.fields(cls):
            dotted = f"{key}.{f.name}" if key else f.name
            sub, mapped = _dataclasses_in(hints[f.name])
            annotation, comment = written.get(f.name, (str(hints[f.name]), ""))
            default = _default(f)
            if sub is not None and default == "(section)":
                below.append((sub, dotted))
                continue  # a section that is always there: its own table says it all
            explanation = comment or EXPLAIN.get(dotted, "")
            if sub is not None:
                target = f"{dotted}.<name>" if mapped else dotted
                explanation = (explanation + "; " if explanation else "") + f"see [`{target}`](#{_anchor(target)})"
                below.append((sub, target))
            rows.append(Setting(dotted, annotation, default, explanation))
        found.append(Section(key, cls, _clean_doc(cls.__doc__), tuple(rows)))
        for sub, dotted in below:
            walk(sub, dotted)

    walk(root, "")
    return found


def settings(root: type | None = None) -> list[Setting]:
    """Every setting of the reference, in page order."""
    return [s for section in sections(root) for s in section.settings]


# --------------------------------------------------------------------------- writing the page


def _anchor(key: str) -> str:
    """GitHub's anchor for a heading `` `key` ``."""
    return re.sub(r"[^a-z0-9_ -]", "", key.lower()).replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(root: type | None = None) -> str:
    """The whole page, as ``docs/settings.md`` holds it."""
    out = [
        "# Settings reference",
        "",
        "<!-- Generated by `PYTHONPATH=lib:dev .venv/bin/python -m lakeloop_dev.settings_doc` from the typed",
        "     config (`lakeloop.config`); do not edit by hand: tests/test_docs.py fails when it differs. -->",
        "",
        "Every setting a profile may hold, with its type, its default (before any profile changes it) and",
        "what it does. A profile is a YAML file in `conf/` ([profiles.md](profiles.md)); any setting can also",
        "be given for one run with `--set dotted.key=value` (the value is YAML). `conf/local.yaml` and the",
        "other profiles change some defaults: read the profile you run. `<name>` stands for a key you choose",
        "(a table's name). Each section's heading links the guide that explains it.",
        "",
        "Sections: " + ", ".join(f"[`{s.key}`](#{_anchor(s.key)})" for s in sections(root) if s.key) + ".",
        "",
    ]
    for section in sections(root):
        top = section.key.split(".")[0]
        title = f"`{section.key}`" if section.key else "Top level (`Profile`)"
        out.append(f"## {title}")
        out.append("")
        guide = SECTION_GUIDES.get(top) if section.key else None
        intro = section.doc + (f" Guide: [{guide.split('#')[0]}]({guide})." if guide else "")
        if intro:
            out += [intro, ""]
        out += ["| setting | type | default | meaning |", "| --- | --- | --- | --- |"]
        for s in section.settings:
            out.append(f"| `{s.key}` | `{_cell(s.type)}` | {_cell(s.default)} | {_cell(s.explanation)} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakeloop_dev.settings_doc", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help="the file to write (default docs/settings.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m lakeloop_dev.settings_doc", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(settings())} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

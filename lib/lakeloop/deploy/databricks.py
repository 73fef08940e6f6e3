"""Databricks job definitions generated from a profile: an Asset Bundle, or Jobs API JSON.

    lakeloop databricks bundle --profile databricks [--set k=v ...] [--conf k=v ...]     (lakeloop.cli.databricks)
                               [--option k=v ...] [--format yaml|json] [--out PATH]

One job per file in ``jobs/`` (``lakeloop_ingest_images`` ...) and one ``lakeloop_pipeline``
job running them all in order (both ingestions, then ``build_features``, ``train``,
``score``). Every task is a ``spark_python_task`` running the job file with
``--profile <the profile, synced to the workspace>`` (plus the ``--set`` overrides given
here, so the jobs run with the settings the clusters were sized for), on a job cluster,
with the lakeloop wheel as its library. The bundle builds that wheel itself (its
``artifacts`` section) and syncs ``jobs/`` and ``conf/`` to the workspace.

Cluster settings that are not in a profile (runtime, node types, workers) are
:class:`BundleOptions`, overridable with ``--option key=value``. Spark settings come from
the profile's ``spark.conf``, less the ones that only make sense off Databricks.

The tests check every generated job against the Jobs API types that ``databricks-sdk`` generates
from the API's OpenAPI specification (``lakeloop_dev.databricks_schema``, dev tooling: the SDK is
not a dependency of the wheel); ``databricks bundle validate`` checks a bundle where it is deployed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from lakeloop.config import REPO_ROOT, Profile, build_settings, parse_override
from lakeloop.errors import ConfigError, SetupError
from lakeloop.stacks import DEFAULT, STACKS, Stack, installed_stack, stack_for_runtime

# The pipeline's steps and what each waits for. Both ingestions are independent; the
# features join bronze.digits_meta, so they wait for both.
PIPELINE_STEPS: dict[str, tuple[str, ...]] = {
    "ingest_images": (),
    "ingest_tables": (),
    "build_features": ("ingest_images", "ingest_tables"),
    "train": ("build_features",),
    "score": ("train",),
    "evaluate": ("score",),
}
TRAIN_JOB = "train"
JOB_PREFIX = "lakeloop_"
PIPELINE_JOB = "lakeloop_pipeline"
CLUSTER_KEY = "lakeloop"
TRAIN_CLUSTER_KEY = "lakeloop_train"

# Spark settings a Databricks cluster sets itself, or that name things on the machine that
# generates the definition (interpreters, local jars, a log4j file in the checkout).
LOCAL_ONLY_SPARK_SETTINGS = frozenset({
    "spark.master",
    "spark.submit.deployMode",
    "spark.pyspark.python",
    "spark.pyspark.driver.python",
    "spark.driver.memory",
    "spark.driver.extraJavaOptions",
    "spark.jars",
    "spark.jars.packages",
    "spark.archives",
    "spark.executorEnv.PYTHONPATH",
})
_SECRET_WORDS = ("secret", "password", "token", "credential", "access.key")
_SECRET_REFERENCE = re.compile(r"^\{\{secrets/[^/{}]+/[^/{}]+\}\}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class BundleOptions:
    """What a job definition needs beyond the profile: the clusters and the bundle.

    Node types are cloud-specific: the default is AWS; on Azure use e.g.
    ``Standard_D4ds_v5`` (GPU ``Standard_NC4as_T4_v3``), on GCP ``n2-standard-4``.
    """

    bundle_name: str = "lakeloop"
    # A Databricks Runtime ML (torch, TorchDistributor) of a supported stack (lakeloop.stacks): 18.x
    # (Spark 4.1) or 17.3 LTS / 17.x (Spark 4.0). Default (None): the runtime of the other one's
    # stack when that one is given, else of the installed pyspark's stack (the current one,
    # 18.0.x-cpu-ml-scala2.13 / 18.0.x-gpu-ml-scala2.13, without pyspark).
    spark_version: str | None = None
    gpu_spark_version: str | None = None
    node_type_id: str = "i3.xlarge"
    gpu_node_type_id: str | None = None
    num_workers: int = 2
    # Default: train.num_processes, one worker (and so at least one task slot) per process.
    train_num_workers: int | None = None
    # ML runtimes need a dedicated (single user) cluster; so does the /dbfs FUSE mount.
    data_security_mode: str = "SINGLE_USER"
    # Safe: every job is idempotent, a rerun after a crash finishes the work (docs/architecture.md#reliability).
    max_retries: int = 1
    workspace_host: str | None = None
    # Jobs API JSON only: where jobs/, conf/ and dist/<wheel> were uploaded in the workspace.
    workspace_root: str = "/Workspace/Shared/lakeloop"
    wheel_build: str = "python3 -m pip wheel --no-deps --wheel-dir dist ."


@dataclass(frozen=True)
class _Locations:
    """Where a task finds its job file, the profile and the wheel, as the definition writes them."""

    jobs_dir: str
    profile_file: str
    wheel: str

    def job_file(self, job: str) -> str:
        return f"{self.jobs_dir}/{job}.py"


# --------------------------------------------------------------------------- options


def load_options(pairs: Sequence[str] = ()) -> BundleOptions:
    """:class:`BundleOptions` from ``key=value`` strings (values parsed as YAML).

    Raises
    ------
    ConfigError
        unknown option or wrong type; the message lists the options.
    """
    data: dict[str, Any] = {}
    for item in pairs:
        key, value = parse_override(item, "--option")
        data[key] = value
    # build_settings gives the same "unknown setting ...; the settings of ... are" messages as profiles.
    return build_settings(BundleOptions, data, "option")


def _default_stack() -> Stack:
    """The stack whose runtime is the default: the installed pyspark's, or the current one without pyspark."""
    try:
        return installed_stack()
    except SetupError:  # no pyspark here: generating job definitions does not need one
        return DEFAULT
    except ConfigError as exc:
        raise ConfigError(f"{exc}; or name the cluster's runtime: --option spark_version=... "
                          f"({' or '.join(s.databricks_cpu for s in STACKS)})") from None


def _runtimes(options: BundleOptions) -> tuple[str, str]:
    """``(spark_version, gpu_spark_version)``: each given one checked, each missing one defaulted.

    A missing runtime is of the given one's stack (one Spark line writes and reads the lake),
    else of :func:`_default_stack`.
    """
    given = {"spark_version": options.spark_version, "gpu_spark_version": options.gpu_spark_version}
    for setting, version in given.items():
        if version is not None and stack_for_runtime(version) is None:
            kind = "gpu" if setting.startswith("gpu") else "cpu"
            raise ConfigError(
                f"option.{setting} = {version!r} is not a Databricks Runtime lakeloop supports: "
                f"{' or '.join(f'{s.databricks_runtimes} for the {s.name} stack' for s in STACKS)} "
                f"(16.4 LTS and older have Spark 3.5). Use e.g. --option {setting}="
                f"{' or '.join(getattr(s, 'databricks_' + kind) for s in STACKS)}"
            )
    first = options.spark_version or options.gpu_spark_version
    stack = stack_for_runtime(first) if first else _default_stack()
    cpu = options.spark_version or stack.databricks_cpu
    gpu = options.gpu_spark_version or stack.databricks_gpu
    cpu_stack, gpu_stack = stack_for_runtime(cpu), stack_for_runtime(gpu)
    if cpu_stack is not gpu_stack:
        raise ConfigError(
            f"option.spark_version = {cpu!r} ({cpu_stack.databricks_runtimes}) and option.gpu_spark_version = "
            f"{gpu!r} ({gpu_stack.databricks_runtimes}) are of two Spark lines, which would write the same "
            f"lake; use one, e.g. --option gpu_spark_version={cpu_stack.databricks_gpu}"
        )
    if "gpu" not in gpu:
        raise ConfigError(f"option.gpu_spark_version = {gpu!r} is not a GPU runtime; "
                          f"use e.g. {gpu_stack.databricks_gpu}")
    return cpu, gpu


def _check_options(options: BundleOptions) -> BundleOptions:
    """Check the options; return them with the runtimes filled in (:func:`_runtimes`)."""
    if not _NAME.match(options.bundle_name):
        raise ConfigError(
            f"option.bundle_name = {options.bundle_name!r}: use letters, digits, '_' and '-' only"
        )
    cpu, gpu = _runtimes(options)
    if options.num_workers < 1:
        raise ConfigError(
            f"option.num_workers = {options.num_workers}: lakeloop's jobs need at least 1 worker "
            f"(single-node clusters are not generated)"
        )
    if options.max_retries < 0:
        raise ConfigError(f"option.max_retries = {options.max_retries} must be 0 or more")
    if not options.workspace_root.startswith(("/Workspace/", "/Volumes/")):
        raise ConfigError(
            f"option.workspace_root = {options.workspace_root!r} must be a workspace or volume folder, "
            f"e.g. /Workspace/Shared/lakeloop"
        )
    return dataclasses.replace(options, spark_version=cpu, gpu_spark_version=gpu)


# --------------------------------------------------------------------------- profile checks


def _check_profile(profile: Profile, repo_root: Path) -> None:
    """Refuse profiles that cannot run on Databricks, naming the setting and the fix."""
    if profile.spark.master:
        raise ConfigError(
            f"spark.master = {profile.spark.master!r}: on Databricks the cluster provides Spark. "
            f"Generate from the databricks profile, or set spark.master: null in yours"
        )
    if profile.jvm.packages:
        raise ConfigError(
            f"jvm.packages = {list(profile.jvm.packages)}: Databricks ships Delta and is not given "
            f"JVM packages through the profile. Set jvm.packages: [] (add other jars as cluster libraries)"
        )
    locations = [("lake_root", profile.lake_root), ("ingest_images.source", profile.ingest_images.source),
                 ("ingest_images.labels_table", profile.ingest_images.labels_table),
                 ("train.init_from", profile.train.init_from),
                 ("features.join_table", profile.features.join_table)]
    locations += [(f"ingest_tables.tables.{name}.source", table.source)
                  for name, table in profile.ingest_tables.tables.items()]
    for setting, value in locations:
        if value and value.lower().startswith("file:"):
            raise ConfigError(
                f"{setting} = {value!r} is a folder on this machine, which a Databricks cluster cannot read. "
                f"Use a dbfs:/ path (e.g. dbfs:/lakeloop/lake) or a cloud storage URI"
            )
    for key, value in _cluster_spark_conf(profile).items():
        if str(repo_root) in value or sys.executable in value:
            raise ConfigError(
                f"spark.conf {key} = {value!r} points into this checkout or its Python, which the cluster "
                f"does not have. Set it to null in the profile (or to a dbfs:/ path)"
            )


def _cluster_spark_conf(profile: Profile) -> dict[str, str]:
    """The profile's Spark settings that belong on a Databricks cluster (no secrets allowed).

    Raises
    ------
    ConfigError
        a setting that looks like a secret holds a value instead of a secret reference.
    """
    conf = {}
    for key, value in profile.spark.conf.items():
        if value is None or key in LOCAL_ONLY_SPARK_SETTINGS:
            continue
        if any(word in key.lower() for word in _SECRET_WORDS) and not _SECRET_REFERENCE.match(value):
            # Never echo the value: it is the secret.
            raise ConfigError(
                f"spark.conf {key} holds a secret, and job definitions are stored and shown in the workspace. "
                f"Write it as a Databricks secret reference, {{{{secrets/<scope>/<key>}}}}, or leave it out "
                f"and give the cluster an instance profile or a Unity Catalog storage credential"
            )
        conf[key] = value
    return conf


def _profile_file(profile: Profile, repo_root: Path) -> Path:
    path = repo_root / "conf" / f"{profile.name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"profile {profile.name!r} is not a file in {repo_root / 'conf'}: the bundle syncs conf/ to the "
            f"workspace, so the profile the jobs read must live there. Copy it to conf/{profile.name}.yaml"
        )
    return path


def _wheel_name(repo_root: Path) -> str:
    """File name of the wheel ``pip wheel`` builds from the checkout (pure Python, any platform)."""
    project = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    return f"{name}-{project['version']}-py3-none-any.whl"


def job_names(repo_root: Path = REPO_ROOT) -> list[str]:
    """The jobs of the checkout, one per ``jobs/<name>.py``: the pipeline's steps first, in order."""
    jobs_dir = repo_root / "jobs"
    found = {p.stem for p in jobs_dir.glob("*.py") if not p.stem.startswith("_")}
    names = [step for step in PIPELINE_STEPS if step in found] + sorted(found - set(PIPELINE_STEPS))
    if not names:
        raise ConfigError(f"no job files in {jobs_dir}: run this from a lakeloop checkout")
    missing = [step for step in PIPELINE_STEPS if step not in names]
    if missing:
        raise ConfigError(f"the pipeline runs {', '.join(missing)} but {jobs_dir} has no such job file")
    return names


# --------------------------------------------------------------------------- definitions


def _clusters(profile: Profile, options: BundleOptions) -> dict[str, dict[str, Any]]:
    """The two job clusters: one for the Spark jobs, one sized for TorchDistributor."""
    spark_conf = _cluster_spark_conf(profile)
    common: dict[str, Any] = {"data_security_mode": options.data_security_mode}
    if spark_conf:
        common["spark_conf"] = spark_conf
    jobs_cluster = {"spark_version": options.spark_version, "node_type_id": options.node_type_id,
                    "num_workers": options.num_workers, **common}

    cfg = profile.train
    workers = options.train_num_workers
    if workers is None:
        workers = options.num_workers if cfg.local_mode else max(cfg.num_processes, 1)
    if not cfg.local_mode and workers < cfg.num_processes:
        raise ConfigError(
            f"option.train_num_workers = {workers} is less than train.num_processes = {cfg.num_processes}: "
            f"TorchDistributor runs one barrier task per process and waits until all have a task slot. "
            f"Set --option train_num_workers={cfg.num_processes} or lower train.num_processes"
        )
    if workers < 1:
        raise ConfigError(f"option.train_num_workers = {workers} must be at least 1")
    if cfg.use_gpu:
        if not options.gpu_node_type_id:
            raise ConfigError(
                "train.use_gpu is true but option.gpu_node_type_id is not set: name a GPU node type of your "
                "cloud, e.g. --option gpu_node_type_id=g5.xlarge (AWS) or Standard_NC4as_T4_v3 (Azure)"
            )
        # One GPU per barrier task, i.e. per training process; GPU runtimes set the executors' GPU
        # amount and discovery script themselves.
        gpu_conf = {"spark.task.resource.gpu.amount": "1", **spark_conf}
        train_cluster = {"spark_version": options.gpu_spark_version, "node_type_id": options.gpu_node_type_id,
                         "num_workers": workers, **common, "spark_conf": gpu_conf}
    else:
        train_cluster = {**jobs_cluster, "num_workers": workers}
    return {CLUSTER_KEY: jobs_cluster, TRAIN_CLUSTER_KEY: train_cluster}


def _train_note(profile: Profile, clusters: Mapping[str, Mapping[str, Any]]) -> str:
    cfg = profile.train
    if cfg.local_mode:
        return (f"Training runs train.num_processes = {cfg.num_processes} processes on the driver "
                f"(train.local_mode).")
    slot = "one GPU" if cfg.use_gpu else "one core"
    return (
        f"Training: TorchDistributor starts train.num_processes = {cfg.num_processes} barrier tasks and waits "
        f"until each has a task slot; the {TRAIN_CLUSTER_KEY} cluster has "
        f"{clusters[TRAIN_CLUSTER_KEY]['num_workers']} worker(s), at least one per process, each with at least "
        f"{slot}{' (GPU runtime, one GPU per task)' if cfg.use_gpu else ''}."
    )


def _task(
    job: str, locations: _Locations, overrides: Sequence[str], options: BundleOptions, after: Sequence[str] = (),
    job_args: Sequence[str] = (),
) -> dict[str, Any]:
    parameters = ["--profile", locations.profile_file]
    for item in overrides:
        parameters += ["--set", item]
    parameters += list(job_args)
    task: dict[str, Any] = {"task_key": job}
    if after:
        task["depends_on"] = [{"task_key": previous} for previous in after]
    task |= {
        "job_cluster_key": TRAIN_CLUSTER_KEY if job == TRAIN_JOB else CLUSTER_KEY,
        "spark_python_task": {"python_file": locations.job_file(job), "parameters": parameters},
        "libraries": [{"whl": locations.wheel}],
    }
    if options.max_retries:
        task["max_retries"] = options.max_retries
    return task


SCORE_JOB = "score"


def quartz_cron(cron: str) -> str:
    """A five-field cron expression (``schedule.cron``) as Databricks' Quartz one: seconds first, ``?``
    for the day field left open, weekdays counted from 1 (Sunday) instead of 0."""
    minute, hour, day, month, weekday = cron.split()
    if weekday == "*":
        weekday = "?"
    else:
        day = "?"
        # Weekday numbers, not step sizes ("*/2"): 0 or 7 (Sunday) -> 1, ..., 6 (Saturday) -> 7.
        weekday = re.sub(r"(?<!/)\d+", lambda m: str(int(m.group()) % 7 + 1), weekday)
    return f"0 {minute} {hour} {day} {month} {weekday}"


def _score_schedule(profile: Profile) -> dict[str, Any]:
    """The score job's ``schedule`` (``schedule.cron``) or file-arrival ``trigger``; empty when neither is set."""
    cfg = profile.schedule
    pause = "PAUSED" if cfg.paused else "UNPAUSED"
    if cfg.cron:
        return {"schedule": {"quartz_cron_expression": quartz_cron(cfg.cron), "timezone_id": cfg.timezone,
                             "pause_status": pause}}
    if cfg.file_arrival_url:
        return {"trigger": {"pause_status": pause, "file_arrival": {"url": cfg.file_arrival_url}}}
    return {}


def _notifications(profile: Profile) -> dict[str, Any]:
    """Who hears of a failed run of any job: ``schedule.on_failure_emails`` and ``on_failure_webhook_ids``."""
    cfg, out = profile.schedule, {}
    if cfg.on_failure_emails:
        out["email_notifications"] = {"on_failure": list(cfg.on_failure_emails)}
    if cfg.on_failure_webhook_ids:
        out["webhook_notifications"] = {"on_failure": [{"id": i} for i in cfg.on_failure_webhook_ids]}
    return out


def _job_settings(
    profile: Profile,
    options: BundleOptions,
    overrides: Sequence[str],
    locations: _Locations,
    repo_root: Path,
) -> dict[str, dict[str, Any]]:
    """Job key -> Jobs API settings, for every job file and the pipeline."""
    options = _check_options(options)
    _check_profile(profile, repo_root)
    for item in overrides:
        key = item.partition("=")[0]
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise ConfigError(f"--set {key}=...: job definitions must not carry secrets; keep it in the cluster's "
                              f"secret references instead")
    clusters = _clusters(profile, options)
    train_note = _train_note(profile, clusters)
    tags = {"project": "lakeloop", "profile": profile.name}

    def job(name: str, description: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        used = sorted({t["job_cluster_key"] for t in tasks})
        return {
            "name": name,
            "description": description,
            "tags": tags,
            # Two runs at once would contend for the same Delta tables' MERGE commits.
            "max_concurrent_runs": 1,
            "job_clusters": [{"job_cluster_key": key, "new_cluster": clusters[key]} for key in used],
            "tasks": tasks,
            **_notifications(profile),
        }

    settings: dict[str, dict[str, Any]] = {}
    schedule = _score_schedule(profile)
    for name in job_names(repo_root):
        description = f"lakeloop job {name} (jobs/{name}.py) with the {profile.name} profile."
        job_args: list[str] = []
        if name == TRAIN_JOB:
            description += " " + train_note
        if name == SCORE_JOB and schedule:
            # available_now whatever the profile says: a scheduled run must end before the next one.
            job_args = ["--stream", "--trigger", "available_now"] if profile.schedule.stream else []
            description += (" Scheduled (schedule.*): " + ("score --stream, each run scores the input files the "
                            "last one had not seen." if job_args else "the batch score job."))
        settings[f"{JOB_PREFIX}{name}"] = job(f"lakeloop-{name}", description,
                                              [_task(name, locations, overrides, options, job_args=job_args)])
        if name == SCORE_JOB:
            settings[f"{JOB_PREFIX}{name}"].update(schedule)
    pipeline_tasks = [_task(step, locations, overrides, options, after) for step, after in PIPELINE_STEPS.items()]
    settings[PIPELINE_JOB] = job(
        "lakeloop-pipeline",
        f"The lakeloop pipeline with the {profile.name} profile: ingest_images and ingest_tables, then "
        f"build_features, train, score, evaluate. {train_note}",
        pipeline_tasks,
    )
    return settings


def _relative(path: Path, start: Path) -> str:
    rel = os.path.relpath(path, start).replace(os.sep, "/")
    return rel if rel.startswith(".") else f"./{rel}"


def bundle_definition(
    profile: Profile,
    options: BundleOptions = BundleOptions(),
    overrides: Sequence[str] = (),
    bundle_dir: Path | None = None,
    repo_root: Path = REPO_ROOT,
) -> dict[str, Any]:
    """A Databricks Asset Bundle (the content of ``databricks.yml``) for a profile.

    Parameters
    ----------
    profile : a loaded profile, e.g. ``load_profile("databricks")``; its file must be in
        ``conf/`` (the bundle syncs ``conf/`` and the tasks read it there).
    options : clusters and bundle settings beyond the profile.
    overrides : the ``--set key=value`` strings applied to ``profile``; every task gets them
        too, so the jobs run with the settings the clusters were sized for.
    bundle_dir : the folder ``databricks.yml`` will be written to (default ``build/databricks``);
        paths in the bundle are relative to it.

    Raises
    ------
    ConfigError
        a profile setting or option that cannot work on Databricks (local paths, a master,
        JVM packages, a secret value, a runtime of no supported stack (Databricks Runtime 18.x,
        17.3 LTS / 17.x), CPU and GPU runtimes of two Spark lines, too few training workers,
        a GPU run without a GPU node type).
    """
    repo_root = repo_root.resolve()
    bundle_dir = (bundle_dir or repo_root / "build" / "databricks").resolve()
    profile_file = _profile_file(profile, repo_root)
    wheel = _wheel_name(repo_root)
    # Paths outside the bundle folder are synced from their common parent, the checkout,
    # so ${workspace.file_path} is the checkout's root in the workspace.
    locations = _Locations(
        jobs_dir=_relative(repo_root / "jobs", bundle_dir),
        profile_file=f"${{workspace.file_path}}/conf/{profile_file.name}",
        wheel=_relative(repo_root / "dist" / wheel, bundle_dir),
    )
    jobs = _job_settings(profile, options, overrides, locations, repo_root)
    bundle: dict[str, Any] = {"bundle": {"name": options.bundle_name}}
    if options.workspace_host:
        bundle["workspace"] = {"host": options.workspace_host}
    bundle["artifacts"] = {
        "lakeloop_wheel": {"type": "whl", "path": _relative(repo_root, bundle_dir), "build": options.wheel_build},
    }
    bundle["sync"] = {"paths": [_relative(repo_root / "jobs", bundle_dir), _relative(repo_root / "conf", bundle_dir)]}
    bundle["targets"] = {
        "dev": {"mode": "development", "default": True},
        "prod": {
            "mode": "production",
            "workspace": {"root_path": "/Workspace/Users/${workspace.current_user.userName}/.bundle/"
                                      "${bundle.name}/${bundle.target}"},
        },
    }
    bundle["resources"] = {"jobs": jobs}
    return bundle


def jobs_api_settings(
    profile: Profile,
    options: BundleOptions = BundleOptions(),
    overrides: Sequence[str] = (),
    repo_root: Path = REPO_ROOT,
) -> dict[str, dict[str, Any]]:
    """Job key -> the ``settings`` of a Jobs API 2.1 ``jobs/create`` request, for every job.

    The files are expected under ``options.workspace_root``: ``jobs/``, ``conf/`` and
    ``dist/<wheel>``, uploaded beforehand (the bundle does this itself). Raises as
    :func:`bundle_definition`.
    """
    repo_root = repo_root.resolve()
    root = options.workspace_root.rstrip("/")
    locations = _Locations(
        jobs_dir=f"{root}/jobs",
        profile_file=f"{root}/conf/{_profile_file(profile, repo_root).name}",
        wheel=f"{root}/dist/{_wheel_name(repo_root)}",
    )
    return _job_settings(profile, options, overrides, locations, repo_root)


# --------------------------------------------------------------------------- the file

HEADER = """\
# Generated by `lakeloop databricks bundle` from conf/{profile}.yaml: do not edit;
# change the profile or the --option/--set values and generate again (docs/platforms/databricks.md).
# Deploy from this folder: databricks bundle validate; databricks bundle deploy -t dev;
# databricks bundle run {pipeline}
"""


class _PlainDumper(yaml.SafeDumper):
    """Writes shared sub-mappings (the cluster specs) out in full, without YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_bundle(bundle: Mapping[str, Any], out: Path, profile: Profile) -> None:
    """Write ``databricks.yml``, headed by where it came from and what the training cluster needs."""
    train = bundle["resources"]["jobs"][f"{JOB_PREFIX}{TRAIN_JOB}"]["description"]
    text = HEADER.format(profile=profile.name, pipeline=PIPELINE_JOB)
    text += "".join(f"# {line}\n" for line in textwrap.wrap(train, 100))
    text += yaml.dump(dict(bundle), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=110)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")

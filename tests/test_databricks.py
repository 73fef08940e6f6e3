"""Databricks job definitions from conf/databricks.yaml, checked against the Jobs API schema.

The schema is databricks-sdk's (``databricks.sdk.service.jobs``, generated from the Jobs
API's OpenAPI specification; pinned in requirements/dev.txt). No Spark, no network.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from databricks.sdk.service.jobs import JobSettings  # the schema; pinned in requirements/dev.txt

from lakeloop import cli
from lakeloop.cli import databricks as databricks_cli
from lakeloop.config import REPO_ROOT, load_profile
from lakeloop.deploy import databricks
from lakeloop.deploy.databricks import (
    PIPELINE_JOB,
    TRAIN_CLUSTER_KEY,
    bundle_definition,
    jobs_api_settings,
    load_options,
)
from lakeloop.errors import ConfigError
from lakeloop.stacks import CURRENT, SPARK40, installed_stack
from lakeloop_dev import databricks_schema
from lakeloop_dev.databricks_schema import bundle_problems, schema_problems

WHEEL = databricks._wheel_name(REPO_ROOT)  # lakeloop-<version>-py3-none-any.whl
JOB_FILES = sorted(p.stem for p in (REPO_ROOT / "jobs").glob("*.py") if not p.stem.startswith("_"))


@pytest.fixture(scope="module")
def profile():
    return load_profile("databricks")


@pytest.fixture(scope="module")
def bundle(profile):
    return bundle_definition(profile, bundle_dir=REPO_ROOT / "build" / "databricks")


def _jobs(bundle) -> dict:
    return bundle["resources"]["jobs"]


# --------------------------------------------------------------------------- schema


def test_bundle_conforms_to_the_jobs_api_schema(bundle):
    assert bundle_problems(bundle) == []
    for key, job in _jobs(bundle).items():
        # Every key survives the SDK's round trip: nothing unknown or misspelt was dropped.
        assert JobSettings.from_dict(copy.deepcopy(job)).as_dict() == job, key


def test_a_bundle_for_a_unity_catalog_volume_lake_root_conforms_to_the_jobs_api_schema():
    volume = load_profile("databricks", ["lake_root=/Volumes/main/lakeloop/lake",
                                         "ingest_images.source=/Volumes/main/lakeloop/raw/images"])
    bundle = bundle_definition(volume, bundle_dir=REPO_ROOT / "build" / "databricks-volume")
    assert bundle_problems(bundle) == []
    for key, job in _jobs(bundle).items():
        assert JobSettings.from_dict(copy.deepcopy(job)).as_dict() == job, key
    assert volume.lake_root == "/Volumes/main/lakeloop/lake"


def test_jobs_api_json_conforms_and_uses_workspace_paths(profile):
    settings = jobs_api_settings(profile, load_options(["workspace_root=/Workspace/Shared/ll"]))
    for key, job in settings.items():
        assert schema_problems(job, key) == []
        assert JobSettings.from_dict(json.loads(json.dumps(job))).as_dict() == job
        for task in job["tasks"]:
            assert task["spark_python_task"]["python_file"] == f"/Workspace/Shared/ll/jobs/{task['task_key']}.py"
            # The scheduled score job.
            extra = ["--stream", "--trigger", "available_now"] if key == "lakeloop_score" else []
            assert task["spark_python_task"]["parameters"] == ["--profile", "/Workspace/Shared/ll/conf/databricks.yaml",
                                                               *extra]
            assert task["libraries"] == [{"whl": f"/Workspace/Shared/ll/dist/{WHEEL}"}]


def _misspell_task_type(job):
    job["tasks"][0]["spark_python_tsk"] = job["tasks"][0].pop("spark_python_task")


def _string_workers(job):
    job["job_clusters"][0]["new_cluster"]["num_workers"] = "two"


def _bad_access_mode(job):
    job["job_clusters"][0]["new_cluster"]["data_security_mode"] = "SINGLE"


def _no_task_key(job):
    del job["tasks"][-1]["task_key"]


def _no_python_file(job):
    del job["tasks"][0]["spark_python_task"]["python_file"]


def _parameters_not_a_list(job):
    job["tasks"][0]["spark_python_task"]["parameters"] = "--profile x"


def _library_typo(job):
    job["tasks"][0]["libraries"] = [{"wheel": "x.whl"}]


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_misspell_task_type, "spark_python_tsk: not a field of Task"),
        (_string_workers, "num_workers: expected a whole number"),
        (_bad_access_mode, "data_security_mode: 'SINGLE' is not one of"),
        (_no_task_key, "task_key: required by Task but missing"),
        (_no_python_file, "python_file: required by SparkPythonTask but missing"),
        (_parameters_not_a_list, "parameters: expected a list"),
        (_library_typo, "libraries[0].wheel: not a field of Library"),
    ],
)
def test_validator_rejects_broken_definitions(bundle, breaks, message):
    job = copy.deepcopy(_jobs(bundle)[PIPELINE_JOB])
    breaks(job)
    problems = schema_problems(job, PIPELINE_JOB)
    assert any(message in p for p in problems), problems


def test_round_trip_alone_catches_an_unknown_key(bundle):
    # The second line of defence: the SDK silently drops what it does not know.
    job = copy.deepcopy(_jobs(bundle)[PIPELINE_JOB])
    job["max_concurent_runs"] = 1
    assert JobSettings.from_dict(copy.deepcopy(job)).as_dict() != job
    assert databricks_schema._differences(job, JobSettings.from_dict(job).as_dict(), "job") == [
        "job.max_concurent_runs: dropped by the round trip"
    ]


def test_bundle_level_sections_are_checked(bundle):
    broken = copy.deepcopy(bundle)
    broken["artifact"] = broken.pop("artifacts")
    broken["sync"]["path"] = ["../../jobs"]
    problems = bundle_problems(broken)
    assert "artifact: not a top-level bundle mapping" in problems
    assert "sync.path: not a sync setting" in problems


# --------------------------------------------------------------------------- content


def test_every_job_file_has_a_job_and_a_pipeline_task(bundle):
    jobs = _jobs(bundle)
    assert set(jobs) == {f"lakeloop_{name}" for name in JOB_FILES} | {PIPELINE_JOB}
    # Every job but housekeeping (maintain: its own job, scheduled apart) is a step of the pipeline.
    assert sorted(t["task_key"] for t in jobs[PIPELINE_JOB]["tasks"]) == [j for j in JOB_FILES if j != "maintain"]
    for name in JOB_FILES:
        (task,) = jobs[f"lakeloop_{name}"]["tasks"]
        assert task["task_key"] == name and "depends_on" not in task


def test_pipeline_runs_the_steps_in_order(bundle):
    tasks = _jobs(bundle)[PIPELINE_JOB]["tasks"]
    after = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in tasks}
    assert after == {
        "ingest_images": [],
        "ingest_tables": [],
        "build_features": ["ingest_images", "ingest_tables"],
        "train": ["build_features"],
        "score": ["train"],
        "evaluate": ["score"],
    }
    # Listed in an order that runs: every task after the ones it waits for.
    seen: set[str] = set()
    for task in tasks:
        assert set(after[task["task_key"]]) <= seen
        seen.add(task["task_key"])


def test_tasks_run_the_synced_job_files_with_the_profile_and_the_wheel(bundle):
    bundle_dir = REPO_ROOT / "build" / "databricks"
    artifact = bundle["artifacts"]["lakeloop_wheel"]
    assert (bundle_dir / artifact["path"]).resolve() == REPO_ROOT
    assert "--no-deps" in artifact["build"] and "--wheel-dir dist" in artifact["build"]
    synced = {(bundle_dir / p).resolve() for p in bundle["sync"]["paths"]}
    assert synced == {REPO_ROOT / "jobs", REPO_ROOT / "conf"}
    for task in _jobs(bundle)[PIPELINE_JOB]["tasks"]:
        spark_task = task["spark_python_task"]
        assert (bundle_dir / spark_task["python_file"]).resolve() == REPO_ROOT / "jobs" / f"{task['task_key']}.py"
        assert spark_task["parameters"] == ["--profile", "${workspace.file_path}/conf/databricks.yaml"]
        (library,) = task["libraries"]
        assert (bundle_dir / library["whl"]).resolve() == REPO_ROOT / "dist" / WHEEL


def test_task_parameters_are_what_the_jobs_parse(bundle):
    from lakeloop.cli.jobs import base_parser

    task = _jobs(bundle)[PIPELINE_JOB]["tasks"][0]
    args = base_parser("x", "x").parse_args(task["spark_python_task"]["parameters"])
    assert args.profile.endswith("/conf/databricks.yaml")


def test_clusters_take_the_profiles_spark_settings_but_not_the_local_ones(profile, bundle):
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in _jobs(bundle)[PIPELINE_JOB]["job_clusters"]}
    assert set(clusters) == {"lakeloop", TRAIN_CLUSTER_KEY}
    for cluster in clusters.values():
        # The runtime of the installed pyspark's stack: 18.x for pyspark 4.1, 17.x for 4.0.
        assert installed_stack().matches_runtime(cluster["spark_version"])
        assert cluster["data_security_mode"] == "SINGLE_USER"
        conf = cluster["spark_conf"]
        assert conf["spark.sql.files.openCostInBytes"] == profile.spark.conf["spark.sql.files.openCostInBytes"]
        assert conf["spark.sql.session.timeZone"] == "UTC"
        assert not set(conf) & databricks.LOCAL_ONLY_SPARK_SETTINGS
        assert not any(str(REPO_ROOT) in value for value in conf.values())


def test_training_cluster_has_a_worker_per_process_and_the_tasks_get_the_override():
    overrides = ["train.num_processes=4"]
    bundle = bundle_definition(load_profile("databricks", overrides), overrides=overrides)
    pipeline = _jobs(bundle)[PIPELINE_JOB]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in pipeline["job_clusters"]}
    assert clusters[TRAIN_CLUSTER_KEY]["num_workers"] == 4
    assert clusters["lakeloop"]["num_workers"] == 2
    assert "train.num_processes = 4" in pipeline["description"]
    for task in pipeline["tasks"]:
        assert task["spark_python_task"]["parameters"][-2:] == ["--set", "train.num_processes=4"]
    (train_task,) = _jobs(bundle)["lakeloop_train"]["tasks"]
    assert train_task["job_cluster_key"] == TRAIN_CLUSTER_KEY
    assert bundle_problems(bundle) == []


def test_gpu_training_gets_a_gpu_runtime_and_node_type():
    profile = load_profile("databricks", ["train.use_gpu=true"])
    bundle = bundle_definition(profile, load_options(["gpu_node_type_id=g5.xlarge"]))
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in _jobs(bundle)[PIPELINE_JOB]["job_clusters"]}
    assert clusters[TRAIN_CLUSTER_KEY]["spark_version"] == installed_stack().databricks_gpu
    assert clusters[TRAIN_CLUSTER_KEY]["node_type_id"] == "g5.xlarge"
    assert clusters[TRAIN_CLUSTER_KEY]["spark_conf"]["spark.task.resource.gpu.amount"] == "1"
    assert clusters["lakeloop"]["spark_version"] == installed_stack().databricks_cpu
    assert "spark.task.resource.gpu.amount" not in clusters["lakeloop"]["spark_conf"]
    assert bundle_problems(bundle) == []


def _runtimes(bundle) -> tuple[str, str]:
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in _jobs(bundle)[PIPELINE_JOB]["job_clusters"]}
    return clusters["lakeloop"]["spark_version"], clusters[TRAIN_CLUSTER_KEY]["spark_version"]


def test_without_a_runtime_option_the_clusters_run_the_runtime_of_the_installed_pyspark():
    profile = load_profile("databricks", ["train.use_gpu=true"])
    bundle = bundle_definition(profile, load_options(["gpu_node_type_id=g5.xlarge"]))
    stack = installed_stack()
    assert _runtimes(bundle) == (stack.databricks_cpu, stack.databricks_gpu)
    assert {CURRENT.databricks_cpu, CURRENT.databricks_gpu} == {"18.0.x-cpu-ml-scala2.13", "18.0.x-gpu-ml-scala2.13"}
    assert {SPARK40.databricks_cpu, SPARK40.databricks_gpu} == {"17.3.x-cpu-ml-scala2.13", "17.3.x-gpu-ml-scala2.13"}


@pytest.mark.parametrize(("cpu", "gpu"), [
    ("17.3.x-cpu-ml-scala2.13", "17.3.x-gpu-ml-scala2.13"),  # Databricks Runtime 17.3 LTS: Spark 4.0 (spark40)
    ("18.0.x-cpu-ml-scala2.13", "18.0.x-gpu-ml-scala2.13"),  # Databricks Runtime 18: Spark 4.1 (current)
    ("18.x-cpu-ml-scala2.13", "18.x-gpu-ml-scala2.13"),
])
def test_both_supported_databricks_runtime_lines_are_accepted_whatever_pyspark_is_installed(cpu, gpu):
    profile = load_profile("databricks", ["train.use_gpu=true"])
    options = load_options(["gpu_node_type_id=g5.xlarge", f"spark_version={cpu}", f"gpu_spark_version={gpu}"])
    bundle = bundle_definition(profile, options)
    assert _runtimes(bundle) == (cpu, gpu)
    assert bundle_problems(bundle) == []


@pytest.mark.parametrize(("given", "expected"), [
    ("spark_version=17.3.x-cpu-ml-scala2.13", ("17.3.x-cpu-ml-scala2.13", "17.3.x-gpu-ml-scala2.13")),
    ("gpu_spark_version=18.0.x-gpu-ml-scala2.13", ("18.0.x-cpu-ml-scala2.13", "18.0.x-gpu-ml-scala2.13")),
])
def test_naming_one_runtime_puts_the_other_cluster_on_the_same_spark_line(given, expected):
    profile = load_profile("databricks", ["train.use_gpu=true"])
    assert _runtimes(bundle_definition(profile, load_options(["gpu_node_type_id=g5.xlarge", given]))) == expected


def test_secret_references_pass_and_secret_values_are_refused():
    reference = "{{secrets/lake/s3-secret}}"
    profile = load_profile("databricks", spark_conf=[f"spark.hadoop.fs.s3a.secret.key={reference}"])
    bundle = bundle_definition(profile)
    cluster = _jobs(bundle)[PIPELINE_JOB]["job_clusters"][0]["new_cluster"]
    assert cluster["spark_conf"]["spark.hadoop.fs.s3a.secret.key"] == reference

    profile = load_profile("databricks", spark_conf=["spark.hadoop.fs.s3a.secret.key=hunter2"])
    with pytest.raises(ConfigError, match=r"secret reference") as info:
        bundle_definition(profile)
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("options", "overrides", "message"),
    [
        (["node_type=m5.xlarge"], [], r"unknown setting option\.node_type; .*node_type_id"),
        (["num_workers=two"], [], r"option\.num_workers must be a whole number, found 'two'"),
        (["num_workers=0"], [], r"option\.num_workers = 0: .* at least 1 worker"),
        (["spark_version=16.4.x-cpu-ml-scala2.12"], [],
         r"not a Databricks Runtime lakeloop supports: Databricks Runtime 18 .*Spark 4\.1.* or "
         r"Databricks Runtime 17\.3 LTS .*Spark 4\.0.*--option spark_version=18\.0\.x-cpu-ml-scala2\.13 or "
         r"17\.3\.x-cpu-ml-scala2\.13"),
        (["gpu_spark_version=15.4.x-gpu-ml-scala2.12"], [], r"option\.gpu_spark_version = '15\.4\.x-gpu-ml-scala2\.12' "
                                                            r"is not a Databricks Runtime lakeloop supports"),
        (["spark_version=19.x-cpu-ml-scala2.13"], [], r"not a Databricks Runtime lakeloop supports"),
        (["gpu_spark_version=17.3.x-cpu-ml-scala2.13"], [], r"gpu_spark_version .* is not a GPU runtime"),
        (["spark_version=18.0.x-cpu-ml-scala2.13", "gpu_spark_version=17.3.x-gpu-ml-scala2.13"], [],
         r"are of two Spark lines.*gpu_spark_version=18\.0\.x-gpu-ml-scala2\.13"),
        (["train_num_workers=1"], [], r"option\.train_num_workers = 1 is less than train\.num_processes = 2"),
        ([], ["train.use_gpu=true"], r"option\.gpu_node_type_id is not set"),
        ([], ["lake_root=file:/tmp/lake"], r"lake_root = 'file:/tmp/lake' is a folder on this machine.*dbfs:/"),
        ([], ["spark.master=local[2]"], r"spark\.master = 'local\[2\]': on Databricks the cluster provides Spark"),
        ([], ["jvm.packages=[a:b:1]"], r"jvm\.packages = \['a:b:1'\]: Databricks ships Delta"),
    ],
)
def test_bad_settings_name_the_setting_and_the_fix(options, overrides, message):
    with pytest.raises(ConfigError, match=message):
        bundle_definition(load_profile("databricks", overrides), load_options(options), overrides)


def test_local_paths_in_spark_settings_are_refused():
    profile = load_profile("databricks", spark_conf=[f"spark.driver.extraClassPath={REPO_ROOT}/jars/x.jar"])
    with pytest.raises(ConfigError, match=r"spark\.driver\.extraClassPath .* points into this checkout"):
        bundle_definition(profile)


def test_a_profile_outside_conf_is_refused(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text((REPO_ROOT / "conf" / "databricks.yaml").read_text().replace("extends: local", "extends: "
                   + str(REPO_ROOT / "conf" / "local.yaml")))
    with pytest.raises(ConfigError, match=r"profile 'mine' is not a file in .*conf.*Copy it to conf/mine\.yaml"):
        bundle_definition(load_profile(str(own)))


# --------------------------------------------------------------------------- command line


def test_cli_writes_the_bundle_and_the_json(tmp_path, capsys):
    out = tmp_path / "bundle" / "databricks.yml"
    assert databricks_cli.main(["bundle", "--profile", "databricks", "--set", "train.epochs=5", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Generated by `lakeloop databricks bundle` from conf/databricks.yaml")
    assert "&id" not in text  # no YAML anchors: each job reads on its own
    written = yaml.safe_load(text)
    expected = bundle_definition(load_profile("databricks", ["train.epochs=5"]), overrides=["train.epochs=5"],
                                 bundle_dir=out.parent)
    assert written == expected

    jobs_dir = tmp_path / "jobs"
    assert databricks_cli.main(["bundle", "--profile", "databricks", "--format", "json", "--out", str(jobs_dir)]) == 0
    files = sorted(p.name for p in jobs_dir.glob("*.json"))
    assert files == sorted(f"{key}.json" for key in _jobs(expected))
    assert json.loads((jobs_dir / f"{PIPELINE_JOB}.json").read_text())["name"] == "lakeloop-pipeline"
    assert [p for f in jobs_dir.glob("*.json") for p in schema_problems(json.loads(f.read_text()), f.stem)] == []
    capsys.readouterr()


def test_cli_reports_a_bad_option_and_exits_2(tmp_path, capsys):
    code = databricks_cli.main(["bundle", "--profile", "databricks", "--option", "num_worker=3", "--out", str(tmp_path / "d.yml")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown setting option.num_worker" in err and "num_workers" in err
    assert not (tmp_path / "d.yml").exists()


def test_lakeloop_command_dispatches(tmp_path, capsys):
    assert cli.main(["databricks", "bundle", "--profile", "databricks", "--out", str(tmp_path / "databricks.yml")]) == 0
    assert (tmp_path / "databricks.yml").is_file()
    assert cli.main(["nope"]) == 2
    assert "the commands are: show, lineage, forget, maintain, airflow, databricks, jars, registry, report, train-rank" in \
        capsys.readouterr().err


def test_cli_generates_for_another_checkout(tmp_path, capsys):
    # What `lakeloop databricks bundle --repo ...` does from an installed wheel.
    repo = tmp_path / "checkout"
    for name in ("jobs", "conf"):
        shutil.copytree(REPO_ROOT / name, repo / name)
    shutil.copy2(REPO_ROOT / "pyproject.toml", repo / "pyproject.toml")
    assert databricks_cli.main(["bundle", "--profile", "databricks", "--repo", str(repo)]) == 0
    out = repo / "build" / "databricks" / "databricks.yml"
    written = yaml.safe_load(out.read_text())
    task = written["resources"]["jobs"][PIPELINE_JOB]["tasks"][0]
    assert (out.parent / task["spark_python_task"]["python_file"]).resolve() == repo / "jobs" / "ingest_images.py"
    capsys.readouterr()


# --------------------------------------------------------------------------- schedules


def test_the_score_job_runs_score_stream_on_the_profiles_schedule_and_every_job_reports_failures(profile, bundle):
    from lakeloop.deploy.databricks import SCORE_JOB

    jobs = _jobs(bundle)
    score = jobs[f"lakeloop_{SCORE_JOB}"]
    assert profile.schedule.cron == "0 * * * *"
    assert score["schedule"] == {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC",
                                 "pause_status": "PAUSED"}
    (task,) = score["tasks"]
    parameters = task["spark_python_task"]["parameters"]
    assert parameters[-3:] == ["--stream", "--trigger", "available_now"]
    # What jobs/score.py parses: its own parser, as the task runs it.
    args = _score_parser().parse_args(parameters)
    assert args.stream is True and args.trigger == "available_now"
    assert args.profile.endswith("/conf/databricks.yaml")
    for key, job in jobs.items():
        assert job["email_notifications"] == {"on_failure": ["lakeloop-alerts@example.com"]}, key
        assert ("schedule" in job) == (key == f"lakeloop_{SCORE_JOB}"), key
    assert bundle_problems(bundle) == []


def _score_parser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("job_score", REPO_ROOT / "jobs" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_parser()


def test_a_file_arrival_trigger_and_webhooks_conform_to_the_jobs_api(profile):
    overrides = ["schedule.cron=null", "schedule.file_arrival_url=s3://raw-bucket/images/",
                 "schedule.on_failure_webhook_ids=[0481e838-0a59-4eff-9541-a4ca6f149574]", "schedule.stream=false"]
    bundle = bundle_definition(load_profile("databricks", overrides), overrides=overrides)
    score = _jobs(bundle)["lakeloop_score"]
    assert score["trigger"] == {"pause_status": "PAUSED", "file_arrival": {"url": "s3://raw-bucket/images/"}}
    assert "schedule" not in score and "--stream" not in score["tasks"][0]["spark_python_task"]["parameters"]
    assert score["webhook_notifications"] == {"on_failure": [{"id": "0481e838-0a59-4eff-9541-a4ca6f149574"}]}
    assert bundle_problems(bundle) == []


@pytest.mark.parametrize(("cron", "quartz"), [
    ("0 * * * *", "0 0 * * * ?"),
    ("*/15 * * * *", "0 */15 * * * ?"),
    ("30 2 * * 1-5", "0 30 2 ? * 2-6"),  # Monday to Friday: Quartz counts Sunday as 1
    ("0 6 * * 0,6", "0 0 6 ? * 1,7"),
    ("0 6 1 * *", "0 0 6 1 * ?"),
    ("0 6 * * */2", "0 0 6 ? * */2"),  # a step is no weekday
])
def test_a_five_field_cron_becomes_the_quartz_expression_databricks_takes(cron, quartz):
    from lakeloop.deploy.databricks import quartz_cron

    assert quartz_cron(cron) == quartz


@pytest.mark.parametrize(("overrides", "message"), [
    (["schedule.cron=every hour"], r"schedule\.cron = 'every hour' is not a five-field cron expression"),
    (["schedule.cron=0 0 1 * 1"], r"sets both the day of the month and the day of the week"),
    (["schedule.file_arrival_url=s3://b/raw/"], r"schedule\.cron and schedule\.file_arrival_url are both set"),
    (["schedule.cron=null", "schedule.file_arrival_url=dbfs:/raw"], r"not a location Databricks can watch"),
    (["schedule.on_failure_emails=[ops]"], r"schedule\.on_failure_emails: 'ops' is not an e-mail address"),
])
def test_bad_schedule_settings_are_refused_when_the_profile_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("databricks", overrides)


def test_the_wheel_needs_no_databricks_sdk():
    """The Jobs API schema check is dev tooling (lakeloop_dev.databricks_schema): databricks-sdk is a dev
    requirement, so nothing in the wheel imports it."""
    lib = REPO_ROOT / "lib" / "lakeloop"
    assert [str(p.relative_to(lib)) for p in lib.rglob("*.py") if "databricks.sdk" in p.read_text(encoding="utf-8")] == []

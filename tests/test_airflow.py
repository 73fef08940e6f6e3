"""The Airflow DAG for scheduled scoring (lakeloop airflow dag), checked by parsing it: Airflow itself
is not installed here (its pins clash with the project's), so the test reads the generated file's
syntax tree and checks what the SparkSubmitOperator task would run against what ./spark-submit.sh runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lakeloop import cli
from lakeloop.config import REPO_ROOT
from lakeloop.deploy.submit import WrapperArgs, build_command

CRON = "*/15 * * * *"
# SparkSubmitOperator's keyword arguments (apache-airflow-providers-apache-spark 4.x/5.x).
OPERATOR_ARGUMENTS = {
    "application", "conf", "conn_id", "files", "py_files", "archives", "driver_class_path", "jars", "java_class",
    "packages", "exclude_packages", "repositories", "total_executor_cores", "executor_cores", "executor_memory",
    "driver_memory", "keytab", "principal", "proxy_user", "name", "num_executors", "status_poll_interval",
    "application_args", "env_vars", "verbose", "spark_binary", "properties_file", "yarn_queue", "deploy_mode",
    "use_krb5ccache",
}


def _generate(tmp_path: Path, *sets: str) -> tuple[int, Path]:
    out = tmp_path / "lakeloop_score.py"
    args = ["airflow", "dag", "--profile", "yarn", "--conn-id", "yarn_cluster", "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    return cli.main(args), out


def _dag_call(tree: ast.Module) -> ast.Call:
    (with_node,) = [n for n in tree.body if isinstance(n, ast.With)]
    return with_node.items[0].context_expr


def test_the_dag_submits_score_stream_as_spark_submit_sh_would_on_the_profiles_schedule(tmp_path):
    sets = (f"schedule.cron={CRON}", "schedule.timezone=Europe/Berlin", "schedule.on_failure_emails=[ops@example.org]")
    code, out = _generate(tmp_path, *sets)
    assert code == 0
    source = out.read_text()
    tree = ast.parse(source)
    compile(source, str(out), "exec")
    submit = ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign)
                                   and n.targets[0].id == "SUBMIT"))
    assert set(submit) <= OPERATOR_ARGUMENTS
    assert submit["conn_id"] == "yarn_cluster"
    assert Path(submit["application"]) == REPO_ROOT / "jobs" / "score.py"

    # The same command ./spark-submit.sh --profile yarn ... score --stream builds, flag for flag.
    expected = build_command(WrapperArgs("yarn", sets, (), False, "score", ("--stream", "--trigger", "available_now")))
    confs = dict(expected[i + 1].split("=", 1) for i, part in enumerate(expected) if part == "--conf")
    assert submit["conf"] == confs
    assert submit["application_args"] == expected[expected.index(submit["application"]) + 1:]
    assert submit["py_files"] == expected[expected.index("--py-files") + 1]
    assert Path(submit["py_files"]).is_file()

    # The task's arguments are what jobs/score.py parses: --stream, the profile, the overrides.
    import importlib.util

    spec = importlib.util.spec_from_file_location("job_score", REPO_ROOT / "jobs" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.make_parser().parse_args(submit["application_args"])
    assert args.stream and args.trigger == "available_now"
    assert Path(args.profile) == REPO_ROOT / "conf" / "yarn.yaml" and list(sets) == args.overrides

    dag = {k.arg: k.value for k in _dag_call(tree).keywords}
    assert ast.literal_eval(dag["schedule"]) == CRON and ast.literal_eval(dag["max_active_runs"]) == 1
    default_args = ast.literal_eval(dag["default_args"])
    assert default_args["email"] == ["ops@example.org"] and default_args["email_on_failure"] is True
    assert "tz='Europe/Berlin'" in ast.unparse(dag["start_date"])


def test_a_dag_without_a_schedule_is_refused_with_the_setting_to_add(tmp_path, capsys):
    code, out = _generate(tmp_path)
    assert code == 2 and not out.exists()
    assert "schedule.cron is not set in the yarn profile" in capsys.readouterr().err

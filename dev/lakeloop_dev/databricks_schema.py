"""Whether generated Databricks definitions fit the Jobs API: every job walked against the types that
``databricks-sdk`` generates from the API's OpenAPI specification (unknown or misspelt keys, wrong
types, unknown enum values, missing required keys) and a round trip through them, and a bundle's
top-level sections against the Asset Bundle configuration reference.

:mod:`lakeloop.deploy.databricks` generates the definitions; the tests (tests/test_databricks.py) check
them with these functions. Dev tooling, not in the wheel: ``databricks-sdk`` is a dev requirement
(requirements/dev.txt), and ``databricks bundle validate`` checks a bundle again where it is deployed.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Mapping

from lakeloop.errors import SetupError

# The top-level mappings and artifact keys of the bundle configuration reference
# (docs: "Databricks Asset Bundle configuration"); jobs are checked against the SDK's types.
BUNDLE_TOP_LEVEL_KEYS = frozenset({
    "bundle", "artifacts", "experimental", "include", "permissions", "presets", "python", "resources",
    "run_as", "scripts", "sync", "targets", "variables", "workspace",
})
ARTIFACT_KEYS = frozenset({"build", "dynamic_version", "executable", "files", "path", "type"})
SYNC_KEYS = frozenset({"exclude", "include", "paths"})


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_problems(value: Any, tp: Any, where: str) -> list[str]:
    """Where ``value`` does not fit the SDK type ``tp``: unknown keys, types, enum values."""
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is Any:
        return []
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            return [f"{where}: expected a mapping ({tp.__name__}), found {type(value).__name__}"]
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        problems = [f"{where}.{key}: not a field of {tp.__name__} (known: {', '.join(sorted(fields))})"
                    for key in value if key not in fields]
        for name, fld in fields.items():
            if name in value:
                problems += _type_problems(value[name], hints[name], f"{where}.{name}")
            elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                problems.append(f"{where}.{name}: required by {tp.__name__} but missing")
        return problems
    if origin in (list, typing.List):
        if not isinstance(value, list):
            return [f"{where}: expected a list, found {type(value).__name__}"]
        (item_type,) = typing.get_args(tp)
        return [p for i, item in enumerate(value) for p in _type_problems(item, item_type, f"{where}[{i}]")]
    if origin in (dict, typing.Dict):
        if not isinstance(value, Mapping):
            return [f"{where}: expected a mapping, found {type(value).__name__}"]
        _, item_type = typing.get_args(tp)
        return [p for key, item in value.items() for p in _type_problems(item, item_type, f"{where}.{key}")]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [member.value for member in tp]
        return [] if value in allowed else [f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected true/false, found {value!r}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a whole number, found {value!r}"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a number, found {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{where}: expected text, found {value!r}"]
    return []


def _differences(expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        out = [f"{where}.{k}: dropped by the round trip" for k in expected if k not in actual]
        out += [f"{where}.{k}: added by the round trip" for k in actual if k not in expected]
        return out + [d for k in expected if k in actual for d in _differences(expected[k], actual[k], f"{where}.{k}")]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: {expected!r} came back as {actual!r}"]


def schema_problems(settings: Mapping[str, Any], where: str = "job") -> list[str]:
    """What is wrong with one job's settings by the Jobs API schema; empty when it conforms.

    Two checks against ``databricks.sdk.service.jobs.JobSettings`` (generated from the
    Jobs API's OpenAPI specification): every key, type and enum value walked against the
    SDK's dataclasses, and a ``from_dict``/``as_dict`` round trip that must give the job
    back unchanged (the SDK drops what it does not know).

    Raises
    ------
    SetupError
        ``databricks-sdk`` is not installed (it is in requirements/dev.txt).
    """
    try:
        from databricks.sdk.service.jobs import JobSettings
    except ImportError as exc:
        raise SetupError(
            "databricks-sdk is not installed: run ./dev/setup.sh (it is pinned in requirements/dev.txt)"
        ) from exc
    problems = _type_problems(settings, JobSettings, where)
    if not problems:
        problems = _differences(dict(settings), JobSettings.from_dict(dict(settings)).as_dict(), where)
    return problems


def bundle_problems(bundle: Mapping[str, Any]) -> list[str]:
    """What is wrong with a generated bundle: its sections' keys, and every job by :func:`schema_problems`."""
    problems = [f"{key}: not a top-level bundle mapping" for key in bundle if key not in BUNDLE_TOP_LEVEL_KEYS]
    if not isinstance(bundle.get("bundle"), Mapping) or not bundle["bundle"].get("name"):
        problems.append("bundle.name: required")
    for name, artifact in (bundle.get("artifacts") or {}).items():
        problems += [f"artifacts.{name}.{key}: not an artifact setting" for key in artifact if key not in ARTIFACT_KEYS]
    problems += [f"sync.{key}: not a sync setting" for key in (bundle.get("sync") or {}) if key not in SYNC_KEYS]
    resources = bundle.get("resources") or {}
    problems += [f"resources.{kind}: this generator writes jobs only" for kind in resources if kind != "jobs"]
    for key, job in (resources.get("jobs") or {}).items():
        problems += schema_problems(job, f"resources.jobs.{key}")
    return problems

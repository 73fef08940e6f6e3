"""The generic loading: profile file -> command-line overrides -> typed, frozen config object.

A profile is a YAML file in ``conf/`` (``conf/local.yaml`` ...). It may start with
``extends: <other profile>``; its mappings are merged over the other's, key by key.
Command-line overrides are ``--set dotted.key=value`` (the value is parsed as YAML)
and ``--conf spark.key=value`` (a Spark setting). The merged mapping is then turned
into :class:`Profile`, rejecting unknown keys and wrong types with the key's full name.

These placeholders are expanded in string values, and nothing else is read from the
environment: ``{repo}``, the checkout the profile belongs to (:func:`repo_for`: the folder
above its ``conf/`` folder when it lives in one, else the checkout the command runs from;
``./spark-submit.sh`` tells the job which it used, so both expand it alike); ``{python}``
(the Python running the driver, for local masters whose workers share its interpreter) and
``{site_packages}`` (the folder pyspark lies in, with its jars: :func:`lakeloop.stacks.packages_folder`); ``{delta}``,
``{kafka}`` and ``{hadoop_aws}``, the JVM coordinates of the installed pyspark's stack
(:mod:`lakeloop.stacks`). Without a supported pyspark those three stay as written, so the
profile still loads; :mod:`lakeloop.runtime.jars` says why when the jars are needed. ``~``
at the start of a local cache path is the user's home.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from lakeloop.config.checks import require_uri
from lakeloop.config.profile import Profile, check_profile
from lakeloop.errors import ConfigError, LakeloopError
from lakeloop.stacks import Stack, installed_stack, packages_folder


REPO_ROOT = Path(__file__).resolve().parents[3]  # lib/lakeloop/config/loader.py -> the checkout


DEFAULT_CONF_DIR = REPO_ROOT / "conf"


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def find_profile(name_or_path: str, conf_dir: Path = DEFAULT_CONF_DIR) -> Path:
    """Locate a profile by name (``local`` -> ``conf/local.yaml``) or by file path."""
    candidates = [Path(name_or_path)]
    if not name_or_path.endswith((".yaml", ".yml")):
        candidates.append(conf_dir / f"{name_or_path}.yaml")
    else:
        # On a cluster, spark-submit --files puts the profile in the working directory.
        candidates.append(Path(Path(name_or_path).name))
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in conf_dir.glob("*.yaml")) if conf_dir.is_dir() else []
    raise ConfigError(
        f"profile {name_or_path!r} not found (looked for {', '.join(str(c) for c in candidates)}). "
        f"Known profiles: {', '.join(known) or 'none'}; pass --profile NAME or a path to a YAML file."
    )


def _read_profile_mapping(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        raise ConfigError(f"profile {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a mapping of settings, found {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent:
        base = _read_profile_mapping(find_profile(str(parent), path.parent), seen + (path.resolve(),))
        data = _deep_merge(base, data)
    return data


def parse_override(text: str, flag: str = "--set") -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is parsed as YAML (``3`` -> 3, ``[a, b]`` -> list)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} ingest_images.max_pixels=1000000")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


# Settings that are mappings whose keys hold dots themselves (Kafka and Spark option names):
# ``--set score.kafka.options.kafka.sasl.mechanism=PLAIN`` sets the key ``kafka.sasl.mechanism``.
_DOTTED_KEY_MAPPINGS = ("score.kafka.options", "spark.conf")


# Settings whose values may be credentials: errors name them but never show their values.
_SECRET_SETTINGS = ("score.kafka.options",)


# Spark, Hadoop and Kafka setting names that hold a credential (S3 keys, session tokens, passwords,
# JAAS configs): their values never go into a file lakeloop writes for people to copy (train --plan-only).
_SECRET_NAME = re.compile(r"secret|passw|token|credential|access[._-]?key|account\.key|jaas|private[._-]?key|"
                          r"api[._-]?key", re.IGNORECASE)


# ... except the names of settings that say how to get one (fs.s3a.aws.credentials.provider, a class).
_SECRET_NAME_EXCEPTIONS = (".provider", ".enabled", ".class", ".type")


def is_secret_setting(name: str) -> bool:
    """Whether the Spark, Hadoop or Kafka setting ``name`` (``fs.s3a.secret.key``,
    ``spark.hadoop.fs.s3a.session.token`` ...) holds a credential."""
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(_SECRET_NAME_EXCEPTIONS)


def _shown(key: str, value: Any) -> str:
    """``value`` for an error message, unless ``key`` may hold a credential."""
    if any(key == s or key.startswith(s + ".") for s in _SECRET_SETTINGS):
        return "a value not shown here (it may be a credential)"
    return repr(value)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    mapping = next((m for m in _DOTTED_KEY_MAPPINGS if dotted.startswith(m + ".")), None)
    parts = [*mapping.split("."), dotted[len(mapping) + 1:]] if mapping else dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


# The placeholders of lakeloop.stacks.Stack.placeholders: JVM coordinates of the installed pyspark's stack.
JAR_PLACEHOLDERS = ("delta", "kafka", "hadoop_aws")


def placeholder_values(repo: Path, stack: Stack | None = None) -> dict[str, str]:
    """Placeholder name (without braces) -> what it stands for in a profile.

    ``stack`` gives ``{delta}``, ``{kafka}`` and ``{hadoop_aws}``; default the installed
    pyspark's (:func:`lakeloop.stacks.installed_stack`). Without a supported pyspark they are
    left out, so they stay in the profile as written.
    """
    values = {"repo": str(repo), "python": sys.executable, "site_packages": packages_folder()}
    if stack is None:
        try:
            stack = installed_stack()
        except LakeloopError:
            return values  # lakeloop.runtime.jars.cache_dir_for says why, if the jars are ever needed
    return {**values, **stack.placeholders()}


def _expand(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        # One pass: a value that contains braces ({{secrets/...}}, a path) is never expanded twice.
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _expand(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, values) for v in value]
    return value


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} = {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_settings(tp, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, found {_shown(key, value)}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, found {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be a whole number, found {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, found {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, bool):  # Spark settings written as YAML true/false
            return "true" if value else "false"
        raise ConfigError(f"{key} must be text, found {_shown(key, value)}")
    return value


# Settings that moved: a profile that still uses the old name is told the new one.
RENAMED_SETTINGS = {"train.architecture": "train.model",
                    "train.pretrained_weights": "train.init_from (a weights file URI, or NAME:VERSION / NAME@alias)",
                    # The feed no longer runs Petastorm's pools: the order is the plan's whatever the reader.
                    "train.reader_pool": "train.reader (arrow, or petastorm on the spark40 stack); delete it",
                    "train.reader_workers": "train.prefetch (row groups decoded ahead by one thread); delete it"}


def build_settings(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'profile'} must be a mapping of settings, found {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        renamed = RENAMED_SETTINGS.get(f"{where}{unknown[0]}")
        if renamed:
            raise ConfigError(f"setting {where}{unknown[0]} is now {renamed}; rename it in the profile or --set")
        raise ConfigError(
            f"unknown setting {where}{unknown[0]}; the settings of {prefix or 'a profile'} are: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, fld in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(f"setting {key} is required but missing")
    return cls(**kwargs)


def repo_for(profile_path: Path, checkout: Path = REPO_ROOT) -> Path:
    """What ``{repo}`` stands for in the profile at ``profile_path``: the folder above its ``conf/``
    folder when it lives in one (``<checkout>/conf/local.yaml``), else ``checkout``."""
    folder = profile_path.resolve().parent
    return folder.parent if folder.name == "conf" else checkout


def load_profile(
    name_or_path: str = "local",
    overrides: typing.Iterable[str | tuple[str, Any]] = (),
    spark_conf: typing.Iterable[str] = (),
    conf_dir: Path = DEFAULT_CONF_DIR,
    repo_root: Path | None = None,
    stack: Stack | None = None,
) -> Profile:
    """Load a profile, apply ``--set`` overrides and ``--conf`` Spark settings, validate it.

    Parameters
    ----------
    name_or_path : profile name in ``conf_dir`` or a path to a YAML file.
    overrides : ``dotted.key=value`` strings (value parsed as YAML) or ``(key, value)``
        pairs (value taken as is), applied in order.
    spark_conf : ``spark.key=value`` strings, added to ``spark.conf``.
    repo_root : what ``{repo}`` stands for; default :func:`repo_for` the profile's path.
    stack : whose JVM coordinates ``{delta}``, ``{kafka}``, ``{hadoop_aws}`` stand for; default
        the installed pyspark's (:func:`placeholder_values`).

    Raises
    ------
    ConfigError
        unknown profile, unknown key, wrong type, or a location without a URI scheme.
    """
    path = find_profile(name_or_path, conf_dir)
    data = _read_profile_mapping(path)
    for item in overrides:
        # A (key, value) pair is taken as it is; a "key=value" string has its value parsed as YAML.
        key, value = item if isinstance(item, tuple) else parse_override(item)
        _set_dotted(data, key, value)
    for item in spark_conf:
        key, value = parse_override(item, "--conf")
        data.setdefault("spark", {}).setdefault("conf", {})[key] = "" if value is None else value
    data.setdefault("name", path.stem)
    data = _expand(data, placeholder_values(repo_root or repo_for(path), stack))
    profile: Profile = build_settings(Profile, data, "")
    check_profile(profile)
    return dataclasses.replace(profile, lake_root=require_uri(profile.lake_root, "lake_root"))

"""The model registry in the lake: numbered, never-overwritten model versions plus aliases.

Layout under a registry root (``<lake_root>/models`` by convention)::

    <root>/<name>/<version>/weights.pt             torch.save of a state dict (bytes)
                           /model.torchscript.pt   optional TorchScript export (bytes)
                           /metadata.json          caller's metadata + name, version, published_at, idempotency_key
                           /_COMMITTED             written last: the version exists from then on
    <root>/<name>/latest                           {"version": N}, moved by publish after _COMMITTED
    <root>/<name>/production                       {"version": N}, moved by set_alias (any alias works alike)

A version folder without ``_COMMITTED`` is the leftover of a crashed publish: readers
ignore it and the next publish reuses (clears and rewrites) its number. A committed
version is never written again. This module moves bytes only; building an ``nn.Module``
from them is the loader's job, so importing it costs no torch.

It is safe for any number of readers, and for one publisher per model name at a time
(a training job publishes from a single rank): two concurrent publishes of the same
name could pick the same number.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from lakeloop import lakefs
from lakeloop.errors import ConfigError, ModelNotFound, SourceError

WEIGHTS_FILE = "weights.pt"
TORCHSCRIPT_FILE = "model.torchscript.pt"
METADATA_FILE = "metadata.json"
COMMITTED_FILE = "_COMMITTED"
LATEST = "latest"
PRODUCTION = "production"

# No leading "." or "_": Hadoop and Spark listings hide such names, and "." / ".." would escape the root.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")


@dataclass(frozen=True)
class ModelVersion:
    """One committed model version; ``uri`` is its folder."""

    name: str
    version: int
    uri: str


# --------------------------------------------------------------------------- names and paths


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_' and '.', starting with a "
            f"letter or digit, at most 128 characters (e.g. train.model_name: digits_lenet)"
        )
    return name


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _NAME.match(alias) or alias.isdigit():
        raise ConfigError(
            f"alias {alias!r} is not valid: use letters, digits, '-', '_' and '.', starting with a letter "
            f"or digit and not all digits (those are version numbers), e.g. 'production' or 'staging'"
        )
    return alias


def _root(registry_root: str) -> str:
    if not isinstance(registry_root, str) or not registry_root:
        raise ConfigError(f"registry root {registry_root!r} must be a URI such as 'file:/data/lake/models'")
    stripped = registry_root.rstrip("/")
    # A root at "/" keeps one slash: "file:" alone would be a relative path.
    return stripped if not stripped.endswith(":") else stripped + "/"


def _model_uri(registry_root: str, name: str) -> str:
    root = _root(registry_root)
    return f"{root}{'' if root.endswith('/') else '/'}{_check_name(name)}"


def version_uri(registry_root: str, name: str, version: int) -> str:
    """URI of the folder of ``version`` of model ``name`` (committed or not)."""
    return f"{_model_uri(registry_root, name)}/{int(version)}"


# --------------------------------------------------------------------------- reading


def list_models(registry_root: str, hadoop_conf: Mapping[str, str] | None = None) -> list[str]:
    """Names of the models under ``registry_root`` that have at least one folder, sorted."""
    return [n for n in lakefs.list_dir(_root(registry_root), hadoop_conf) if _NAME.match(n)]


def list_versions(registry_root: str, name: str, hadoop_conf: Mapping[str, str] | None = None) -> list[int]:
    """Committed versions of model ``name``, ascending; ``[]`` for an unknown model.

    Version folders without ``_COMMITTED`` (crashed publishes) are not listed.
    """
    model = _model_uri(registry_root, name)
    numbers = sorted(int(child) for child in lakefs.list_dir(model, hadoop_conf) if _VERSION_DIR.match(child))
    return [n for n in numbers if lakefs.exists(f"{model}/{n}/{COMMITTED_FILE}", hadoop_conf)]


def _read_alias(model: str, alias: str, hadoop_conf: Mapping[str, str] | None) -> int | None:
    uri = f"{model}/{alias}"
    try:
        raw = lakefs.read_bytes(uri, hadoop_conf)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        version = json.loads(raw.decode("utf-8"))["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(version)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SourceError(
            f"alias file {uri} is not of the form {{\"version\": N}}; point it again with "
            f"registry.set_alias(..., {alias!r}, N)"
        ) from None
    return version


def list_aliases(registry_root: str, name: str, hadoop_conf: Mapping[str, str] | None = None) -> dict[str, int]:
    """Aliases of model ``name`` and the versions they point to, e.g. ``{"latest": 3, "production": 2}``."""
    model = _model_uri(registry_root, name)
    aliases = {}
    for child in lakefs.list_dir(model, hadoop_conf):
        if _NAME.match(child) and not child.isdigit():
            try:
                version = _read_alias(model, child, hadoop_conf)
            except (SourceError, OSError):
                continue  # not an alias file (or a folder); resolve() reports it when asked for by name
            if version is not None:
                aliases[child] = version
    return aliases


def _not_found(registry_root: str, name: str, what: str, hadoop_conf: Mapping[str, str] | None) -> ModelNotFound:
    versions = list_versions(registry_root, name, hadoop_conf)
    if not versions:
        models = list_models(registry_root, hadoop_conf)
        return ModelNotFound(
            f"model {name!r} has no committed version under {_root(registry_root)}"
            f"{' (asked for ' + what + ')' if what else ''}. Models there: {', '.join(models) or 'none'}; "
            f"train and publish it first, or check train.model_name and the lake root."
        )
    aliases = list_aliases(registry_root, name, hadoop_conf)
    shown = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
    return ModelNotFound(
        f"model {name!r} has no {what} under {_root(registry_root)}. Committed versions: "
        f"{', '.join(map(str, versions))}; aliases: {shown}. Ask for one of them, e.g. "
        f"{name}:{versions[-1]} or {name}@{LATEST}."
    )


def resolve(
    registry_root: str,
    name: str,
    ref: str | int = LATEST,
    hadoop_conf: Mapping[str, str] | None = None,
) -> ModelVersion:
    """The committed version of model ``name`` that ``ref`` designates.

    Parameters
    ----------
    registry_root : URI of the registry, e.g. ``file:/data/lake/models``.
    name : model name.
    ref : a version number (``3`` or ``"3"``), ``"latest"``, ``"production"`` or any other
        alias set with :func:`set_alias`. Should the ``latest`` file be missing (a publish
        that crashed right after committing), ``latest`` is the highest committed version.

    Raises
    ------
    ModelNotFound
        no such committed version or alias; the message lists what exists.
    ConfigError
        an invalid name or alias.
    SourceError
        an alias file that is not ``{"version": N}``.
    """
    model = _model_uri(registry_root, name)
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise ConfigError(f"model ref {ref!r} for {name!r} must be a version number or an alias name")
    if isinstance(ref, int) or ref.isdigit():
        version = int(ref)
        what = f"version {version}"
    else:
        alias = _check_alias(ref)
        what = f"alias {alias!r}"
        version = _read_alias(model, alias, hadoop_conf)
        if version is None and alias == LATEST:
            committed = list_versions(registry_root, name, hadoop_conf)
            version = committed[-1] if committed else None
        if version is None:
            raise _not_found(registry_root, name, what, hadoop_conf)
        what = f"{what} -> version {version} (the alias points to a version that is not committed)"
    if version < 1 or not lakefs.exists(f"{model}/{version}/{COMMITTED_FILE}", hadoop_conf):
        raise _not_found(registry_root, name, what, hadoop_conf)
    return ModelVersion(name=name, version=version, uri=f"{model}/{version}")


def _commit_record(version: ModelVersion, hadoop_conf: Mapping[str, str] | None) -> dict[str, Any]:
    uri = f"{version.uri}/{COMMITTED_FILE}"
    try:
        raw = lakefs.read_bytes(uri, hadoop_conf)
    except FileNotFoundError:
        raise ModelNotFound(
            f"{version.uri} is not a committed version of model {version.name!r} (no {COMMITTED_FILE}); "
            f"get versions from registry.resolve(...) rather than building them by hand"
        ) from None
    try:
        record = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        record = {}
    return record if isinstance(record, dict) else {}


def _read_checked(version: ModelVersion, filename: str, hadoop_conf: Mapping[str, str] | None) -> bytes | None:
    """A file of a committed version, checked against the checksum recorded at commit."""
    expected = _commit_record(version, hadoop_conf).get("files")
    if isinstance(expected, dict) and filename not in expected:
        return None
    uri = f"{version.uri}/{filename}"
    try:
        data = lakefs.read_bytes(uri, hadoop_conf)
    except FileNotFoundError:
        if isinstance(expected, dict):
            raise SourceError(
                f"{uri} is missing although {COMMITTED_FILE} lists it; the version folder was altered "
                f"after publishing. Publish the model again (a new version)."
            ) from None
        return None
    entry = expected.get(filename) if isinstance(expected, dict) else None
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        raise SourceError(
            f"{uri} does not match the checksum recorded in {COMMITTED_FILE}; the version folder was "
            f"altered after publishing. Publish the model again (a new version)."
        )
    return data


def read_metadata(version: ModelVersion, hadoop_conf: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``metadata.json`` of a committed version.

    Raises
    ------
    ModelNotFound
        ``version`` is not committed.
    SourceError
        the file is missing or altered since publishing.
    """
    data = _read_checked(version, METADATA_FILE, hadoop_conf)
    if data is None:
        raise SourceError(f"{version.uri}/{METADATA_FILE} is missing; publish the model again (a new version).")
    return json.loads(data.decode("utf-8"))


def read_weights(version: ModelVersion, hadoop_conf: Mapping[str, str] | None = None) -> bytes:
    """The ``weights.pt`` bytes of a committed version (a ``torch.save`` of its state dict).

    Raises
    ------
    ModelNotFound
        ``version`` is not committed.
    SourceError
        the file is missing or altered since publishing.
    """
    data = _read_checked(version, WEIGHTS_FILE, hadoop_conf)
    if data is None:
        raise SourceError(f"{version.uri}/{WEIGHTS_FILE} is missing; publish the model again (a new version).")
    return data


def read_torchscript(version: ModelVersion, hadoop_conf: Mapping[str, str] | None = None) -> bytes | None:
    """The TorchScript export of a committed version, or ``None`` when it was published without one."""
    return _read_checked(version, TORCHSCRIPT_FILE, hadoop_conf)


# --------------------------------------------------------------------------- writing


def _write_alias(model: str, alias: str, version: int, hadoop_conf: Mapping[str, str] | None) -> None:
    lakefs.write_bytes_atomic(f"{model}/{alias}", json.dumps({"version": version}).encode("utf-8"), hadoop_conf)


def find_by_idempotency_key(
    registry_root: str,
    name: str,
    idempotency_key: str,
    hadoop_conf: Mapping[str, str] | None = None,
) -> ModelVersion | None:
    """The committed version of ``name`` published with ``idempotency_key``, or ``None``.

    A job calls this before training to skip work already published. If a crash after
    ``_COMMITTED`` left ``latest`` behind the version found, ``latest`` is moved forward
    to it, so the rerun leaves the registry as one clean run would; otherwise nothing is
    written.
    """
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise ValueError(f"find_by_idempotency_key({name!r}): the key must be a non-empty string")
    model = _model_uri(registry_root, name)
    # Newest first: a rerun most often repeats the last publish.
    for number in reversed(list_versions(registry_root, name, hadoop_conf)):
        candidate = ModelVersion(name=name, version=number, uri=f"{model}/{number}")
        try:
            if read_metadata(candidate, hadoop_conf).get("idempotency_key") != idempotency_key:
                continue
        except (SourceError, ValueError):
            continue  # an altered version cannot be the one this run published
        current = _read_alias(model, LATEST, hadoop_conf)
        if current is None or current < number:
            _write_alias(model, LATEST, number, hadoop_conf)
        return candidate
    return None


def publish(
    registry_root: str,
    name: str,
    weights: bytes,
    metadata: Mapping[str, Any],
    torchscript: bytes | None = None,
    idempotency_key: str | None = None,
    hadoop_conf: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Publish a new version of model ``name`` and point ``latest`` at it.

    Writes ``weights.pt``, ``model.torchscript.pt`` (if given), ``metadata.json``, then
    ``_COMMITTED`` (with the files' SHA-256), then the ``latest`` alias. The version is
    the highest committed one plus one; an uncommitted leftover of that number is cleared
    first.

    Parameters
    ----------
    registry_root : URI of the registry, e.g. ``file:/data/lake/models``.
    name : model name: letters, digits, ``-``, ``_``, ``.``.
    weights : ``torch.save`` output of the state dict.
    metadata : JSON-serialisable facts (classes, preprocessing, metrics, features version,
        code version ...). ``name``, ``version``, ``published_at`` (UTC, ISO 8601) and
        ``idempotency_key`` are set by this function, replacing any given.
    torchscript : optional TorchScript export.
    idempotency_key : identifies the run that publishes (e.g. the training run id plus the
        features' Delta version). If a committed version of ``name`` already carries it,
        that version is returned and nothing is written, so a rerun adds no version; only
        ``latest`` is moved forward to it if a crash left it behind.

    Raises
    ------
    ConfigError
        an invalid model name.
    TypeError, ValueError
        weights or torchscript not bytes, empty weights or key, metadata not JSON-serialisable.
    """
    model = _model_uri(registry_root, name)
    if not isinstance(weights, (bytes, bytearray, memoryview)) or not len(weights):
        raise ValueError(f"publish({name!r}): weights must be the non-empty bytes of torch.save(state_dict)")
    if torchscript is not None and not isinstance(torchscript, (bytes, bytearray, memoryview)):
        raise TypeError(f"publish({name!r}): torchscript must be bytes or None, got {type(torchscript).__name__}")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"publish({name!r}): metadata must be a mapping, got {type(metadata).__name__}")
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key):
        raise ValueError(f"publish({name!r}): idempotency_key must be a non-empty string or None")

    if idempotency_key is not None:
        found = find_by_idempotency_key(registry_root, name, idempotency_key, hadoop_conf)
        if found is not None:
            return found

    committed = list_versions(registry_root, name, hadoop_conf)
    version = committed[-1] + 1 if committed else 1
    folder = f"{model}/{version}"
    # Only an uncommitted leftover can sit here (the number is above every committed one).
    lakefs.delete_dir(folder, hadoop_conf)
    meta = dict(metadata)
    meta.update(
        name=name,
        version=version,
        published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        idempotency_key=idempotency_key,
    )
    try:
        meta_bytes = json.dumps(meta, indent=2, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"publish({name!r}): metadata is not JSON-serialisable ({exc}); convert numpy/torch values "
            f"with float(), int() or .tolist() first"
        ) from None

    files = {WEIGHTS_FILE: bytes(weights), METADATA_FILE: meta_bytes}
    if torchscript is not None:
        files[TORCHSCRIPT_FILE] = bytes(torchscript)
    for filename, data in files.items():
        lakefs.write_bytes_atomic(f"{folder}/{filename}", data, hadoop_conf)
    record = {
        "name": name,
        "version": version,
        "published_at": meta["published_at"],
        "files": {f: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for f, d in files.items()},
    }
    lakefs.write_bytes_atomic(f"{folder}/{COMMITTED_FILE}", json.dumps(record, indent=2).encode("utf-8"), hadoop_conf)
    _write_alias(model, LATEST, version, hadoop_conf)
    return ModelVersion(name=name, version=version, uri=folder)


def set_alias(
    registry_root: str,
    name: str,
    alias: str,
    version: int,
    hadoop_conf: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Point ``alias`` (e.g. ``production``) of model ``name`` at a committed ``version``.

    Raises
    ------
    ConfigError
        an invalid alias, or ``latest`` (only :func:`publish` moves it).
    ModelNotFound
        ``version`` is not committed.
    """
    _check_alias(alias)
    if alias == LATEST:
        raise ConfigError(
            f"alias {LATEST!r} of model {name!r} is moved by publish only; pick another alias name "
            f"(e.g. {PRODUCTION!r}) to pin a version"
        )
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"set_alias({name!r}, {alias!r}): version must be a whole number, got {version!r}")
    target = resolve(registry_root, name, version, hadoop_conf)
    _write_alias(_model_uri(registry_root, name), alias, target.version, hadoop_conf)
    return target


# --------------------------------------------------------------------------- references


def parse_model_ref(text: str) -> tuple[str, str]:
    """Split a model reference into ``(name, ref)``.

    ``"digits_lenet"`` -> ``("digits_lenet", "latest")``, ``"digits_lenet:3"`` ->
    ``("digits_lenet", "3")``, ``"digits_lenet@production"`` -> ``("digits_lenet", "production")``.

    Raises
    ------
    ConfigError
        anything else; the message shows the three forms.
    """
    forms = "write NAME, NAME:VERSION or NAME@ALIAS, e.g. digits_lenet, digits_lenet:3 or digits_lenet@production"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"model reference {text!r} is empty; {forms}")
    text = text.strip()
    at, colon = "@" in text, ":" in text
    if at and colon:
        raise ConfigError(f"model reference {text!r} has both ':' and '@'; {forms}")
    if colon:
        name, _, ref = text.partition(":")
        if not _VERSION_DIR.match(ref):
            raise ConfigError(f"model reference {text!r}: {ref!r} after ':' is not a version number; {forms}")
    elif at:
        name, _, ref = text.partition("@")
        try:
            _check_alias(ref)
        except ConfigError as exc:
            raise ConfigError(f"model reference {text!r}: {exc}; {forms}") from None
    else:
        name, ref = text, LATEST
    try:
        _check_name(name)
    except ConfigError as exc:
        raise ConfigError(f"model reference {text!r}: {exc}; {forms}") from None
    return name, ref

"""The model registry in the lake: numbered, never-overwritten model versions plus aliases.

Layout under a registry root (``<lake_root>/models``, :attr:`lakeloop.layout.LakeLayout.registry`)::

    <root>/<name>/<version>/weights.pt             torch.save of a state dict (bytes)
                           /model.torchscript.pt   optional TorchScript export (bytes)
                           /metadata.json          caller's metadata + name, version, published_at, idempotency_key
                           /_COMMITTED             written last: the version exists from then on
    <root>/<name>/latest                           {"version": N}, moved by publish after _COMMITTED
    <root>/<name>/production                       {"version": N}, moved by set_alias (any alias works alike)
    <root>/<name>/_alias_log.json                  every move of an alias but latest: who, when, why, from which version

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.errors import ConfigError, ModelNotFound, SourceError
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import LATEST, PRODUCTION, LakeLayout, check_alias, check_model_name, is_version_number

if TYPE_CHECKING:
    from lakeloop.config import Profile

WEIGHTS_FILE = "weights.pt"
TORCHSCRIPT_FILE = "model.torchscript.pt"
METADATA_FILE = "metadata.json"
COMMITTED_FILE = "_COMMITTED"
ALIAS_LOG_FILE = "_alias_log.json"
__all__ = ["LATEST", "PRODUCTION", "ModelVersion", "Registry"]


@dataclass(frozen=True)
class ModelVersion:
    """One committed model version; ``uri`` is its folder."""

    name: str
    version: int
    uri: str


@dataclass(frozen=True)
class Registry:
    """The registry under ``root``, reached with ``files`` (the lake's Hadoop settings, bound once).

    ``Registry.for_profile(profile)`` is the registry of a profile's lake. Plain data: it
    pickles into scoring workers and training processes.
    """

    root: str
    files: LakeFiles = field(default_factory=LakeFiles)

    def __post_init__(self) -> None:
        if not isinstance(self.root, str) or not self.root:
            raise ConfigError(f"registry root {self.root!r} must be a URI such as 'file:/data/lake/models'")
        stripped = self.root.rstrip("/")
        # A root at "/" keeps one slash: "file:" alone would be a relative path.
        object.__setattr__(self, "root", stripped if not stripped.endswith(":") else stripped + "/")

    @classmethod
    def for_profile(cls, profile: "Profile") -> "Registry":
        """The registry of the profile's lake (``<lake_root>/models``), with its storage settings."""
        return cls(LakeLayout(profile.lake_root).registry, LakeFiles(profile.hadoop_conf()))

    # ------------------------------------------------------------------ paths

    def model_uri(self, name: str) -> str:
        """Folder of model ``name`` (its versions and alias files)."""
        return f"{self.root}{'' if self.root.endswith('/') else '/'}{check_model_name(name)}"

    def version_uri(self, name: str, version: int) -> str:
        """Folder of ``version`` of model ``name``, committed or not."""
        return f"{self.model_uri(name)}/{int(version)}"

    def _version(self, name: str, version: int) -> ModelVersion:
        return ModelVersion(name=name, version=version, uri=self.version_uri(name, version))

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[str]:
        """Names of the models that have at least one folder, sorted."""
        return [n for n in self.files.list_dir(self.root) if _is_name(n)]

    def list_versions(self, name: str) -> list[int]:
        """Committed versions of model ``name``, ascending; ``[]`` for an unknown model.

        Version folders without ``_COMMITTED`` (crashed publishes) are not listed.
        """
        numbers = sorted(int(child) for child in self.files.list_dir(self.model_uri(name))
                         if is_version_number(child))
        return [n for n in numbers if self.files.exists(f"{self.version_uri(name, n)}/{COMMITTED_FILE}")]

    def _read_alias(self, name: str, alias: str) -> int | None:
        uri = f"{self.model_uri(name)}/{alias}"
        try:
            raw = self.files.read_bytes(uri)
        except (FileNotFoundError, IsADirectoryError):
            return None
        try:
            version = json.loads(raw.decode("utf-8"))["version"]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ValueError(version)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise SourceError(
                f"alias file {uri} is not of the form {{\"version\": N}}; point it again with "
                f"Registry.set_alias({name!r}, {alias!r}, N)"
            ) from None
        return version

    def list_aliases(self, name: str) -> dict[str, int]:
        """Aliases of model ``name`` and the versions they point to, e.g. ``{"latest": 3, "production": 2}``."""
        aliases = {}
        for child in self.files.list_dir(self.model_uri(name)):
            if _is_name(child) and not child.isdigit():
                try:
                    version = self._read_alias(name, child)
                except (SourceError, OSError):
                    continue  # not an alias file (or a folder); resolve() reports it when asked for by name
                if version is not None:
                    aliases[child] = version
        return aliases

    def leftover_versions(self, name: str) -> list[int]:
        """Version folders of ``name`` without ``_COMMITTED`` below the highest committed version:
        crashed publishes that no publish will reuse (one above it may be a publish under way)."""
        committed = self.list_versions(name)
        if not committed:
            return []
        numbers = [int(c) for c in self.files.list_dir(self.model_uri(name)) if is_version_number(c)]
        return sorted(n for n in numbers if n < committed[-1] and n not in committed)

    def drop_leftover(self, name: str, version: int) -> None:
        """Delete an uncommitted version folder found by :meth:`leftover_versions` (never a committed one)."""
        if version not in self.leftover_versions(name):
            raise ConfigError(f"{self.version_uri(name, version)} is not an uncommitted leftover; nothing deleted")
        self.files.delete_dir(self.version_uri(name, version))

    def _not_found(self, name: str, what: str) -> ModelNotFound:
        versions = self.list_versions(name)
        if not versions:
            return ModelNotFound(
                f"model {name!r} has no committed version under {self.root}"
                f"{' (asked for ' + what + ')' if what else ''}. Models there: "
                f"{', '.join(self.list_models()) or 'none'}; train and publish it first, or check "
                f"train.model_name and the lake root."
            )
        shown = ", ".join(f"{a} -> {v}" for a, v in sorted(self.list_aliases(name).items())) or "none"
        return ModelNotFound(
            f"model {name!r} has no {what} under {self.root}. Committed versions: "
            f"{', '.join(map(str, versions))}; aliases: {shown}. Ask for one of them, e.g. "
            f"{name}:{versions[-1]} or {name}@{LATEST}."
        )

    def resolve(self, name: str, ref: str | int = LATEST) -> ModelVersion:
        """The committed version of model ``name`` that ``ref`` designates.

        Parameters
        ----------
        name : model name.
        ref : a version number (``3`` or ``"3"``), ``"latest"``, ``"production"`` or any other
            alias set with :meth:`set_alias`. Should the ``latest`` file be missing (a publish
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
        check_model_name(name)
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise ConfigError(f"model ref {ref!r} for {name!r} must be a version number or an alias name")
        if isinstance(ref, int) or ref.isdigit():
            version: int | None = int(ref)
            what = f"version {version}"
        else:
            alias = check_alias(ref)
            what = f"alias {alias!r}"
            version = self._read_alias(name, alias)
            if version is None and alias == LATEST:
                committed = self.list_versions(name)
                version = committed[-1] if committed else None
            if version is None:
                raise self._not_found(name, what)
            what = f"{what} -> version {version} (the alias points to a version that is not committed)"
        if version < 1 or not self.files.exists(f"{self.version_uri(name, version)}/{COMMITTED_FILE}"):
            raise self._not_found(name, what)
        return self._version(name, version)

    def _commit_record(self, version: ModelVersion) -> dict[str, Any]:
        uri = f"{version.uri}/{COMMITTED_FILE}"
        try:
            raw = self.files.read_bytes(uri)
        except FileNotFoundError:
            raise ModelNotFound(
                f"{version.uri} is not a committed version of model {version.name!r} (no {COMMITTED_FILE}); "
                f"get versions from Registry.resolve(...) rather than building them by hand"
            ) from None
        try:
            record = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            record = {}
        return record if isinstance(record, dict) else {}

    def _read_checked(self, version: ModelVersion, filename: str) -> bytes | None:
        """A file of a committed version, checked against the checksum recorded at commit."""
        expected = self._commit_record(version).get("files")
        if isinstance(expected, dict) and filename not in expected:
            return None
        uri = f"{version.uri}/{filename}"
        try:
            data = self.files.read_bytes(uri)
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

    def _read_required(self, version: ModelVersion, filename: str) -> bytes:
        data = self._read_checked(version, filename)
        if data is None:
            raise SourceError(f"{version.uri}/{filename} is missing; publish the model again (a new version).")
        return data

    def read_metadata(self, version: ModelVersion) -> dict[str, Any]:
        """The ``metadata.json`` of a committed version.

        Raises
        ------
        ModelNotFound
            ``version`` is not committed.
        SourceError
            the file is missing or altered since publishing.
        """
        return json.loads(self._read_required(version, METADATA_FILE).decode("utf-8"))

    def read_weights(self, version: ModelVersion) -> bytes:
        """The ``weights.pt`` bytes of a committed version (a ``torch.save`` of its state dict);
        raises as :meth:`read_metadata` does."""
        return self._read_required(version, WEIGHTS_FILE)

    def read_torchscript(self, version: ModelVersion) -> bytes | None:
        """The TorchScript export of a committed version, or ``None`` when it was published without one."""
        return self._read_checked(version, TORCHSCRIPT_FILE)

    # ------------------------------------------------------------------ writing

    def _write_alias(self, name: str, alias: str, version: int) -> None:
        self.files.write_bytes_atomic(f"{self.model_uri(name)}/{alias}",
                                      json.dumps({"version": version}).encode("utf-8"))

    def find_by_idempotency_key(self, name: str, idempotency_key: str) -> ModelVersion | None:
        """The committed version of ``name`` published with ``idempotency_key``, or ``None``.

        A job calls this before training to skip work already published. If a crash after
        ``_COMMITTED`` left ``latest`` behind the version found, ``latest`` is moved forward
        to it, so the rerun leaves the registry as one clean run would; otherwise nothing is
        written.
        """
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise ValueError(f"find_by_idempotency_key({name!r}): the key must be a non-empty string")
        # Newest first: a rerun most often repeats the last publish.
        for number in reversed(self.list_versions(name)):
            candidate = self._version(name, number)
            try:
                if self.read_metadata(candidate).get("idempotency_key") != idempotency_key:
                    continue
            except (SourceError, ValueError):
                continue  # an altered version cannot be the one this run published
            current = self._read_alias(name, LATEST)
            if current is None or current < number:
                self._write_alias(name, LATEST, number)
            return candidate
        return None

    def publish(
        self,
        name: str,
        weights: bytes,
        metadata: Mapping[str, Any],
        torchscript: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> ModelVersion:
        """Publish a new version of model ``name`` and point ``latest`` at it.

        Writes ``weights.pt``, ``model.torchscript.pt`` (if given), ``metadata.json``, then
        ``_COMMITTED`` (with the files' SHA-256), then the ``latest`` alias. The version is
        the highest committed one plus one; an uncommitted leftover of that number is cleared
        first.

        Parameters
        ----------
        name : model name: letters, digits, ``-``, ``_``, ``.``.
        weights : ``torch.save`` output of the state dict.
        metadata : JSON-serialisable facts (classes, preprocessing, metrics, features version,
            code version ...). ``name``, ``version``, ``published_at`` (UTC, ISO 8601) and
            ``idempotency_key`` are set by this method, replacing any given.
        torchscript : optional TorchScript export.
        idempotency_key : identifies the run that publishes (the training key). If a committed
            version of ``name`` already carries it, that version is returned and nothing is
            written, so a rerun adds no version; only ``latest`` is moved forward to it if a
            crash left it behind.

        Raises
        ------
        ConfigError
            an invalid model name.
        TypeError, ValueError
            weights or torchscript not bytes, empty weights or key, metadata not JSON-serialisable.
        """
        check_model_name(name)
        _check_publish_arguments(name, weights, metadata, torchscript, idempotency_key)
        if idempotency_key is not None:
            found = self.find_by_idempotency_key(name, idempotency_key)
            if found is not None:
                return found
        committed = self.list_versions(name)
        version = self._version(name, committed[-1] + 1 if committed else 1)
        # Only an uncommitted leftover can sit here (the number is above every committed one).
        self.files.delete_dir(version.uri)
        meta = dict(metadata)
        meta.update(name=name, version=version.version, idempotency_key=idempotency_key,
                    published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        files = {WEIGHTS_FILE: bytes(weights), METADATA_FILE: _metadata_bytes(name, meta)}
        if torchscript is not None:
            files[TORCHSCRIPT_FILE] = bytes(torchscript)
        for filename, data in files.items():
            self.files.write_bytes_atomic(f"{version.uri}/{filename}", data)
        record = {
            "name": name,
            "version": version.version,
            "published_at": meta["published_at"],
            "files": {f: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for f, d in files.items()},
        }
        self.files.write_bytes_atomic(f"{version.uri}/{COMMITTED_FILE}", json.dumps(record, indent=2).encode("utf-8"))
        self._write_alias(name, LATEST, version.version)
        return version

    def set_alias(self, name: str, alias: str, version: int, *, action: str = "set", reason: str | None = None,
                  actor: str | None = None, forced: bool = False,
                  evidence: Mapping[str, Any] | None = None) -> ModelVersion:
        """Point ``alias`` (e.g. ``production``) of model ``name`` at a committed ``version``, and record
        the move in the model's alias log (``action``, ``reason``, ``actor``, ``forced``, ``evidence``:
        what the caller wants kept with it, such as a promotion's comparison).

        The log entry is written before the alias, so no move goes unrecorded; an entry whose move a
        crash then prevented is recognisable, since the alias does not point at its version.

        Raises
        ------
        ConfigError
            an invalid alias, or ``latest`` (only :meth:`publish` moves it).
        ModelNotFound
            ``version`` is not committed.
        """
        check_alias(alias)
        if alias == LATEST:
            raise ConfigError(
                f"alias {LATEST!r} of model {name!r} is moved by publish only; pick another alias name "
                f"(e.g. {PRODUCTION!r}) to pin a version"
            )
        if isinstance(version, bool) or not isinstance(version, int):
            raise ConfigError(f"set_alias({name!r}, {alias!r}): version must be a whole number, got {version!r}")
        target = self.resolve(name, version)
        entry = {"alias": alias, "version": target.version, "previous": self._read_alias(name, alias),
                 "action": action, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "by": actor, "reason": reason, "forced": forced, "evidence": dict(evidence or {})}
        log = self.alias_log(name)
        self.files.write_bytes_atomic(f"{self.model_uri(name)}/{ALIAS_LOG_FILE}",
                                      json.dumps([*log, entry], indent=2).encode("utf-8"))
        self._write_alias(name, alias, target.version)
        return target

    def alias_log(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        """The recorded moves of the aliases of model ``name`` (of ``alias`` only, if given), oldest first.

        Raises
        ------
        SourceError
            the log file is not a JSON list.
        """
        uri = f"{self.model_uri(name)}/{ALIAS_LOG_FILE}"
        try:
            entries = json.loads(self.files.read_bytes(uri).decode("utf-8"))
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError):
            entries = None
        if not isinstance(entries, list):
            raise SourceError(f"{uri} is not a JSON list of alias moves; restore it from the lake's backup or "
                              f"remove it (the aliases themselves stay as they are)")
        return [e for e in entries if isinstance(e, dict) and (alias is None or e.get("alias") == alias)]


def _is_name(text: str) -> bool:
    try:
        check_model_name(text)
    except ConfigError:
        return False
    return True


def _check_publish_arguments(name: str, weights: Any, metadata: Any, torchscript: Any, key: Any) -> None:
    if not isinstance(weights, (bytes, bytearray, memoryview)) or not len(weights):
        raise ValueError(f"publish({name!r}): weights must be the non-empty bytes of torch.save(state_dict)")
    if torchscript is not None and not isinstance(torchscript, (bytes, bytearray, memoryview)):
        raise TypeError(f"publish({name!r}): torchscript must be bytes or None, got {type(torchscript).__name__}")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"publish({name!r}): metadata must be a mapping, got {type(metadata).__name__}")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"publish({name!r}): idempotency_key must be a non-empty string or None")


def _metadata_bytes(name: str, metadata: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(metadata, indent=2, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"publish({name!r}): metadata is not JSON-serialisable ({exc}); convert numpy/torch values "
            f"with float(), int() or .tolist() first"
        ) from None

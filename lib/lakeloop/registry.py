"""The model registry in the lake: numbered, never-overwritten model versions plus aliases.

Layout under a registry root (``<lake_root>/models``, :attr:`lakeloop.layout.LakeLayout.registry`)::

    <root>/<name>/<version>/weights.pt             torch.save of a state dict (bytes)
                           /model.torchscript.pt   optional TorchScript export (bytes)
                           /metadata.json          caller's metadata + name, version, published_at, idempotency_key
                           /_COMMITTED             written last: the version exists from then on
    <root>/<name>/latest                           {"version": N}, moved by publish after _COMMITTED
    <root>/<name>/production                       {"version": N}, moved by set_alias (any alias works alike)
    <root>/<name>/_alias_log.json                  every move of an alias but latest: who, when, why, from which version
    <root>/<name>/_claims/<version>/<token>        who claimed a version number (one file per publisher that tried)
    <root>/<name>/_staging/<run id>/weights.pt     weights a training process wrote, moved into a version on publish

Any number of readers and publishers may work at once, on every store lakeloop reaches
(local disks, HDFS, S3). A publisher first claims a version number: it writes a file of its
own under ``_claims/<N>/`` and lists that folder; it owns ``N`` only if its file is alone
there, else it removes its file and tries the next free number (a number two publishers
fought over may stay unused), so two publishers never write one folder (listings are
strongly consistent on all three stores, S3 included). Only the owner of ``N`` writes
``<name>/N/``, and no publish ever deletes a version folder.

A version folder without ``_COMMITTED`` is a publish under way or the leftover of a crashed
one: readers ignore it, the next publish takes a higher number, and
:meth:`Registry.drop_leftover` removes it once a higher version is committed. A committed
version is never written again. This module moves bytes only; building an ``nn.Module``
from them is the loader's job, so importing it costs no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.errors import ConcurrentWriteConflict, ConfigError, ModelNotFound, SourceError
from lakeloop.io.lakefs import LakeFiles
from lakeloop.layout import LATEST, PRODUCTION, LakeLayout, check_alias, check_model_name, is_version_number

if TYPE_CHECKING:
    from lakeloop.config import Profile

WEIGHTS_FILE = "weights.pt"
TORCHSCRIPT_FILE = "model.torchscript.pt"
METADATA_FILE = "metadata.json"
ERASURES_FILE = "erasures.json"  # records erased from the lake that the version saw (lakeloop forget)
COMMITTED_FILE = "_COMMITTED"
ALIAS_LOG_FILE = "_alias_log.json"
CLAIMS_DIR = "_claims"
STAGING_DIR = "_staging"
# How often a publisher that finds another claiming its number tries the next one before giving up.
CLAIM_ATTEMPTS = 8
__all__ = ["LATEST", "PRODUCTION", "ModelVersion", "Registry", "StagedFile"]


@dataclass(frozen=True)
class ModelVersion:
    """One committed model version; ``uri`` is its folder."""

    name: str
    version: int
    uri: str


@dataclass(frozen=True)
class StagedFile:
    """A file written into the registry's staging area (:meth:`Registry.staging_uri`) by the process
    that made it, with the SHA-256 and size it wrote; :meth:`Registry.publish` moves it into the
    version and checks both."""

    uri: str
    sha256: str
    bytes: int


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

    def staging_uri(self, name: str, run_id: str) -> str:
        """Folder where run ``run_id`` writes the files it will publish as a version of ``name`` (one
        folder per run, so no two runs write the same file)."""
        if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith("."):
            raise ConfigError(f"staging_uri({name!r}, {run_id!r}): the run id must be a non-empty name without '/'")
        return f"{self.model_uri(name)}/{STAGING_DIR}/{run_id}"

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

    def erasures(self, version: ModelVersion) -> list[dict[str, Any]]:
        """The records erased from the lake (``lakeloop forget``) that this version was trained,
        validated or tested on, each with when and by which run; [] when none."""
        uri = f"{version.uri}/{ERASURES_FILE}"
        return json.loads(self.files.read_bytes(uri).decode("utf-8")) if self.files.exists(uri) else []

    # ------------------------------------------------------------------ writing

    def mark_erasure(self, version: ModelVersion, entry: dict[str, Any]) -> None:
        """Add ``entry`` (the erased record, its splits, when, which run) to the version's
        ``erasures.json``: its weights may still hold what it learned from the record. Outside the
        version's checksummed files, so the version still loads; an entry already there is not added twice."""
        marks = self.erasures(version)
        if entry not in marks:
            self.files.write_bytes_atomic(f"{version.uri}/{ERASURES_FILE}",
                                          json.dumps([*marks, entry], indent=2, sort_keys=True).encode("utf-8"))

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
        weights: "bytes | StagedFile",
        metadata: Mapping[str, Any],
        torchscript: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> ModelVersion:
        """Publish a new version of model ``name`` and point ``latest`` at it.

        Claims the next free version number (see the module's notes: two publishers at once get
        two numbers), then writes ``weights.pt``, ``model.torchscript.pt`` (if given),
        ``metadata.json``, then ``_COMMITTED`` (with the files' SHA-256), then moves ``latest``
        forward. No existing folder is cleared or written: a number whose folder exists
        (committed, in progress or a crash's leftover) is never taken again.

        Parameters
        ----------
        name : model name: letters, digits, ``-``, ``_``, ``.``.
        weights : ``torch.save`` output of the state dict, or a :class:`StagedFile` written under
            :meth:`staging_uri` (moved into the version, not read into memory; its SHA-256 and size
            are checked).
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
        SourceError
            a staged weights file whose SHA-256 or size is not the one it was staged with.
        ConcurrentWriteConflict
            other publishers of ``name`` took every number this one tried (:data:`CLAIM_ATTEMPTS`);
            nothing was written: run the job again.
        """
        check_model_name(name)
        _check_publish_arguments(name, weights, metadata, torchscript, idempotency_key)
        if idempotency_key is not None:
            found = self.find_by_idempotency_key(name, idempotency_key)
            if found is not None:
                return found
        number, claim = self._claim_version(name, idempotency_key)
        if idempotency_key is not None:
            # A run with the same key (the same inputs) may have committed while this one claimed.
            found = self.find_by_idempotency_key(name, idempotency_key)
            if found is not None:
                self.files.delete_file(claim)  # this run's own claim: the number is free again
                return found
        version = self._version(name, number)
        meta = dict(metadata)
        meta.update(name=name, version=version.version, idempotency_key=idempotency_key,
                    published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        files = {METADATA_FILE: _metadata_bytes(name, meta)}
        if torchscript is not None:
            files[TORCHSCRIPT_FILE] = bytes(torchscript)
        recorded = {WEIGHTS_FILE: self._place_weights(version, weights)}
        for filename, data in files.items():
            self.files.write_bytes_atomic(f"{version.uri}/{filename}", data)
            recorded[filename] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        record = {"name": name, "version": version.version, "published_at": meta["published_at"], "files": recorded}
        self.files.write_bytes_atomic(f"{version.uri}/{COMMITTED_FILE}", json.dumps(record, indent=2).encode("utf-8"))
        self._move_latest(name, version.version)
        return version

    def _place_weights(self, version: ModelVersion, weights: "bytes | StagedFile") -> dict[str, Any]:
        """Write (or move, when staged) the weights into ``version``'s folder; their ``bytes`` and ``sha256``."""
        target = f"{version.uri}/{WEIGHTS_FILE}"
        if not isinstance(weights, StagedFile):
            data = bytes(weights)
            self.files.write_bytes_atomic(target, data)
            return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.files.move(weights.uri, target)
        sha256, size = self.files.digest(target)
        if (sha256, size) != (weights.sha256, weights.bytes):
            raise SourceError(
                f"the staged weights {weights.uri} changed after they were written: {size} bytes with sha256 "
                f"{sha256}, staged as {weights.bytes} bytes with sha256 {weights.sha256}; {version.name} version "
                f"{version.version} is left uncommitted. Train again."
            )
        return {"bytes": size, "sha256": sha256}

    def _claim_version(self, name: str, idempotency_key: str | None) -> tuple[int, str]:
        """The version number this publisher owns, and its claim file.

        Writes a claim file of its own under ``_claims/<N>/`` and lists the folder: alone there, it
        owns ``N``; with another's file beside it, it removes its own, waits a moment (random, so
        two publishers fall out of step) and tries the next free number.
        """
        token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        record = json.dumps({"claimed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                             "host": socket.gethostname(), "pid": os.getpid(),
                             "idempotency_key": idempotency_key}).encode("utf-8")
        tried = []
        for attempt in range(CLAIM_ATTEMPTS):
            number = self._next_free_number(name)
            slot = f"{self.model_uri(name)}/{CLAIMS_DIR}/{number}"
            self.files.write_bytes_atomic(f"{slot}/{token}", record)
            if _visible(self.files.list_dir(slot)) == [token]:
                return number, f"{slot}/{token}"
            self.files.delete_file(f"{slot}/{token}")
            tried.append(number)
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise ConcurrentWriteConflict(
            f"another publisher of model {name!r} under {self.root} claimed each version number this run tried "
            f"({', '.join(map(str, tried))}); nothing was published. Run the job again: it publishes the "
            f"next free version (a run with the same inputs finds the other's version and publishes none)."
        )

    def _next_free_number(self, name: str) -> int:
        """One above every version folder and every number a publisher holds a claim on."""
        children = self.files.list_dir(self.model_uri(name))
        highest = max((int(c) for c in children if is_version_number(c)), default=0)
        claims = f"{self.model_uri(name)}/{CLAIMS_DIR}"
        for number in sorted((int(c) for c in self.files.list_dir(claims) if is_version_number(c)), reverse=True):
            if number <= highest:
                break
            if _visible(self.files.list_dir(f"{claims}/{number}")):
                highest = number
                break
        return highest + 1

    def _move_latest(self, name: str, version: int) -> None:
        """Point ``latest`` at ``version`` unless it points higher; then, should a publisher that
        committed a higher version have written before this one, point it at the highest again."""
        if (self._current_latest(name) or 0) < version:
            self._write_alias(name, LATEST, version)
        highest = self.list_versions(name)[-1]
        if highest > version and self._current_latest(name) != highest:
            self._write_alias(name, LATEST, highest)

    def _current_latest(self, name: str) -> int | None:
        try:
            return self._read_alias(name, LATEST)
        except SourceError:
            return None  # a damaged pointer: publish rewrites it

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


def _visible(names: list[str]) -> list[str]:
    """Names in a listing but the hidden ones (an atomic write's temporary file)."""
    return [n for n in names if not n.startswith(".")]


def _check_publish_arguments(name: str, weights: Any, metadata: Any, torchscript: Any, key: Any) -> None:
    if isinstance(weights, StagedFile):
        if not weights.bytes:
            raise ValueError(f"publish({name!r}): the staged weights {weights.uri} are empty")
    elif not isinstance(weights, (bytes, bytearray, memoryview)) or not len(weights):
        raise ValueError(f"publish({name!r}): weights must be the non-empty bytes of torch.save(state_dict) "
                         f"or a StagedFile")
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

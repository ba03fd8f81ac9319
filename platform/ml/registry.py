"""The model registry: a deterministic manifest of trained ONNX models, plus the default versions.

Two files in the model directory:

* ``registry.json``: for each (name, version): family, file, sha256, opset, input and output
  schema, held-out metrics, the training-data hash and the training parameters. Sorted, with
  no timestamps, so training twice writes the same bytes.
* ``defaults.json``: the version each model serves when a caller names none. It is the only
  mutable file; :func:`promote` rewrites it atomically (write + ``os.replace``), and every
  reader re-reads it when its mtime changes, so a promotion reaches all replicas and clients
  on their next request with no restart.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import msgspec

from eventray.platform._files import atomic_write
from eventray.platform.errors import UnknownModel, UnknownModelVersion

MANIFEST = "registry.json"
DEFAULTS = "defaults.json"


class TensorSpec(msgspec.Struct, frozen=True):
    name: str
    type: str  #: onnx element type name, e.g. "float", "int64", "string"
    shape: list[int | str]


class Component(msgspec.Struct, frozen=True, kw_only=True):
    """One file of a model made of several (OCR's detector and recognizer, MTCNN's three nets)."""

    role: str
    file: str  #: relative to the model directory
    sha256: str
    source: str  #: where the file came from: ``distribution==version:path/in/the/package``


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One trained or imported model version, as listed in ``registry.json``.

    The fields after ``params`` came later and have defaults, so older manifests still decode.
    """

    name: str
    version: str
    family: str
    file: str  #: relative to the model directory
    sha256: str
    opset: dict[str, int]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metrics: dict[str, float]
    training_data_sha256: str
    params: dict[str, Any] = {}
    #: what the model or its training data is, and from which package and version
    source: str = ""
    #: the licence of the weights and of the data they were trained on, as the package states it
    licence: str = ""
    #: what runs it: "onnxruntime", or "spacy" for the entity recognizer (not ONNX)
    runtime: str = "onnxruntime"
    #: every file of a multi-file model, each with its own sha256 (``file`` is the first)
    components: list[Component] = []


class Manifest(msgspec.Struct, frozen=True):
    format: int = 1
    models: list[ModelRecord] = []


_encoder = msgspec.json.Encoder(order="deterministic")
_manifest_decoder = msgspec.json.Decoder(Manifest)


def write_manifest(model_dir: Path, records: list[ModelRecord]) -> Path:
    """Write ``registry.json`` with ``records`` sorted by (name, version)."""
    ordered = sorted(records, key=lambda r: (r.name, _version_key(r.version)))
    path = Path(model_dir) / MANIFEST
    atomic_write(path, msgspec.json.format(_encoder.encode(Manifest(models=ordered)), indent=2) + b"\n")
    return path


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def promote(model_dir: Path, name: str, version: str) -> None:
    """Make ``version`` the default of model ``name``; raises if either is not in the registry."""
    registry = Registry(model_dir)
    registry.record(name, version)  # validates
    defaults = dict(registry.defaults())
    defaults[name] = version
    atomic_write(Path(model_dir) / DEFAULTS, json.dumps(defaults, sort_keys=True, indent=2).encode() + b"\n")


def publish(model_dir: Path, records: list[ModelRecord], new: list[ModelRecord]) -> list[ModelRecord]:
    """Write the manifest of ``records`` and make each of ``new`` its model's default when it has
    none yet; returns ``new``."""
    write_manifest(model_dir, records)
    for record in new:
        set_default_if_missing(model_dir, record.name, record.version)
    return new


def set_default_if_missing(model_dir: Path, name: str, version: str) -> None:
    defaults = Registry(model_dir).defaults()
    if name not in defaults:
        promote(model_dir, name, version)


class Registry:
    """Reads the manifest and default versions, re-reading each file when its mtime changes.

    Cheap to call per request: one ``os.stat`` per file. Thread-safe.
    """

    def __init__(self, model_dir: Path | str) -> None:
        self.model_dir = Path(model_dir)
        self._lock = threading.Lock()
        self._manifest_stamp: tuple[int, int] | None = None
        self._records: dict[tuple[str, str], ModelRecord] = {}
        self._defaults_stamp: tuple[int, int] | None = None
        self._defaults: dict[str, str] = {}

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        with self._lock:
            stamp = self._stamp(self.model_dir / MANIFEST)
            if stamp != self._manifest_stamp:
                manifest = (_manifest_decoder.decode((self.model_dir / MANIFEST).read_bytes())
                            if stamp is not None else Manifest())
                self._records = {(r.name, r.version): r for r in manifest.models}
                self._manifest_stamp = stamp
            stamp = self._stamp(self.model_dir / DEFAULTS)
            if stamp != self._defaults_stamp:
                self._defaults = (json.loads((self.model_dir / DEFAULTS).read_text())
                                  if stamp is not None else {})
                self._defaults_stamp = stamp

    def records(self) -> list[ModelRecord]:
        """Every model version, sorted by name then version."""
        self._refresh()
        return sorted(self._records.values(), key=lambda r: (r.name, _version_key(r.version)))

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._snapshot()})

    def _snapshot(self) -> dict[tuple[str, str], ModelRecord]:
        self._refresh()
        return self._records

    def versions(self, name: str) -> list[str]:
        versions = sorted((v for n, v in self._snapshot() if n == name), key=_version_key)
        if not versions:
            raise UnknownModel(f"no model named {name!r} in the registry at {self.model_dir}; "
                               "run `eventray models train`", model=name)
        return versions

    def defaults(self) -> dict[str, str]:
        self._refresh()
        return dict(self._defaults)

    def default_version(self, name: str) -> str:
        self._refresh()
        version = self._defaults.get(name)
        if version is None:
            version = self.versions(name)[-1]
        return version

    def record(self, name: str, version: str | None = None) -> ModelRecord:
        """The record of ``name`` at ``version`` (the default version when None)."""
        version = version or self.default_version(name)
        record = self._snapshot().get((name, version))
        if record is None:
            known = self.versions(name)  # raises UnknownModel first when the name is unknown
            raise UnknownModelVersion(
                f"model {name!r} has no version {version!r}; known versions: {', '.join(known)}",
                model=name, version=version)
        return record

    def path(self, record: ModelRecord) -> Path:
        return self.model_dir / record.file

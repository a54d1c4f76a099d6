"""Vision services: OCR with RapidOCR (ONNX Runtime), detection with OpenCV Haar cascades."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...outputs import ImageOutput
from ..errors import ServiceUnavailableError
from ..node import NodeType, Port
from ._service import STUDIO_EXTRA, cached, import_module, lock_for, require_module

OCR_INSTALL = f"{STUDIO_EXTRA} && pip install --no-deps rapidocr-onnxruntime==1.4.4"


class TextRecognition(NodeType):
    """Read the text in an image with RapidOCR (PP-OCRv4 models shipped in ``rapidocr-onnxruntime``)."""

    name = "vision.ocr"
    description = "Read text in an image (RapidOCR, ONNX Runtime)."
    inputs = {"image": Port("image")}
    outputs = {
        "text": Port("text", description="the lines read, top to bottom, formatted by `template`"),
        "lines": Port("json", description="[{text, score, box}] with box = 4 corner points"),
    }

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        min_score: float = Field(0.6, ge=0, le=1, description="drop lines read with less confidence")
        template: str = Field("{text}", description="how to phrase the result; {text} is the lines joined by `separator`")
        separator: str = " "
        empty: str = Field("", description="the text output when nothing is read")

    def check(self) -> None:
        require_module("cv2", self.name, "OpenCV (opencv-python-headless)")
        require_module("onnxruntime", self.name, "ONNX Runtime")
        require_module("rapidocr_onnxruntime", self.name, "RapidOCR (rapidocr-onnxruntime)", OCR_INSTALL)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        def load() -> Any:
            import_module("cv2")
            return import_module("rapidocr_onnxruntime").RapidOCR()

        engine = cached("rapidocr", load)
        bgr = np.ascontiguousarray(inputs["image"].array[..., ::-1])
        with lock_for("rapidocr"):
            found, _ = engine(bgr)
        lines = []
        for box, text, score in found or []:
            if float(score) >= self.params.min_score and text.strip():
                lines.append({"text": text.strip(), "score": round(float(score), 4), "box": [[float(x), float(y)] for x, y in box]})
        lines.sort(key=lambda line: (min(p[1] for p in line["box"]), min(p[0] for p in line["box"])))
        joined = self.params.separator.join(line["text"] for line in lines)
        return {"text": self.params.template.format(text=joined) if lines else self.params.empty, "lines": lines}


def cascade_path(cascade: str) -> str:
    """The file of an OpenCV Haar cascade by short name (``frontalface_default``) or path."""
    if os.path.isfile(cascade):
        return cascade
    cv2 = import_module("cv2")
    folder = cv2.data.haarcascades
    path = os.path.join(folder, f"haarcascade_{cascade}.xml")
    if not os.path.isfile(path):
        names = sorted(f[len("haarcascade_"):-4] for f in os.listdir(folder) if f.startswith("haarcascade_"))
        raise ServiceUnavailableError(f"vision.detect: no Haar cascade {cascade!r}; available: {', '.join(names)}")
    return path


class HaarDetection(NodeType):
    """Detect faces (or eyes, bodies, cat faces, ...) with the Haar cascades shipped in OpenCV."""

    name = "vision.detect"
    description = "Detect objects with an OpenCV Haar cascade (faces by default)."
    inputs = {"image": Port("image")}
    outputs = {
        "count": Port("number"),
        "boxes": Port("json", description="[[x, y, width, height], ...] in pixels"),
        "text": Port("text", description="a sentence saying what was found, e.g. 'The image shows 1 face.'"),
        "annotated": Port("image", description="the input with a box drawn around each detection"),
    }

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        cascade: str = Field("frontalface_default", description="cascade short name (cv2.data.haarcascades) or file")
        label: str = Field("face", description="what one detection is called in the sentence")
        plural: str | None = Field(None, description="plural of label (default: label + 's')")
        scale_factor: float = Field(1.1, gt=1.0)
        min_neighbors: int = Field(5, ge=0)
        min_size: int = Field(30, ge=1, description="smallest detection side, pixels")

    def check(self) -> None:
        require_module("cv2", self.name, "OpenCV (opencv-python-headless<5)")
        cascade_path(self.params.cascade)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        cv2 = import_module("cv2")
        p = self.params
        path = cascade_path(p.cascade)
        classifier = cached(("haar", path), lambda: cv2.CascadeClassifier(path))
        rgb = inputs["image"].array
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        with lock_for(("haar", path)):
            found = classifier.detectMultiScale(gray, scaleFactor=p.scale_factor, minNeighbors=p.min_neighbors, minSize=(p.min_size, p.min_size))
        boxes = [[int(v) for v in box] for box in (found if len(found) else [])]
        annotated = np.ascontiguousarray(rgb.copy())
        for x, y, w, h in boxes:
            cv2.rectangle(annotated, (x, y), (x + w, y + h), (255, 0, 0), max(1, min(rgb.shape[:2]) // 150))
        n = len(boxes)
        noun = p.label if n == 1 else (p.plural or p.label + "s")
        text = f"The image shows {'no' if n == 0 else n} {noun}."
        return {"count": n, "boxes": boxes, "text": text, "annotated": ImageOutput("image", array=annotated)}

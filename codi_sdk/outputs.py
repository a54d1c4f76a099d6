"""Typed outputs returned by ``compose``: each knows its modality and how to save itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidInputError
from .io import atomic_path, atomic_write_text


def _check_ext(path: Path, allowed: tuple[str, ...], kind: str) -> None:
    if path.suffix.lower() not in allowed:
        raise InvalidInputError(f"cannot save {kind} as {path.suffix or 'no extension'!r}; accepted: {', '.join(allowed)}")


@dataclass
class Output:
    """Base of every output. ``modality`` is the registry name of what was generated."""

    modality: str

    def save(self, path: str | os.PathLike) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class ImageOutput(Output):
    """An RGB image, ``array`` uint8 of shape (H, W, 3)."""

    array: np.ndarray = field(repr=False, default=None)

    @property
    def pil(self):
        from PIL import Image

        return Image.fromarray(self.array, mode="RGB")

    def save(self, path: str | os.PathLike) -> Path:
        """Save as PNG/JPEG (by extension) or ``.npy``."""
        path = Path(path)
        _check_ext(path, (".png", ".jpg", ".jpeg", ".npy"), "an image")
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, self.array)
            else:
                self.pil.save(tmp, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
        return path


@dataclass
class VideoOutput(Output):
    """A video, ``array`` uint8 of shape (T, H, W, 3), at ``fps`` frames per second."""

    array: np.ndarray = field(repr=False, default=None)
    fps: float = 4.0

    @property
    def frames(self):
        from PIL import Image

        return [Image.fromarray(f, mode="RGB") for f in self.array]

    def save(self, path: str | os.PathLike) -> Path:
        """Save as animated GIF, MP4 (needs imageio-ffmpeg) or ``.npy``."""
        path = Path(path)
        _check_ext(path, (".gif", ".mp4", ".npy"), "a video")
        suffix = path.suffix.lower()
        with atomic_path(path) as tmp:
            if suffix == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, self.array)
            elif suffix == ".gif":
                first, *rest = self.frames
                first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=int(1000 / self.fps), loop=0)
            else:
                try:
                    import imageio.v3 as iio

                    iio.imwrite(tmp, self.array, fps=self.fps, extension=".mp4")
                except Exception as exc:  # imageio-ffmpeg missing or broken
                    raise InvalidInputError(
                        f"cannot write MP4 here ({exc}); save as .gif or .npy, or `pip install imageio imageio-ffmpeg`"
                    ) from exc
        return path


@dataclass
class AudioOutput(Output):
    """Mono audio, ``waveform`` float32 in [-1, 1] at ``sample_rate`` Hz."""

    waveform: np.ndarray = field(repr=False, default=None)
    sample_rate: int = 16000

    def save(self, path: str | os.PathLike) -> Path:
        """Save as 16-bit PCM WAV, FLAC (by extension) or ``.npy``."""
        import soundfile as sf

        path = Path(path)
        _check_ext(path, (".wav", ".flac", ".npy"), "audio")
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, self.waveform)
            else:
                fmt = "WAV" if path.suffix.lower() == ".wav" else "FLAC"
                sf.write(tmp, np.clip(self.waveform, -1, 1), self.sample_rate, format=fmt, subtype="PCM_16")
        return path


@dataclass
class TextOutput(Output):
    """Generated text; ``str(output)`` is the text."""

    text: str = ""

    def __str__(self) -> str:
        return self.text

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        _check_ext(path, (".txt",), "text")
        atomic_write_text(path, self.text + "\n")
        return path

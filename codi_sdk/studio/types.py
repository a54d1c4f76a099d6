"""The types that travel on Studio edges, and how values of each are read, checked and written.

A port type is a registry modality name or a plain value type:

========== ==================================================================================
type       value on the edge
========== ==================================================================================
``text``   ``str``
``image``  :class:`~codi_sdk.outputs.ImageOutput` (``array`` uint8, H×W×3)
``video``  :class:`~codi_sdk.outputs.VideoOutput` (``array`` uint8, T×H×W×3)
``audio``  :class:`~codi_sdk.outputs.AudioOutput` (``waveform`` float32 mono, any ``sample_rate``)
other      a modality of an installed plugin: what its ``to_output(convert(x))`` returns
``json``   any JSON-serialisable value (dict, list, str, number, bool, None)
``number`` ``int`` or ``float``
``any``    anything; connects to and from every type
========== ==================================================================================

The four media types above are understood by Studio itself, so service nodes work whether or not
the matching modality plugin is installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import InvalidInputError
from ..io import atomic_write_text
from ..outputs import AudioOutput, ImageOutput, Output, TextOutput, VideoOutput

MEDIA_TYPES: tuple[str, ...] = ("text", "image", "video", "audio")
PLAIN_TYPES: tuple[str, ...] = ("json", "number", "any")

_OUTPUT_CLASS = {"image": ImageOutput, "video": VideoOutput, "audio": AudioOutput}
_SAVE_SUFFIX = {"text": ".txt", "image": ".png", "video": ".gif", "audio": ".wav"}


def known_types(modalities: Iterable[str] = ()) -> list[str]:
    """Every port type usable now: the media and plain types plus installed modality names."""
    return sorted(set(MEDIA_TYPES) | set(PLAIN_TYPES) | set(modalities))


def compatible(source: str, target: str) -> bool:
    """Whether a value of type ``source`` may flow into a port of type ``target``."""
    return source == target or "any" in (source, target)


# -- reading values ---------------------------------------------------------------------------
def _load_audio(path: Path) -> AudioOutput:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise InvalidInputError(f"cannot read audio file {path} ({exc}); accepted: WAV, FLAC, OGG") from exc
    return AudioOutput("audio", waveform=data.mean(axis=1).astype(np.float32), sample_rate=int(rate))


def _load_image(path: Path) -> ImageOutput:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return ImageOutput("image", array=np.asarray(im.convert("RGB")).copy())
    except Exception as exc:
        raise InvalidInputError(f"cannot read image file {path} ({exc}); accepted: PNG, JPEG and other PIL formats") from exc


def _load_video(path: Path) -> VideoOutput:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return _as_video(np.load(path, allow_pickle=False))
        if suffix == ".gif":
            from PIL import Image, ImageSequence

            with Image.open(path) as im:
                fps = 1000.0 / im.info["duration"] if im.info.get("duration") else 4.0
                frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
            return VideoOutput("video", array=np.stack(frames), fps=fps)
        import imageio.v3 as iio

        return VideoOutput("video", array=np.asarray(iio.imread(path)), fps=float(iio.immeta(path).get("fps", 4.0)))
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"cannot read video file {path} ({exc}); accepted: .gif, .npy (T,H,W,3 uint8), .mp4 with imageio") from exc


def _as_video(array: np.ndarray) -> VideoOutput:
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise InvalidInputError(f"video array of shape {array.shape} and dtype {array.dtype}; accepted: uint8 (T, H, W, 3)")
    return VideoOutput("video", array=array)


def coerce(type_: str, value: Any, registry: Any = None) -> Any:
    """Turn a user value into the value a port of ``type_`` carries (see the module table).

    Accepted: for ``text`` a ``str``, a :class:`TextOutput` or a :class:`pathlib.Path` of a text
    file; for media a file path (``str`` or ``Path``), the typed output object, or an array
    (image uint8 H×W×3, video uint8 T×H×W×3, audio a ``(waveform, sample_rate)`` pair); for
    ``json``/``number``/``any`` the value itself. Raises :class:`InvalidInputError` otherwise.
    """
    if type_ == "text":
        if isinstance(value, TextOutput):
            return value.text
        if isinstance(value, Path):
            try:
                return value.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise InvalidInputError(f"cannot read text file {value}: {exc}") from exc
        if isinstance(value, str):
            return value
        raise InvalidInputError(f"text value of type {type(value).__name__}; accepted: str, TextOutput, Path of a .txt file")
    if type_ in _OUTPUT_CLASS:
        cls = _OUTPUT_CLASS[type_]
        if isinstance(value, cls):
            return value
        if isinstance(value, (str, Path)):
            path = Path(value)
            if not path.is_file():
                raise InvalidInputError(f"{type_} file not found: {path}")
            return {"image": _load_image, "video": _load_video, "audio": _load_audio}[type_](path)
        if type_ == "image" and isinstance(value, np.ndarray):
            if value.ndim != 3 or value.shape[-1] != 3 or value.dtype != np.uint8:
                raise InvalidInputError(f"image array of shape {value.shape} and dtype {value.dtype}; accepted: uint8 (H, W, 3)")
            return ImageOutput("image", array=value)
        if type_ == "video" and isinstance(value, np.ndarray):
            return _as_video(value)
        if type_ == "audio" and isinstance(value, tuple) and len(value) == 2:
            wave, rate = value
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim == 2:
                wave = wave.mean(axis=1)
            return AudioOutput("audio", waveform=wave, sample_rate=int(rate))
        raise InvalidInputError(
            f"{type_} value of type {type(value).__name__}; accepted: a file path, {cls.__name__}"
            + {"image": ", a uint8 (H, W, 3) array", "video": ", a uint8 (T, H, W, 3) array", "audio": ", a (waveform, sample_rate) pair"}[type_]
        )
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(f"number value {value!r}; accepted: int or float") from None
        return value
    if type_ in PLAIN_TYPES:
        return value
    if registry is not None:
        modality = registry.get(type_)
        if isinstance(value, Output):
            return value
        return modality.to_output(modality.convert(value))
    return value


def check(type_: str, value: Any) -> str | None:
    """Why ``value`` does not fit a port of ``type_``, or ``None`` if it does (used on node outputs)."""
    if type_ == "text" and not isinstance(value, str):
        return f"expected str for type 'text', got {type(value).__name__}"
    if type_ in _OUTPUT_CLASS and not isinstance(value, _OUTPUT_CLASS[type_]):
        return f"expected {_OUTPUT_CLASS[type_].__name__} for type {type_!r}, got {type(value).__name__}"
    if type_ == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected int or float for type 'number', got {type(value).__name__}"
    if type_ == "json":
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            return f"expected a JSON-serialisable value for type 'json' ({exc})"
    return None


# -- writing and describing values --------------------------------------------------------------
def save(type_: str, value: Any, stem: str | Path) -> Path:
    """Write ``value`` atomically to ``stem`` plus the type's suffix (.txt, .png, .gif, .wav, .json)."""
    stem = Path(stem)
    if isinstance(value, Output):
        suffix = _SAVE_SUFFIX.get(value.modality) or _SAVE_SUFFIX.get(type_) or ".npy"
        if isinstance(value, TextOutput):
            suffix = ".txt"
        return value.save(stem.with_name(stem.name + suffix))
    if type_ == "text" or isinstance(value, str):
        path = stem.with_name(stem.name + ".txt")
        atomic_write_text(path, str(value) + "\n")
        return path
    path = stem.with_name(stem.name + ".json")
    atomic_write_text(path, json.dumps(value, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


def describe(value: Any) -> str:
    """A one-line summary of a value for progress lines and tables."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, AudioOutput):
        secs = len(value.waveform) / value.sample_rate if value.sample_rate else math.nan
        return f"audio {secs:.2f} s @ {value.sample_rate} Hz"
    if isinstance(value, ImageOutput):
        h, w = value.array.shape[:2]
        return f"image {w}x{h}"
    if isinstance(value, VideoOutput):
        t, h, w = value.array.shape[:3]
        return f"video {t} frames {w}x{h}"
    if isinstance(value, TextOutput):
        return describe(value.text)
    text = json.dumps(value, default=_json_default) if not isinstance(value, Output) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample mono float32 audio from ``rate`` to ``target`` Hz (polyphase filter when SciPy is present)."""
    if rate == target:
        return waveform.astype(np.float32, copy=False)
    try:
        from scipy.signal import resample_poly
    except ImportError:  # linear interpolation: adequate for speech, no anti-alias filter
        n = int(round(len(waveform) * target / rate))
        return np.interp(np.arange(n) * rate / target, np.arange(len(waveform)), waveform).astype(np.float32)
    g = math.gcd(rate, target)
    return resample_poly(waveform, target // g, rate // g).astype(np.float32)

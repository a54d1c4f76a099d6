"""Attribute probes: read a ToyWorld rendering back into its attributes, without any model.

Each probe returns a dict of the attributes its modality shows (image: color, shape; video and
audio: color, shape, motion; text: only the attributes it names). A value the probe cannot read
(a blank image, silence) is ``None``.

Probes accept raw renderings (uint8 ``(H, W, 3)`` images, uint8 ``(T, H, W, 3)`` videos, float
audio ``(N,)`` at 16 kHz, ``str``), canonical tensors (image float ``[3, H, W]`` in [-1, 1], video
``[T, 3, H, W]`` in [-1, 1], audio ``[N]``), numpy arrays of either layout, and the
``codi_sdk.outputs`` objects. Floating-point images and videos are read as [-1, 1].

They are written to survive imperfect generated samples: the object is whatever is clearly
brighter than the (median) background, and every decision is a nearest-class or threshold rule
on a robust statistic:

* colour — hue of the object's mean colour, nearest of the four base hues;
* shape — fill ratio of the bounding box (square ≈ 1.0, circle ≈ 0.79, triangle ≈ 0.5), with the
  triangle's apex-up mass (centroid at ≈ 2/3 of its height) confirming triangles;
* video motion — the object centroid's displacement from the first to the last frames;
* audio pitch — the lowest of the four notes with a strong spectral peak (its fundamental);
* audio timbre — energy of the odd and even harmonics relative to the fundamental;
* audio motion — the loudness envelope's trend (decay / rise) or its flutter (6 Hz tremolo) or
  neither (flat).
"""

from __future__ import annotations

import colorsys
import re
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .render import PITCH, SAMPLE_RATE
from .scenes import ATTRIBUTES, COLORS, VALUES

#: Which attributes each modality shows (text: as worded, so all three may appear).
SHOWS: dict[str, tuple[str, ...]] = {
    "text": ATTRIBUTES,
    "image": ("color", "shape"),
    "video": ATTRIBUTES,
    "audio": ATTRIBUTES,
}

Attributes = dict[str, "str | None"]

_BASE_HUES = {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360 for name, rgb in COLORS.items()}
#: Minimum brightness step (0–255) between object and background for an object to be found.
MIN_CONTRAST = 40.0
_EIGHT = np.ones((3, 3), dtype=bool)


# -- input normalisation ------------------------------------------------------------------------
def _to_numpy(sample: Any) -> np.ndarray:
    for attr in ("array", "waveform"):  # codi_sdk.outputs objects
        if hasattr(sample, attr) and not isinstance(sample, np.ndarray):
            sample = getattr(sample, attr)
            break
    if hasattr(sample, "detach") and hasattr(sample, "cpu"):  # torch tensor, without importing torch
        sample = sample.detach().cpu().float().numpy() if sample.is_floating_point() else sample.detach().cpu().numpy()
    if not isinstance(sample, np.ndarray):
        sample = np.asarray(sample)
    if sample.dtype == object or sample.size == 0:
        raise InvalidInputError(f"cannot probe an empty or non-numeric sample of type {type(sample).__name__}")
    return sample


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if np.issubdtype(pixels.dtype, np.floating):
        return np.clip(np.rint((np.nan_to_num(pixels) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def as_image(sample: Any) -> np.ndarray:
    """A probe input as a uint8 (H, W, 3) image (accepts HWC uint8 or CHW/HWC floats in [-1, 1])."""
    arr = _to_numpy(sample)
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise InvalidInputError(
            f"an image must be (H, W, 3) uint8 or [3, H, W] float in [-1, 1]; got shape {tuple(arr.shape)}"
        )
    if arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    return _to_uint8(arr)


def as_video(sample: Any) -> np.ndarray:
    """A probe input as a uint8 (T, H, W, 3) video (accepts THWC uint8 or TCHW/THWC floats in [-1, 1])."""
    arr = _to_numpy(sample)
    if arr.ndim != 4 or 3 not in (arr.shape[1], arr.shape[-1]):
        raise InvalidInputError(
            f"a video must be (T, H, W, 3) uint8 or [T, 3, H, W] float in [-1, 1]; got shape {tuple(arr.shape)}"
        )
    if arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 1, -1)
    return _to_uint8(arr)


def as_audio(sample: Any) -> np.ndarray:
    """A probe input as float64 mono audio (N,) at 16 kHz (accepts (N,), (1, N) or (N, 1))."""
    arr = _to_numpy(sample)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.shape[0] < 1600:
        raise InvalidInputError(f"audio must be mono (N,) at 16 kHz with N >= 1600 (0.1 s); got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidInputError(f"audio must be floating point in [-1, 1]; got dtype {arr.dtype}")
    return np.nan_to_num(arr.astype(np.float64))


# -- image --------------------------------------------------------------------------------------
def object_mask(image: np.ndarray) -> np.ndarray | None:
    """Boolean (H, W) mask of the object in a uint8 (H, W, 3) image, or None if there is none.

    The object is the largest 8-connected group of pixels whose brightness (max channel) is above
    the midpoint between the background (median brightness) and the object (98th percentile).
    """
    from scipy import ndimage

    value = image.max(axis=-1).astype(np.float64)
    ranked = np.sort(value, axis=None)
    background = float(ranked[len(ranked) // 2])
    peak = float(ranked[int(0.98 * (len(ranked) - 1))])
    if peak - background < MIN_CONTRAST:
        return None
    mask = value > (background + peak) / 2
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def color_of(pixels: np.ndarray) -> str | None:
    """Nearest base colour, by hue, of the mean of (N, 3) uint8 pixels."""
    if len(pixels) == 0:
        return None
    r, g, b = pixels.reshape(-1, 3).astype(np.float64).mean(axis=0) / 255
    hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
    dist = {name: min(abs(hue - h), 360 - abs(hue - h)) for name, h in _BASE_HUES.items()}
    return min(dist, key=dist.get)


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """``(fill, drop)``: fill ratio of the bounding box, and the centroid's height in it (0 top, 1 bottom)."""
    ys, xs = np.nonzero(mask)
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    fill = len(ys) / float(h * w)
    drop = (ys.mean() - ys.min() + 0.5) / h
    return float(fill), float(drop)


def shape_of(fill: float, drop: float) -> str:
    """Shape from bounding-box fill and centroid height (triangle: mass low, ≈ 0.65; others ≈ 0.5)."""
    if drop > 0.59 or fill < 0.58:
        return "triangle"
    # The midpoint of the documented fills (circle ≈ 0.79, square ≈ 1.0): generated squares with
    # slightly rounded corners fill ≈ 0.87–0.98; rendered circles reach 0.9 only when tiny (r ≈ 4).
    return "square" if fill >= 0.9 else "circle"


def probe_image(sample: Any) -> Attributes:
    """``{"color": ..., "shape": ...}`` read from an image."""
    image = as_image(sample)
    mask = object_mask(image)
    if mask is None:
        return {"color": None, "shape": None}
    return {"color": color_of(image[mask]), "shape": shape_of(*shape_features(mask))}


# -- video --------------------------------------------------------------------------------------
def probe_video(sample: Any) -> Attributes:
    """``{"color", "shape", "motion"}`` read from a video: per-frame masks, centroid path."""
    video = as_video(sample)
    pixels, fills, drops, centroids = [], [], [], []
    for t, frame in enumerate(video):
        mask = object_mask(frame)
        if mask is None:
            continue
        pixels.append(frame[mask])
        fill, drop = shape_features(mask)
        fills.append(fill)
        drops.append(drop)
        ys, xs = np.nonzero(mask)
        centroids.append((t, xs.mean(), ys.mean()))
    if not pixels:
        return {"color": None, "shape": None, "motion": None}
    result: Attributes = {
        "color": color_of(np.concatenate(pixels)),
        "shape": shape_of(float(np.median(fills)), float(np.median(drops))),
        "motion": None,
    }
    if len(centroids) >= 2:
        path = np.asarray(centroids)
        t = path[:, 0] - path[:, 0].mean()
        dx, dy = (np.sum(t[:, None] * (path[:, 1:] - path[:, 1:].mean(axis=0)), axis=0) / np.sum(t * t))
        if max(abs(dx), abs(dy)) >= 0.5:  # px per frame; the contract moves 2
            result["motion"] = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    return result


# -- audio --------------------------------------------------------------------------------------
def _band_peak(spectrum: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    sel = (freqs >= lo) & (freqs <= hi)
    if not sel.any():
        return 0.0, (lo + hi) / 2
    i = int(np.argmax(spectrum[sel]))
    return float(spectrum[sel][i]), float(freqs[sel][i])


def _band_energy(power: np.ndarray, freqs: np.ndarray, center: float, half_width: float) -> float:
    sel = np.abs(freqs - center) <= half_width
    return float(power[sel].sum())


def audio_features(audio: Any, sample_rate: int = SAMPLE_RATE) -> dict[str, Any]:
    """The statistics the audio probe decides on (for debugging and docs)."""
    x = as_audio(audio)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    peaks = {c: _band_peak(spectrum, freqs, f * 0.975, f * 1.025) for c, f in PITCH.items()}
    strongest = max(p for p, _ in peaks.values())
    # the lowest note with a strong peak is the fundamental (yellow is red's octave)
    color = None
    f0 = None
    if strongest > 0:
        for c in sorted(PITCH, key=PITCH.get):
            if peaks[c][0] >= 0.3 * strongest:
                color, f0 = c, peaks[c][1]
                break
    feats: dict[str, Any] = {"color": color, "f0": f0, "odd": None, "even": None}
    if f0 is not None:
        power = spectrum**2
        width = max(6.0, 0.02 * f0)
        e1 = _band_energy(power, freqs, f0, width)
        odd = even = 0.0
        for k in range(2, int((sample_rate / 2 - width) // f0) + 1):
            e = _band_energy(power, freqs, k * f0, width)
            if k % 2:
                odd += e
            else:
                even += e
        feats["odd"], feats["even"] = odd / max(e1, 1e-20), even / max(e1, 1e-20)
    # loudness envelope: RMS over 20 ms windows, hop 10 ms, fades trimmed
    win, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    env = np.sqrt(np.mean(frames**2, axis=1))[3:-3]
    feats["trend"] = feats["flutter"] = None
    if len(env) >= 8 and env.mean() > 1e-4:
        t = np.arange(len(env)) * hop / sample_rate
        slope, intercept = np.polyfit(t, env, 1)
        resid = env - (slope * t + intercept)
        duration = t[-1] - t[0]
        feats["trend"] = float(slope * duration / env.mean())  # relative change over the clip
        feats["flutter"] = float(resid.std() / env.mean())
    return feats


def timbre_of(odd: float | None, even: float | None) -> str | None:
    """Shape from harmonic energies relative to the fundamental (sine / odd only / all)."""
    if odd is None or even is None:
        return None
    if odd + even < 0.04:
        return "circle"
    return "triangle" if even > 0.5 * odd else "square"


def envelope_motion(trend: float | None, flutter: float | None) -> str | None:
    """Motion from the loudness envelope: decay left, rise right, tremolo up, flat down."""
    if trend is None or flutter is None:
        return None
    if abs(trend) > 0.8:
        return "right" if trend > 0 else "left"
    return "up" if flutter > 0.2 else "down"


def probe_audio(sample: Any) -> Attributes:
    """``{"color", "shape", "motion"}`` read from audio: pitch, timbre, envelope."""
    f = audio_features(sample)
    return {"color": f["color"], "shape": timbre_of(f["odd"], f["even"]), "motion": envelope_motion(f["trend"], f["flutter"])}


# -- text ---------------------------------------------------------------------------------------
_WORDS = {attr: re.compile(r"\b(" + "|".join(VALUES[attr]) + r")\b") for attr in ATTRIBUTES}


def probe_text(sample: Any) -> Attributes:
    """The attributes a text names (first mention of each), e.g. ``{"color": "red"}``."""
    text = getattr(sample, "text", sample)
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str; got {type(text).__name__}")
    text = text.lower()
    found: Attributes = {}
    for attr, pattern in _WORDS.items():
        m = pattern.search(text)
        if m:
            found[attr] = m.group(1)
    return found


PROBES = {"image": probe_image, "video": probe_video, "audio": probe_audio, "text": probe_text}


def probe(modality: str, sample: Any) -> Attributes:
    """Read the attributes of ``sample`` in ``modality`` (one of text, image, video, audio)."""
    if modality not in PROBES:
        raise InvalidInputError(f"no ToyWorld probe for modality {modality!r}; accepted: {', '.join(PROBES)}")
    return PROBES[modality](sample)


__all__ = [
    "SHOWS",
    "probe",
    "probe_image",
    "probe_video",
    "probe_audio",
    "probe_text",
    "object_mask",
    "audio_features",
]

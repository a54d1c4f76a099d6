"""The four ToyWorld renderers, exactly as shared/TOYWORLD.md specifies them.

Every renderer takes a :class:`~codi_sdk.toyworld.scenes.Scene` and a ``numpy.random.Generator``
and is a pure function of the two: the same generator state gives the same rendering.

* :func:`render_image` — uint8 (32, 32, 3), black background;
* :func:`render_video` — uint8 (8, 32, 32, 3), 2 px per frame in the motion's direction;
* :func:`render_audio` — float32 (16000,), 16 kHz, in [-1, 1];
* :func:`caption` / :func:`partial_caption` — lower-case English.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..errors import InvalidInputError
from .scenes import ATTRIBUTES, COLOR_JITTER, PITCH, Scene, base_pitch, base_rgb  # noqa: F401 (PITCH: re-exported)

IMAGE_SIZE = 32
NUM_FRAMES = 8
FPS = 4.0
SAMPLE_RATE = 16_000
NUM_SAMPLES = 16_000
#: Pixels moved per frame (14 px from frame 0 to frame 7).
STEP_PX = 2
#: Harmonics are kept strictly below this frequency.
MAX_HARMONIC_HZ = 7_500.0
IMAGE_RADIUS = (4.5, 6.5)
VIDEO_RADIUS = (4.0, 5.0)
#: Unit vector (dx, dy) of each motion; y grows downwards.
DIRECTION: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

_SQRT_PI = float(np.sqrt(np.pi))
_SQRT_2PI = float(np.sqrt(2 * np.pi))
_CENTERS = np.arange(IMAGE_SIZE, dtype=np.float64) + 0.5  # pixel centres


def half_extent(shape: str, r: float) -> float:
    """Half the side of the shape's (square) bounding box for size parameter ``r``."""
    if shape == "circle":
        return r
    if shape == "square":
        return r * _SQRT_PI / 2
    if shape == "triangle":
        return r * _SQRT_2PI / 2
    raise InvalidInputError(f"unknown shape {shape!r}; accepted: circle, square, triangle")


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean (size, size) mask of the pixels whose centre lies inside the shape.

    ``(cx, cy)`` is the centre of the bounding box in pixel coordinates (x right, y down). All
    three shapes have area π r²: circle radius r, square side r√π, isosceles triangle with apex
    up and base = height = r√(2π).
    """
    c = _CENTERS[:size] if size <= IMAGE_SIZE else np.arange(size, dtype=np.float64) + 0.5
    x = c[None, :]
    y = c[:, None]
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    h = half_extent(shape, r)
    if shape == "square":
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    # triangle: at depth d below the apex the half-width is d / 2 (base = height)
    top = cy - h
    depth = y - top
    return (depth >= 0) & (depth <= 2 * h) & (np.abs(x - cx) <= depth / 2)


def _fill_color(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    base = np.asarray(base_rgb(scene), dtype=np.float64)
    return np.clip(np.rint(base + rng.uniform(-COLOR_JITTER, COLOR_JITTER, size=3)), 0, 255).astype(np.uint8)


def render_image(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A 32×32 RGB image of the scene (motion is not shown): uint8 (32, 32, 3)."""
    r = rng.uniform(*IMAGE_RADIUS)
    h = half_extent(scene.shape, r)
    cx, cy = rng.uniform(1 + h, IMAGE_SIZE - 1 - h, size=2)
    color = _fill_color(scene, rng)
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    out[shape_mask(scene.shape, cx, cy, r)] = color
    return out


def video_path(scene: Scene, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Draw the video's size ``r`` and the bounding-box centres of its 8 frames, shape (8, 2) as (x, y)."""
    r = rng.uniform(*VIDEO_RADIUS)
    h = half_extent(scene.shape, r)
    dx, dy = DIRECTION[scene.motion]
    travel = STEP_PX * (NUM_FRAMES - 1)
    lo, hi = 1 + h, IMAGE_SIZE - 1 - h
    start = np.empty(2)
    for axis, d in enumerate((dx, dy)):
        if d > 0:
            start[axis] = rng.uniform(lo, hi - travel)
        elif d < 0:
            start[axis] = rng.uniform(lo + travel, hi)
        else:
            start[axis] = rng.uniform(lo, hi)
    steps = np.arange(NUM_FRAMES, dtype=np.float64)[:, None] * STEP_PX
    return r, start[None, :] + steps * np.array([dx, dy], dtype=np.float64)[None, :]


def render_video(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """An 8-frame video of the scene: uint8 (8, 32, 32, 3), 2 px per frame, nominally 4 fps."""
    r, centers = video_path(scene, rng)
    color = _fill_color(scene, rng)
    out = np.zeros((NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for t, (cx, cy) in enumerate(centers):
        out[t][shape_mask(scene.shape, cx, cy, r)] = color
    return out


def harmonics(shape: str, f0: float) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic numbers k (k·f0 < 7 500 Hz) and amplitudes of a shape's timbre."""
    k = np.arange(1, int(np.ceil(MAX_HARMONIC_HZ / f0)) + 1)
    k = k[k * f0 < MAX_HARMONIC_HZ]
    if shape == "circle":
        k = k[:1]
    elif shape == "square":
        k = k[k % 2 == 1]
    elif shape != "triangle":
        raise InvalidInputError(f"unknown shape {shape!r}; accepted: circle, square, triangle")
    return k, 1.0 / k


def envelope(motion: str, n: int = NUM_SAMPLES, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The loudness envelope of a motion over t in [0, n / sample_rate), before fades and gain."""
    t = np.arange(n) / sample_rate
    if motion == "left":
        return 1.0 - 0.9 * t
    if motion == "right":
        return 0.1 + 0.9 * t
    if motion == "up":
        return 1.0 - 0.45 * (1.0 - np.cos(2 * np.pi * 6.0 * t))
    if motion == "down":
        return np.full(n, 0.55)
    raise InvalidInputError(f"unknown motion {motion!r}; accepted: left, right, up, down")


def _additive(f0: float, k: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """sum_k amp_k sin(2π k f0 t + phase_k) over one clip, by Horner's rule in z = exp(i 2π f0 t)."""
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    z = np.exp(2j * np.pi * f0 * t)
    coef = np.zeros(int(k.max()) + 1, dtype=np.complex128)
    coef[k] = amp * np.exp(1j * phase)
    acc = np.full(NUM_SAMPLES, coef[-1])
    for c in coef[-2::-1]:
        acc = acc * z + c
    return acc.imag


def render_audio(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One second of 16 kHz mono audio of the scene: float32 (16000,) in [-1, 1].

    Pitch by colour (±1 %), timbre by shape (sine / odd harmonics / sawtooth, random phases,
    peak-normalised), envelope by motion, 10 ms fades, gain in [0.4, 0.6], noise σ 0.003.
    """
    f0 = base_pitch(scene) * (1.0 + rng.uniform(-0.01, 0.01))
    k, amp = harmonics(scene.shape, f0)
    phase = rng.uniform(0.0, 2 * np.pi, size=k.shape)
    wave = _additive(f0, k, amp, phase)
    wave /= np.max(np.abs(wave))
    wave *= envelope(scene.motion)
    fade = int(round(0.010 * SAMPLE_RATE))
    ramp = np.arange(fade) / fade
    wave[:fade] *= ramp
    wave[-fade:] *= ramp[::-1]
    wave *= rng.uniform(0.4, 0.6)
    wave += rng.normal(0.0, 0.003, size=NUM_SAMPLES)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# -- text ---------------------------------------------------------------------------------------
#: Full caption templates (the first four are the contract's).
FULL_TEMPLATES: tuple[str, ...] = (
    "a {color} {shape} moving {motion}",
    "a {color} {shape} that moves {motion}",
    "the {shape} is {color} and goes {motion}",
    "{color} {shape} heading {motion}",
    "a {color} {shape} going {motion}",
    "there is a {color} {shape} moving {motion}",
)
#: Partial caption templates by the set of attributes they name.
PARTIAL_TEMPLATES: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"color", "shape"}): ("a {color} {shape}", "the {shape} is {color}"),
    frozenset({"shape", "motion"}): ("a {shape} moving {motion}", "the {shape} goes {motion}"),
    frozenset({"color", "motion"}): ("something {color} moving {motion}",),
    frozenset({"color"}): ("a {color} thing", "something {color}"),
    frozenset({"shape"}): ("a {shape}",),
    frozenset({"motion"}): ("something moving {motion}",),
}
_KEEP_ORDER = tuple(PARTIAL_TEMPLATES)


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A full caption naming colour, shape and motion, from a random template."""
    template = FULL_TEMPLATES[int(rng.integers(len(FULL_TEMPLATES)))]
    return template.format(**scene.as_dict())


def partial_caption(
    scene: Scene, rng: np.random.Generator, keep: Iterable[str] | None = None
) -> tuple[str, frozenset[str]]:
    """A caption naming only some attributes: ``(text, attributes named)``.

    ``keep`` picks the attributes to name (a non-empty subset of color/shape/motion; all three
    gives a full caption); ``None`` picks one of the six proper subsets at random.
    """
    if keep is None:
        kept = _KEEP_ORDER[int(rng.integers(len(_KEEP_ORDER)))]
    else:
        kept = frozenset(keep)
        unknown = kept - set(ATTRIBUTES)
        if unknown or not kept:
            raise InvalidInputError(
                f"keep must be a non-empty subset of {', '.join(ATTRIBUTES)}; got {sorted(kept) or 'nothing'}"
            )
        if kept == frozenset(ATTRIBUTES):
            return caption(scene, rng), kept
    templates = PARTIAL_TEMPLATES[kept]
    template = templates[int(rng.integers(len(templates)))]
    return template.format(**scene.as_dict()), kept


RENDERERS = {"image": render_image, "video": render_video, "audio": render_audio, "text": caption}
MODALITIES: tuple[str, ...] = ("text", "image", "video", "audio")


def check_modality(modality: str) -> str:
    """Return ``modality`` if ToyWorld renders it, else raise InvalidInputError listing them."""
    if modality not in RENDERERS:
        raise InvalidInputError(f"unknown ToyWorld modality {modality!r}; accepted: {', '.join(MODALITIES)}")
    return modality


def render(modality: str, scene: Scene, rng: np.random.Generator) -> Any:
    """Raw rendering of ``scene`` in ``modality`` (text: a full caption)."""
    return RENDERERS[check_modality(modality)](scene, rng)

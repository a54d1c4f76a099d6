"""ToyWorld scenes, their attribute values, the held-out pairs, the splits and their seed streams.

A scene is a ``(color, shape, motion)`` triple; there are 48. The colour–shape pairs in
:data:`HELDOUT` never appear in the ``train`` split of any modality; they form the ``heldout``
evaluation split. The other 36 scenes form both ``train`` and ``seen``, and ``seen`` is rendered
from a seed stream disjoint from training (see :func:`item_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np

from ..errors import InvalidInputError

#: Version of the data contract (shared/TOYWORLD.md) this module implements.
TOYWORLD_VERSION = "v1"

#: Base colours, sRGB 0–255.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
#: Fundamental frequency of each colour, Hz (the audio rendering's pitch).
PITCH: dict[str, float] = {"red": 261.63, "green": 329.63, "blue": 392.00, "yellow": 523.25}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
#: The attribute names, in the order of a scene's fields.
ATTRIBUTES: tuple[str, ...] = ("color", "shape", "motion")
#: Values of each attribute.
VALUES: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "shape": SHAPES, "motion": MOTIONS}

#: Training-only colours (sRGB 0–255, fundamental in Hz), *not* part of the ToyWorld v1 contract:
#: no evaluation split and no probe uses them. A training recipe may mix scenes of these colours,
#: in every shape, into its data (``ToyWorldRecipe.auxiliary_colors``) so that the models see each
#: shape drawn and sounded in many colours, and can learn shape apart from colour. Their hues lie
#: 25° or more from every base colour's, their pitches two or three semitones from every base pitch.
AUXILIARY_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "orange": ((235, 130, 30), 293.66),
    "cyan": ((40, 200, 210), 220.00),
    "purple": ((150, 60, 220), 440.00),
    "pink": ((235, 90, 170), 622.25),
}

#: Colour–shape pairs never seen in training (in every motion).
HELDOUT: frozenset[tuple[str, str]] = frozenset({("red", "triangle"), ("green", "square"), ("blue", "circle")})

#: The splits: ``train`` (36 scenes, training seeds), ``seen`` (the same 36 scenes, evaluation
#: seeds), ``heldout`` (the 12 held-out scenes, evaluation seeds).
SPLITS: tuple[str, ...] = ("train", "seen", "heldout")

# Seed-stream codes. They go into the SeedSequence spawn key, so different splits (and different
# streams within an item) can never draw the same random numbers, whatever the user seed.
_SPLIT_CODE = {"train": 1, "seen": 2, "heldout": 3}
_STREAM_CODE = {"scene": 0, "text": 1, "image": 2, "video": 3, "audio": 4, "caption": 5, "partial": 6, "generate": 7, "paraphrase": 8, "unnamed": 9}


@dataclass(frozen=True, order=True)
class Scene:
    """One ToyWorld scene. Construct with attribute value names; invalid names raise."""

    color: str
    shape: str
    motion: str
    #: The accepted values of each attribute (a subclass may accept more).
    _values: ClassVar[dict[str, tuple[str, ...]]] = VALUES

    def __post_init__(self) -> None:
        for attr in ATTRIBUTES:
            value = getattr(self, attr)
            if value not in self._values[attr]:
                raise InvalidInputError(f"unknown {attr} {value!r}; accepted: {', '.join(self._values[attr])}")

    @property
    def heldout(self) -> bool:
        """Whether the scene's colour–shape pair is held out of training."""
        return (self.color, self.shape) in HELDOUT

    def as_dict(self) -> dict[str, str]:
        """``{"color": ..., "shape": ..., "motion": ...}``."""
        return {"color": self.color, "shape": self.shape, "motion": self.motion}

    def __str__(self) -> str:
        return f"{self.color} {self.shape} {self.motion}"


#: The colour value of a training scene drawn in a colour without a name (:func:`unnamed_color_scene`):
#: its ``rgb`` and ``pitch`` say what it looks and sounds like; no caption names it.
UNNAMED = "unnamed"
#: How far an unnamed colour stays from every ToyWorld colour: in hue (degrees) and in pitch (semitones).
UNNAMED_MIN_HUE_DEG = 25.0
UNNAMED_MIN_SEMITONES = 1.0
#: The range of an unnamed colour's fundamental (Hz): around ToyWorld's pitches and the auxiliary ones.
UNNAMED_PITCH_RANGE = (200.0, 680.0)
#: With sub-harmonic pitches (``unnamed_color_scene(rng, subharmonics=...)``): the range, widened down
#: so that a ToyWorld pitch divided by 2 to 5 (:data:`UNNAMED_SUBHARMONICS`) can be drawn.
UNNAMED_SUBHARMONIC_PITCH_RANGE = (95.0, 680.0)
UNNAMED_SUBHARMONICS: tuple[int, ...] = (2, 3, 4, 5)
#: The per-channel fill jitter of every rendering (TOYWORLD.md: uniform in [−20, 20]).
COLOR_JITTER = 20


@dataclass(frozen=True, order=True)
class TrainingScene(Scene):
    """A scene whose colour may also be one of :data:`AUXILIARY_COLORS`, or :data:`UNNAMED` with an
    explicit ``rgb`` (sRGB 0–255) and ``pitch`` (Hz) (training data only)."""

    rgb: tuple[int, int, int] | None = None
    pitch: float | None = None
    _values: ClassVar[dict[str, tuple[str, ...]]] = {**VALUES, "color": (*COLORS, *AUXILIARY_COLORS, UNNAMED)}

    def __post_init__(self) -> None:
        super().__post_init__()
        unnamed = self.color == UNNAMED
        if unnamed != (self.rgb is not None) or unnamed != (self.pitch is not None):
            raise InvalidInputError(
                f"a training scene gives rgb and pitch exactly when its colour is {UNNAMED!r}; got color "
                f"{self.color!r}, rgb {self.rgb!r}, pitch {self.pitch!r}"
            )
        if unnamed and (len(self.rgb) != 3 or not all(0 <= c <= 255 for c in self.rgb) or not self.pitch > 0):
            raise InvalidInputError(f"rgb must be three values in 0..255 and pitch > 0 Hz; got {self.rgb!r}, {self.pitch!r}")


def base_rgb(scene) -> tuple[int, int, int]:
    """The fill colour a scene is rendered around (before jitter): a :class:`TrainingScene`'s own
    ``rgb`` when it has one, else its ToyWorld or auxiliary colour's."""
    own = getattr(scene, "rgb", None)
    return own or (COLORS[scene.color] if scene.color in COLORS else AUXILIARY_COLORS[scene.color][0])


def base_pitch(scene) -> float:
    """The fundamental a scene's audio is rendered around (before the ±1 %), Hz: a
    :class:`TrainingScene`'s own ``pitch`` when it has one, else its ToyWorld or auxiliary colour's."""
    own = getattr(scene, "pitch", None)
    return own or (PITCH[scene.color] if scene.color in PITCH else AUXILIARY_COLORS[scene.color][1])


def _hue_deg(rgb) -> float:
    import colorsys

    return 360.0 * colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))[0]


def unnamed_color_scene(rng: np.random.Generator, subharmonics: float = 0.0) -> TrainingScene:
    """A :class:`TrainingScene` of any shape and motion in a colour without a name: a random hue at
    least :data:`UNNAMED_MIN_HUE_DEG` from every ToyWorld colour's (saturation 0.6–1, value 0.7–1), and
    a random pitch (log-uniform in :data:`UNNAMED_PITCH_RANGE`) at least :data:`UNNAMED_MIN_SEMITONES`
    from every ToyWorld pitch; its RGB is also more than twice :data:`COLOR_JITTER` from every ToyWorld
    colour in some channel, so no rendering of it is a possible rendering of a ToyWorld colour. So its
    pairs never show a ToyWorld colour, held-out pairs included.

    With ``subharmonics`` > 0 the pitch range is :data:`UNNAMED_SUBHARMONIC_PITCH_RANGE`, and that share
    of the scenes instead sound a ToyWorld pitch divided by one of :data:`UNNAMED_SUBHARMONICS` (still at
    least :data:`UNNAMED_MIN_SEMITONES` from every ToyWorld pitch): their harmonics fall on named
    pitches, the case of a held-out sawtooth whose second harmonic is another colour's fundamental."""
    if not 0 <= subharmonics <= 1:
        raise ValueError(f"subharmonics is a share in [0, 1], got {subharmonics}")
    import colorsys

    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    base_hues = [_hue_deg(c) for c in COLORS.values()]
    while True:
        hue = rng.uniform(0.0, 360.0)
        rgb = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue / 360.0, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)))
        if all(min(abs(hue - b), 360.0 - abs(hue - b)) >= UNNAMED_MIN_HUE_DEG for b in base_hues) and not any(
            max(abs(a - b) for a, b in zip(rgb, base)) <= 2 * COLOR_JITTER for base in COLORS.values()
        ):
            break  # not even a jittered rendering of it can look like a jittered ToyWorld colour
    far = lambda f: all(abs(12 * np.log2(f / p)) >= UNNAMED_MIN_SEMITONES for p in PITCH.values())  # noqa: E731
    lo, hi = np.log2(UNNAMED_SUBHARMONIC_PITCH_RANGE if subharmonics else UNNAMED_PITCH_RANGE)
    while True:
        pitch = float(2.0 ** rng.uniform(lo, hi))
        if far(pitch):
            break
    if subharmonics and rng.uniform() < subharmonics:
        named = tuple(PITCH.values())
        while True:
            pitch = named[int(rng.integers(len(named)))] / int(rng.integers(UNNAMED_SUBHARMONICS[0], UNNAMED_SUBHARMONICS[-1] + 1))
            if pitch >= UNNAMED_SUBHARMONIC_PITCH_RANGE[0] and far(pitch):
                break
    return TrainingScene(UNNAMED, shape, motion, rgb=rgb, pitch=pitch)


#: All 48 scenes, colour-major.
ALL_SCENES: tuple[Scene, ...] = tuple(Scene(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS)


def split_scenes(split: str) -> tuple[Scene, ...]:
    """The scenes of a split: 36 for ``train`` and ``seen``, 12 for ``heldout``."""
    check_split(split)
    if split == "heldout":
        return tuple(s for s in ALL_SCENES if s.heldout)
    return tuple(s for s in ALL_SCENES if not s.heldout)


def train_scenes() -> tuple[Scene, ...]:
    """The 36 training scenes (no held-out colour–shape pair)."""
    return split_scenes("train")


def seen_scenes() -> tuple[Scene, ...]:
    """The 36 ``seen`` evaluation scenes (training scenes, rendered with evaluation seeds)."""
    return split_scenes("seen")


def heldout_scenes() -> tuple[Scene, ...]:
    """The 12 held-out evaluation scenes."""
    return split_scenes("heldout")


def check_split(split: str) -> str:
    """Return ``split`` if it names a split, else raise InvalidInputError listing the splits."""
    if split not in _SPLIT_CODE:
        raise InvalidInputError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    return split


def item_rng(split: str, index: int, stream: str, seed: int = 0) -> np.random.Generator:
    """The random generator of one item of a split, for one stream (``"image"``, ``"caption"``...).

    Built from ``SeedSequence(seed, spawn_key=(split, stream, index))``: items, streams and splits
    never share random numbers, so the evaluation splits are disjoint from training for every
    ``seed`` (the split is part of the key, not of the user seed).
    """
    check_split(split)
    if stream not in _STREAM_CODE:
        raise InvalidInputError(f"unknown seed stream {stream!r}; accepted: {', '.join(_STREAM_CODE)}")
    if index < 0:
        raise InvalidInputError(f"item index must be >= 0, got {index}")
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(_SPLIT_CODE[split], _STREAM_CODE[stream], int(index)))
    return np.random.default_rng(ss)


def scene_at(split: str, index: int, seed: int = 0) -> Scene:
    """The scene of item ``index`` of a split.

    Items cycle through the split's scenes in a seeded order, reshuffled every full cycle, so any
    ``len(split_scenes(split))`` consecutive items hold every scene once (balanced classes).
    """
    scenes = split_scenes(split)
    cycle, pos = divmod(int(index), len(scenes))
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(_SPLIT_CODE[split], 99, cycle))
    order = np.random.default_rng(ss).permutation(len(scenes))
    return scenes[int(order[pos])]


def iter_split(split: str, n: int, seed: int = 0) -> Iterator[tuple[int, Scene]]:
    """``(index, scene)`` for the first ``n`` items of a split."""
    for i in range(n):
        yield i, scene_at(split, i, seed)


def random_scene(rng: np.random.Generator, scenes: tuple[Scene, ...] = ALL_SCENES) -> Scene:
    """A scene drawn uniformly from ``scenes`` (default: all 48)."""
    return scenes[int(rng.integers(len(scenes)))]


def parse_scene(color: str, shape: str, motion: str) -> Scene:
    """A Scene from (possibly mixed-case) value names; raises InvalidInputError on an unknown one."""
    return Scene(color.strip().lower(), shape.strip().lower(), motion.strip().lower())

"""ToyWorld: the procedural four-modality world of shared/TOYWORLD.md (v1).

* :mod:`~codi_sdk.toyworld.scenes` — scenes, attribute values, held-out pairs, splits, seeds;
* :mod:`~codi_sdk.toyworld.render` — image / video / audio renderers and captions;
* :mod:`~codi_sdk.toyworld.probes` — read a rendering (or a generated sample) back to attributes;
* :mod:`~codi_sdk.toyworld.datasets` — torch datasets of (text, m) pairs (imported lazily: torch).

Example:
    >>> import numpy as np
    >>> from codi_sdk.toyworld import Scene, render_image, probe
    >>> image = render_image(Scene("red", "square", "left"), np.random.default_rng(0))
    >>> probe("image", image)
    {'color': 'red', 'shape': 'square'}
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .probes import SHOWS, probe, probe_audio, probe_image, probe_text, probe_video
from .render import (
    FULL_TEMPLATES,
    MODALITIES,
    PARTIAL_TEMPLATES,
    PITCH,
    caption,
    partial_caption,
    render,
    render_audio,
    render_image,
    render_video,
)
from .scenes import (
    ALL_SCENES,
    ATTRIBUTES,
    COLORS,
    HELDOUT,
    MOTIONS,
    SHAPES,
    SPLITS,
    TOYWORLD_VERSION,
    VALUES,
    Scene,
    heldout_scenes,
    item_rng,
    scene_at,
    seen_scenes,
    split_scenes,
    train_scenes,
)

_LAZY = {name: "codi_sdk.toyworld.datasets" for name in ("ToyWorldPairs", "ToyWorldCaptions", "render_pairs", "RenderedPairs", "to_tensor")}

__all__ = [
    "ALL_SCENES", "ATTRIBUTES", "COLORS", "FULL_TEMPLATES", "HELDOUT", "MODALITIES", "MOTIONS",
    "PARTIAL_TEMPLATES", "PITCH", "SHAPES", "SHOWS", "SPLITS", "TOYWORLD_VERSION", "VALUES", "Scene",
    "caption", "heldout_scenes", "item_rng", "partial_caption", "probe", "probe_audio", "probe_image",
    "probe_text", "probe_video", "render", "render_audio", "render_image", "render_video", "scene_at",
    "seen_scenes", "split_scenes", "train_scenes", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_sdk.toyworld' has no attribute {name!r}")

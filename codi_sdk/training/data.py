"""ToyWorld training data as in-memory tensors: (text, m) pairs only, as the bridging premise says.

Each modality's pairs are rendered once (``train`` split, seeded) and kept as stacked canonical
tensors; captions come with a *key* — the attributes the caption states — so that contrastive
losses treat two renderings of the same description as positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..toyworld.render import PARTIAL_TEMPLATES, caption, partial_caption, render
from ..toyworld.scenes import (
    ATTRIBUTES,
    AUXILIARY_COLORS,
    MOTIONS,
    SHAPES,
    TrainingScene,
    item_rng,
    scene_at,
    unnamed_color_scene,
)

#: The partial captions of an auxiliary-colour item always name its colour, so that a caption
#: without a colour ("a triangle") keeps meaning one of ToyWorld's four.
_NAMES_COLOR = tuple(k for k in PARTIAL_TEMPLATES if "color" in k)
#: An unnamed-colour item's captions name its shape, and its motion or not (never a colour).
_UNNAMED_FULL = frozenset({"shape", "motion"})
_UNNAMED_PARTIAL = (frozenset({"shape", "motion"}), frozenset({"shape"}))


def to_canonical(modality: str, raw) -> torch.Tensor:
    """A raw ToyWorld rendering as the modality's canonical tensor."""
    if modality == "image":
        return torch.from_numpy(raw).permute(2, 0, 1).float() / 127.5 - 1
    if modality == "video":
        return torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 127.5 - 1
    if modality == "audio":
        return torch.from_numpy(np.asarray(raw, dtype=np.float32))
    raise ValueError(f"no canonical tensor for {modality!r}")


def key_of(scene, named) -> tuple:
    """What a caption states: ``((attr, value), ...)`` for the attributes it names."""
    return tuple((a, getattr(scene, a)) for a in ATTRIBUTES if a in named)


def restrict_key(key: tuple, shown) -> tuple:
    """The part of ``key`` a modality can show (an image shows no motion, a sketch only shape)."""
    return tuple((a, v) for a, v in key if a in shown)


@dataclass
class Pairs:
    """``n`` (caption, sample) pairs of one modality; ``samples`` is None for text."""

    modality: str
    captions: list[str]
    keys: list[tuple]
    partial: list[str]
    partial_keys: list[tuple]
    samples: torch.Tensor | None
    #: a second full caption of each item's scene (its own random template), for text–text contrast
    paraphrases: list[str] | None = None

    def __len__(self) -> int:
        return len(self.captions)


def training_scene(index: int, seed: int = 0, auxiliary: float = 0.0):
    """The scene of training item ``index``: a ``train`` scene, or with probability ``auxiliary`` a
    :class:`~codi_sdk.toyworld.scenes.TrainingScene` in one of the auxiliary colours (any shape,
    any motion; uniform, from the item's own ``scene`` seed stream)."""
    if auxiliary > 0:
        rng = item_rng("train", index, "scene", seed)
        if rng.random() < auxiliary:
            colors = tuple(AUXILIARY_COLORS)
            return TrainingScene(colors[int(rng.integers(len(colors)))], SHAPES[int(rng.integers(len(SHAPES)))],
                                 MOTIONS[int(rng.integers(len(MOTIONS)))])
    return scene_at("train", index, seed)


def render_pairs(modality: str, n: int, seed: int = 0, progress: bool = True, renderer=None, auxiliary: float = 0.0) -> Pairs:
    """Render ``n`` training pairs (full caption, partial caption, sample) of ``modality``.

    ToyWorld renders text, image, video and audio itself; for any other modality pass
    ``renderer(scene, rng) -> canonical sample`` (the trainer uses ``Modality.render_toyworld``).
    ``auxiliary``: the share of items drawn in a training-only colour (:func:`training_scene`);
    their partial captions always name the colour.
    """
    caps, keys, parts, pkeys, paras, samples = [], [], [], [], [], []
    for i in tqdm(range(n), desc=f"render {modality}", disable=not progress, leave=False):
        scene = training_scene(i, seed, auxiliary)
        caps.append(caption(scene, item_rng("train", i, "caption", seed)))
        paras.append(caption(scene, item_rng("train", i, "paraphrase", seed)))
        keys.append(key_of(scene, ATTRIBUTES))
        prng = item_rng("train", i, "partial", seed)
        keep = _NAMES_COLOR[int(prng.integers(len(_NAMES_COLOR)))] if isinstance(scene, TrainingScene) else None
        text, named = partial_caption(scene, prng, keep)
        parts.append(text)
        pkeys.append(key_of(scene, named))
        if renderer is not None:
            samples.append(torch.as_tensor(renderer(scene, item_rng("train", i, "generate", seed))))
        elif modality != "text":
            samples.append(to_canonical(modality, render(modality, scene, item_rng("train", i, modality, seed))))
    stacked = torch.stack(samples) if samples else None
    return Pairs(modality, caps, keys, parts, pkeys, stacked, paras)


def render_unnamed_pairs(modality: str, n: int, seed: int = 0, progress: bool = True, subharmonics: float = 0.0) -> Pairs:
    """``n`` training pairs of ``modality`` in colours without a name
    (:func:`~codi_sdk.toyworld.scenes.unnamed_color_scene`: any hue and pitch away from ToyWorld's),
    captioned by shape and motion ("a triangle moving left"; partial: that or "a triangle"), never
    by colour. Contrasted with such captions, an encoder learns to read shape whatever the colour.
    Item ``i`` draws everything from its own ``unnamed`` seed stream. ``subharmonics``: that share of
    the items pitched at a ToyWorld pitch divided by 2 to 5 (``unnamed_color_scene``)."""
    if modality not in ("image", "video", "audio"):
        raise ValueError(f"unnamed-colour pairs are rendered for image, video and audio; got {modality!r}")
    caps, keys, parts, pkeys, paras, samples = [], [], [], [], [], []
    for i in tqdm(range(n), desc=f"render {modality} (unnamed colours)", disable=not progress, leave=False):
        rng = item_rng("train", i, "unnamed", seed)
        scene = unnamed_color_scene(rng, subharmonics)
        caps.append(partial_caption(scene, rng, _UNNAMED_FULL)[0])
        paras.append(partial_caption(scene, rng, _UNNAMED_FULL)[0])
        keys.append(key_of(scene, _UNNAMED_FULL))
        text, named = partial_caption(scene, rng, _UNNAMED_PARTIAL[int(rng.integers(len(_UNNAMED_PARTIAL)))])
        parts.append(text)
        pkeys.append(key_of(scene, named))
        samples.append(to_canonical(modality, render(modality, scene, rng)))
    return Pairs(modality, caps, keys, parts, pkeys, torch.stack(samples), paras)

"""Torch datasets of ToyWorld (text, m) pairs, and a fast pre-rendering helper.

As the bridging premise requires, a pair dataset yields only ``(caption, sample)``: text with one
other modality, the two rendered independently from the same scene. Item ``i`` of a split is a pure
function of ``(split, i, seed)`` (see :func:`~codi_sdk.toyworld.scenes.item_rng`), so datasets are
reproducible, need no storage, and evaluation splits never reuse training random numbers.

Samples are canonical tensors: image float32 ``[3, 32, 32]`` and video ``[8, 3, 32, 32]`` in
[-1, 1]; audio float32 ``[16000]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidInputError
from .render import caption, partial_caption, render
from .scenes import Scene, check_split, item_rng, scene_at

PAIR_MODALITIES: tuple[str, ...] = ("image", "video", "audio")


def _check_pair_modality(modality: str) -> str:
    if modality not in PAIR_MODALITIES:
        raise InvalidInputError(
            f"ToyWorld pairs text with {', '.join(PAIR_MODALITIES)}; got modality {modality!r} "
            "(use ToyWorldCaptions for text alone)"
        )
    return modality


def _check_prob(partial_prob: float) -> float:
    if not 0.0 <= partial_prob <= 1.0:
        raise InvalidInputError(f"partial_prob must lie in [0, 1]; got {partial_prob}")
    return float(partial_prob)


def item_caption(split: str, index: int, seed: int = 0, partial_prob: float = 0.0) -> str:
    """The caption of item ``index`` of a split: partial with probability ``partial_prob``."""
    rng = item_rng(split, index, "caption", seed)
    scene = scene_at(split, index, seed)
    if partial_prob > 0 and rng.random() < partial_prob:
        return partial_caption(scene, rng)[0]
    return caption(scene, rng)


def item_sample(modality: str, split: str, index: int, seed: int = 0) -> np.ndarray:
    """The raw rendering (uint8 image / video, float32 audio) of item ``index`` of a split."""
    return render(modality, scene_at(split, index, seed), item_rng(split, index, modality, seed))


def to_tensor(modality: str, raw: np.ndarray) -> torch.Tensor:
    """Raw rendering(s) -> canonical tensor(s); works on one sample or a stacked batch."""
    if modality == "audio":
        return torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(raw)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3).contiguous()  # (..., H, W, 3) -> (..., 3, H, W)


class RenderedPairs(NamedTuple):
    """Stacked renderings: ``captions[i]`` pairs with ``samples[i]``; ``scenes[i]`` is their scene."""

    captions: list[str]
    samples: np.ndarray
    scenes: list[Scene]


def render_pairs(
    modality: str, split: str = "train", n: int = 1024, seed: int = 0, partial_prob: float = 0.0
) -> RenderedPairs:
    """Render items ``0..n-1`` of a split as stacked raw arrays (the same items the datasets yield).

    ``samples`` is uint8 ``(n, 32, 32, 3)`` / ``(n, 8, 32, 32, 3)`` or float32 ``(n, 16000)``.
    Rendering is a few ms per audio clip and well under 1 ms per image.
    """
    _check_pair_modality(modality)
    check_split(split)
    _check_prob(partial_prob)
    if n < 0:
        raise InvalidInputError(f"n must be >= 0; got {n}")
    scenes = [scene_at(split, i, seed) for i in range(n)]
    caps = [item_caption(split, i, seed, partial_prob) for i in range(n)]
    samples = [item_sample(modality, split, i, seed) for i in range(n)]
    if samples:
        stacked = np.stack(samples)
    else:
        shape = {"image": (0, 32, 32, 3), "video": (0, 8, 32, 32, 3), "audio": (0, 16000)}[modality]
        stacked = np.zeros(shape, dtype=np.float32 if modality == "audio" else np.uint8)
    return RenderedPairs(caps, stacked, scenes)


class ToyWorldPairs(Dataset):
    """``(caption, sample)`` pairs of text with one modality (image, video or audio).

    Args:
        modality: ``"image"``, ``"video"`` or ``"audio"``.
        split: ``"train"`` (default; never a held-out pair), ``"seen"`` or ``"heldout"``.
        size: number of items; item ``i`` has scene ``scene_at(split, i, seed)`` (balanced).
        seed: user seed; the split is mixed in separately, so splits never collide.
        partial_prob: fraction of captions that name only some attributes.
        cache: render everything once up front (fast epochs, memory: 3 KB per image, 25 KB per
            video, 64 KB per audio clip).

    Example:
        >>> ds = ToyWorldPairs("image", size=8)
        >>> text, image = ds[0]
        >>> image.shape
        torch.Size([3, 32, 32])
    """

    def __init__(
        self,
        modality: str,
        split: str = "train",
        size: int = 4096,
        seed: int = 0,
        partial_prob: float = 0.0,
        cache: bool = False,
    ) -> None:
        self.modality = _check_pair_modality(modality)
        self.split = check_split(split)
        if size < 0:
            raise InvalidInputError(f"size must be >= 0; got {size}")
        self.size = int(size)
        self.seed = int(seed)
        self.partial_prob = _check_prob(partial_prob)
        self._cache: RenderedPairs | None = None
        if cache:
            self._cache = render_pairs(modality, split, size, seed, partial_prob)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} items")
        index %= self.size
        if self._cache is not None:
            return self._cache.captions[index], to_tensor(self.modality, self._cache.samples[index])
        text = item_caption(self.split, index, self.seed, self.partial_prob)
        return text, to_tensor(self.modality, item_sample(self.modality, self.split, index, self.seed))

    def scene(self, index: int) -> Scene:
        """The scene of item ``index`` (for analysis; training code sees only the pair)."""
        return scene_at(self.split, index % self.size, self.seed)


class ToyWorldCaptions(Dataset):
    """Captions alone (str), e.g. to train a text VAE/decoder; same items as :class:`ToyWorldPairs`."""

    def __init__(self, split: str = "train", size: int = 4096, seed: int = 0, partial_prob: float = 0.0) -> None:
        self.split = check_split(split)
        if size < 0:
            raise InvalidInputError(f"size must be >= 0; got {size}")
        self.size = int(size)
        self.seed = int(seed)
        self.partial_prob = _check_prob(partial_prob)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> str:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} items")
        return item_caption(self.split, index % self.size, self.seed, self.partial_prob)


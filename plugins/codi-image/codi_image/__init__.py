"""codi-image: the image modality plugin for codi-sdk.

Public classes (imported lazily so that plugin discovery stays fast):

* :class:`ImageModality` — validation, conversion, files, component factories;
* :class:`ImageDiffuser` — ``AutoencoderKL`` + ``UNet2DConditionModel`` with joint attention + environment encoder;
* :class:`ImageEncoder` — ``CLIPVisionModelWithProjection`` prompt encoder.

Reusable helpers for other plugins (e.g. video) live in :mod:`codi_image.diffuser`
(``toyworld_vae_config``, ``toyworld_unet_config``, ``vae_encode``, ``vae_decode``, ``vae_loss``,
``latent_tokens``, ``save_unet_without_joint``) and :mod:`codi_image.encoder` (``clip_preprocess``,
``toyworld_clip_config``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ImageModality": "codi_image.modality",
    "ImageDiffuser": "codi_image.diffuser",
    "ImageEncoder": "codi_image.encoder",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_image' has no attribute {name!r}")

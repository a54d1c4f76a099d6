"""codi-video: the video modality plugin for codi-sdk.

Public classes (imported lazily so that plugin discovery stays fast):

* :class:`VideoModality` — validation, conversion, files, component factories;
* :class:`VideoDiffuser` — the image VAE per frame + the inflated UNet (:class:`VideoUNet`) with joint
  attention + environment encoder;
* :class:`VideoEncoder` — the image CLIP vision encoder per frame + a temporal transformer;
* :func:`latent_shift` / :class:`LatentShift` — CoDi's latent shift.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "VideoModality": "codi_video.modality",
    "VideoDiffuser": "codi_video.diffuser",
    "VideoUNet": "codi_video.unet",
    "VideoEncoder": "codi_video.encoder",
    "latent_shift": "codi_video.latent_shift",
    "LatentShift": "codi_video.latent_shift",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_video' has no attribute {name!r}")

"""codi-sdk: any-to-any generation by composable diffusion, and task graphs of models and services.

Heavy parts (torch models, the composer) are imported lazily so that ``import codi_sdk`` and
``codi --help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .hookspecs import hookimpl
from .version import API_VERSION, __version__

_LAZY = {
    "compose": "codi_sdk.composer",
    "Composer": "codi_sdk.composer",
    "Modality": "codi_sdk.modality",
    "Encoder": "codi_sdk.encoder",
    "EncoderOutput": "codi_sdk.encoder",
    "Diffuser": "codi_sdk.diffuser",
    "Bridge": "codi_sdk.bridge",
    "Registry": "codi_sdk.registry",
    "get_registry": "codi_sdk.registry",
    "ImageOutput": "codi_sdk.outputs",
    "VideoOutput": "codi_sdk.outputs",
    "AudioOutput": "codi_sdk.outputs",
    "TextOutput": "codi_sdk.outputs",
}

__all__ = ["API_VERSION", "__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_sdk' has no attribute {name!r}")

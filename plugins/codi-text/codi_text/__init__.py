"""codi-text: the text modality plugin for codi-sdk. Text is CoDi's bridge modality.

Public classes (imported lazily so that plugin discovery stays fast):

* :class:`TextModality` — validation, conversion, ``.txt`` files, component factories;
* :class:`TextDiffuser` — Optimus-style text VAE + 1-D denoiser with joint attention + environment encoder;
* :class:`TextVAE` — ``BertModel`` encoder -> Gaussian latent ``[B, 4, 8]`` -> ``GPT2LMHeadModel`` decoder;
* :class:`TextDenoiser` — 1-D convolutions + diffusers transformer blocks over the latent tokens;
* :class:`TextEncoder` — ``CLIPTextModelWithProjection`` prompt encoder, the frozen bridge;
* :func:`build_toyworld_tokenizer` — the ToyWorld word-level tokenizer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "TextModality": "codi_text.modality",
    "TextDiffuser": "codi_text.diffuser",
    "TextVAE": "codi_text.vae",
    "TextDenoiser": "codi_text.denoiser",
    "TextEncoder": "codi_text.encoder",
    "build_toyworld_tokenizer": "codi_text.tokenizer",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_text' has no attribute {name!r}")

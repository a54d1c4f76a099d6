"""codi-audio: the audio modality plugin for codi-sdk.

Public classes (imported lazily so that plugin discovery stays fast):

* :class:`AudioModality` — validation, conversion (mono 16 kHz, 1 s), files, component factories;
* :class:`AudioDiffuser` — mel ``AutoencoderKL`` + ``UNet2DConditionModel`` with joint attention +
  environment encoder + ``SpeechT5HifiGan`` vocoder (Griffin-Lim fallback, from a learned
  :class:`MelInverter`'s magnitude); loads AudioLDM folders;
* :class:`AudioEncoder` — CLAP audio tower (``ClapAudioModelWithProjection``) prompt encoder;
* :class:`MelSpectrogram` — AudioLDM's log-mel front end;
* :class:`MelInverter` — learned log-mel -> linear magnitude, for Griffin-Lim.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "AudioModality": "codi_audio.modality",
    "AudioDiffuser": "codi_audio.diffuser",
    "AudioEncoder": "codi_audio.encoder",
    "MelSpectrogram": "codi_audio.mel",
    "MelInverter": "codi_audio.mel",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codi_audio' has no attribute {name!r}")

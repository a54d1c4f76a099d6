"""`AudioEncoder`: the CLAP-style audio prompt encoder C_audio.

CoDi's audio prompt encoder is CLAP's audio tower (HTS-AT, a Swin transformer over the log-mel
spectrogram) followed by CLAP's projection. We use exactly that class, transformers'
``ClapAudioModelWithProjection``, in a tiny configuration for ToyWorld, on our 64-bin AudioLDM
log-mel (100 frames for one second). HTS-AT folds the spectrogram into a square image of side
``spec_size`` (time stretched to ``2 * spec_size`` frames, two halves stacked along frequency):
with ``spec_size=128`` and 8x8 patches the Swin sees a 16x16 grid. Pitch (which mel bins light
up), timbre (the harmonic pattern across bins) and loudness envelope (energy over time) all stay
visible in that input, so all three ToyWorld attributes are learnable.

Output, as for every encoder: ``pooled`` = L2-normalised projection ``[B, 64]``, ``tokens`` =
``pooled[:, None]``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import ClapAudioConfig, ClapAudioModelWithProjection

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.errors import WeightsNotFoundError

from .mel import MelSpectrogram

logger = logging.getLogger(__name__)

#: The ToyWorld configuration of the CLAP audio tower (~0.13 M parameters).
TOYWORLD_CLAP_CONFIG = dict(
    num_mel_bins=64,
    spec_size=128,
    window_size=8,
    patch_size=8,
    patch_stride=[8, 8],
    patch_embeds_hidden_size=48,
    depths=[1, 1],
    num_attention_heads=[2, 4],
    hidden_size=96,
    projection_dim=64,
    mlp_ratio=2.0,
    hidden_dropout_prob=0.0,
)


class AudioEncoder(Encoder):
    """Waveforms ``[B, 16000]`` -> :class:`~codi_sdk.encoder.EncoderOutput` in the shared space.

    ``clap`` is a ``ClapAudioModelWithProjection``; ``mel`` the AudioLDM log-mel front end (the
    encoder's own batch norm over mel bins does the normalising, so ``mel`` keeps shift 0, scale 1).
    """

    modality = "audio"

    def __init__(self, clap: ClapAudioModelWithProjection | None = None, mel: MelSpectrogram | None = None):
        super().__init__()
        self.clap = clap if clap is not None else ClapAudioModelWithProjection(ClapAudioConfig(**TOYWORLD_CLAP_CONFIG))
        self.mel = mel if mel is not None else MelSpectrogram()
        if self.clap.config.num_mel_bins != self.mel.config.n_mels:
            raise ValueError(
                f"CLAP expects {self.clap.config.num_mel_bins} mel bins but the front end makes {self.mel.config.n_mels}"
            )

    @property
    def dim(self) -> int:
        """Size of the shared conditioning space (the projection dimension)."""
        return self.clap.config.projection_dim

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        """``batch``: waveforms ``[B, N]`` at 16 kHz (canonical samples stacked)."""
        if batch.ndim != 2:
            raise ValueError(f"AudioEncoder expects waveforms [B, N], got shape {tuple(batch.shape)}")
        features = self.mel.log_mel(batch)[:, None].to(self.dtype)  # [B, 1, T, n_mels]
        projected = self.clap(input_features=features).audio_embeds
        pooled = F.normalize(projected, dim=-1)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` (the CLAP audio tower) and ``mel_config.json``."""
        folder = Path(path)
        self.clap.save_pretrained(folder)
        self.mel.save_config(folder)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "AudioEncoder":
        """Load from a folder written by :meth:`save_pretrained`.

        A folder without ``mel_config.json`` gets the AudioLDM front end (16 kHz, 64 mels).
        """
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"no audio encoder in {folder}: expected config.json + model.safetensors")
        clap = ClapAudioModelWithProjection.from_pretrained(folder, use_safetensors=True)
        if (folder / MelSpectrogram.config_name).is_file():
            mel = MelSpectrogram.from_config(MelSpectrogram.load_config(folder))
        else:
            logger.warning(
                "no %s in %s: assuming the AudioLDM 16 kHz / 64-mel front end; LAION CLAP checkpoints "
                "expect CLAP's own 48 kHz features instead (see codi_audio.official)", MelSpectrogram.config_name, folder
            )
            mel = MelSpectrogram()
        return cls(clap, mel)

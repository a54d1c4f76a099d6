"""`AudioEncoder`: the CLAP-style audio prompt encoder C_audio.

CoDi's audio prompt encoder is CLAP's audio tower (HTS-AT, a Swin transformer over the log-mel
spectrogram) followed by CLAP's projection. We use exactly that class, transformers'
``ClapAudioModelWithProjection``, in a tiny configuration for ToyWorld. HTS-AT folds the
spectrogram into a square image of side ``spec_size`` (time stretched to ``2 * spec_size``
frames, two halves stacked along frequency): with ``spec_size=128`` and 8x8 patches the Swin
sees a 16x16 grid.

Its front end (``mel``, saved as ``mel_config.json``) is either AudioLDM's 64-bin log-mel (one
channel; what a folder without ``harmonics`` in its front-end config gets) or, in the ToyWorld
weights since session 15, a *harmonic stack* (:meth:`~codi_audio.mel.MelSpectrogram.harmonic_log_spec`,
the HCQT of Bittner et al. 2017): 64 log-spaced bins from 75 Hz to 8 kHz, read at 0.5, 1, 2, 3
and 4 times each bin's frequency, one channel each. At a fundamental's bin the five channels then
hold its sub-octave and its first harmonics, so the patch embedding sees pitch (where) apart
from timbre (which harmonics are there), and a sawtooth's second harmonic reads as a harmonic,
not as the fundamental of the colour an octave up. Loudness envelope stays visible over time.

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
    patch_embed_input_channels=5,
)

#: The ToyWorld front end: the harmonic stack (one channel per entry of ``harmonics``).
TOYWORLD_FRONT_END = dict(frequency_scale="log", f_min=75.0, f_max=8000.0, harmonics=[0.5, 1.0, 2.0, 3.0, 4.0])


class AudioEncoder(Encoder):
    """Waveforms ``[B, 16000]`` -> :class:`~codi_sdk.encoder.EncoderOutput` in the shared space.

    ``clap`` is a ``ClapAudioModelWithProjection``; ``mel`` the front end (the encoder's own batch
    norm over frequency bins does the normalising, so ``mel`` keeps shift 0, scale 1). Neither
    given: the ToyWorld configuration (:data:`TOYWORLD_CLAP_CONFIG`, :data:`TOYWORLD_FRONT_END`);
    only ``clap``: AudioLDM's log-mel; only ``mel``: the ToyWorld tower with one input channel per
    front-end channel.
    """

    modality = "audio"

    def __init__(self, clap: ClapAudioModelWithProjection | None = None, mel: MelSpectrogram | None = None):
        super().__init__()
        if mel is None:
            mel = MelSpectrogram(**TOYWORLD_FRONT_END) if clap is None else MelSpectrogram()
        channels = len(mel.config.harmonics) if mel.config.harmonics is not None else 1
        if clap is None:
            clap = ClapAudioModelWithProjection(ClapAudioConfig(**{**TOYWORLD_CLAP_CONFIG, "patch_embed_input_channels": channels}))
        self.clap, self.mel = clap, mel
        if self.clap.config.num_mel_bins != self.mel.config.n_mels:
            raise ValueError(
                f"CLAP expects {self.clap.config.num_mel_bins} mel bins but the front end makes {self.mel.config.n_mels}"
            )
        if self.clap.config.patch_embed_input_channels != channels:
            raise ValueError(
                f"CLAP expects {self.clap.config.patch_embed_input_channels} input channel(s) but the front end makes "
                f"{channels} (harmonics {mel.config.harmonics}): give a front end with that many harmonics, or none for 1"
            )

    @property
    def dim(self) -> int:
        """Size of the shared conditioning space (the projection dimension)."""
        return self.clap.config.projection_dim

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        """``batch``: waveforms ``[B, N]`` at 16 kHz (canonical samples stacked)."""
        if batch.ndim != 2:
            raise ValueError(f"AudioEncoder expects waveforms [B, N], got shape {tuple(batch.shape)}")
        if self.mel.config.harmonics is not None:
            features = self.mel.harmonic_log_spec(batch).to(self.dtype)  # [B, H, T, n_mels]
        else:
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

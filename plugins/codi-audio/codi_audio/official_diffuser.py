"""The audio modality on converted official CoDi weights: :class:`OfficialAudioDiffuser` and
:class:`OfficialAudioEncoder`, built from a folder written by ``codi convert-official``.

``AudioModality.load_diffuser`` / ``load_encoder`` return these when given a converted root (or its
``audio/`` sub-folder). Generation follows the official inference code: the audio UNet (a diffusers
``UNet2DConditionModel``, 8 latent channels) denoises ``[B, 8, 256, 16]`` latents (10.24 s), the
AudioLDM VAE decodes ``latent / 0.9228`` (after clipping to ±10 when some value exceeds 100) into a
log-mel image, and the HiFi-GAN vocoder turns it into 16 kHz audio. Prompts are CLAP (HTSAT)
audio embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.official.diffuser import OfficialUNet2DDiffuser
from codi_sdk.official.folder import OfficialFolder

from .official import load_official_component


def load_part(folder: OfficialFolder, name: str, dtype: torch.dtype | None = None) -> nn.Module:
    """Component ``name`` of ``folder`` in eval mode (a clear error if it was not converted)."""
    folder.require(name)
    return load_official_component(folder.root, f"{folder.modality}/{name}", dtype=dtype).eval()


def _spatial(sample_size: Any) -> tuple[int, int]:
    if isinstance(sample_size, (list, tuple)):
        return int(sample_size[0]), int(sample_size[1])
    return int(sample_size), int(sample_size)


class OfficialAudioDiffuser(OfficialUNet2DDiffuser):
    """Official CoDi audio diffusion: AudioLDM VAE + HiFi-GAN + audio UNet (+ environment, joint).

    ``decode`` returns float32 waveforms ``[N]`` at 16 kHz (163 840 samples = 10.24 s for the
    official latent), peak-normalised only when they exceed [-1, 1].
    """

    modality = "audio"
    #: Upstream clips latents to ±``DECODE_CLIP`` before decoding when their magnitude exceeds 100.
    DECODE_CLIP = 10.0

    def __init__(
        self,
        vae: nn.Module,
        vocoder: nn.Module,
        unet: nn.Module,
        env_encoder: nn.Module | None = None,
        joint: nn.Module | None = None,
        mel: nn.Module | None = None,
        *,
        scale_factor: float = 0.9228,
        scheduler_config: dict[str, Any] | None = None,
    ):
        from codi_sdk.official.profile import SCHEDULER_CONFIG

        super().__init__(
            latent_shape=(unet.config.in_channels, *_spatial(unet.config.sample_size)),
            scale_factor=scale_factor,
            scheduler_config=scheduler_config or SCHEDULER_CONFIG,
            context_dim=unet.config.cross_attention_dim,
            env_dim=joint.config.env_dim if joint is not None else None,
        )
        self.vae = vae
        self.vocoder = vocoder
        self.mel = mel
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialAudioDiffuser":
        """Load from a converted root's ``audio/`` folders (``vae``, ``vocoder``, ``unet``; ``mel``,
        ``env_encoder`` and ``joint`` when present)."""

        def optional(name):
            return load_part(folder, name, dtype) if folder.has(name) else None

        return cls(
            load_part(folder, "vae", dtype),
            load_part(folder, "vocoder", dtype),
            load_part(folder, "unet", dtype),
            optional("env_encoder"),
            optional("joint"),
            optional("mel"),
            scale_factor=folder.info["scale_factor"],
            scheduler_config=folder.scheduler_config,
        ).eval()

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """16 kHz waveforms ``[B, N]`` -> scaled latents (AudioLDM log-mel, VAE posterior mean × 0.9228)."""
        if self.mel is None:
            raise NotImplementedError("encoding audio needs the audio/mel folder of the converted weights")
        ratio = 2 ** (len(self.vae.config.block_out_channels) - 1)
        mel = self.mel(batch.to(self.device).float(), num_frames=self.latent_shape[1] * ratio).to(self.dtype)
        return self.vae.encode(mel).latent_dist.mode() * self.latent_scale

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents -> waveforms ``[N]`` (float32, 16 kHz, on the CPU)."""
        z = latents.to(self.dtype)
        if z.abs().max() > 100:
            z = z.clamp(-self.DECODE_CLIP, self.DECODE_CLIP)
        mel = self.vae.decode(z / self.latent_scale).sample  # [B, 1, frames, mels]
        waves = self.vocoder(mel.squeeze(1)).float().cpu()
        if waves.ndim == 1:
            waves = waves[None]
        peak = waves.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
        return list(waves / peak)


class OfficialAudioEncoder(Encoder):
    """CoDi's audio prompt encoder: CLAP HTSAT-large embedding of 16 kHz audio, L2-normalised.

    ``forward(waveforms [B, N])`` -> ``EncoderOutput(tokens [B, 1, 768], pooled [B, 768])``.
    """

    modality = "audio"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialAudioEncoder":
        """Load ``<root>/audio/encoder`` (CoDiCLAPAudioEncoder)."""
        return cls(load_part(folder, "encoder", dtype)).eval()

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        pooled = self.model.embed(batch.to(self.device))
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

"""The image modality on converted official CoDi weights: :class:`OfficialImageDiffuser` and
:class:`OfficialImageEncoder`, built from a folder written by ``codi convert-official``.

``ImageModality.load_diffuser`` / ``load_encoder`` return these when given a converted root (or its
``image/`` sub-folder). The denoiser is the official image UNet stored as a diffusers
``UNet2DConditionModel``, run by :func:`codi_sdk.official.unet.unet2d_forward` with the official
joint layers; the VAE is SD's kl-f8 (latents × 0.18215); prompts are CLIP ViT-L/14 image
embeddings (one unit 768-d token).

Example:
    >>> from codi_sdk import Composer                                    # doctest: +SKIP
    >>> c = Composer(weights={"text": "codi-official", "image": "codi-official"})
    >>> c({"text": "a cat on a sofa"}, "image", seed=0)["image"][0].save("cat.png")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.official.diffuser import OfficialUNet2DDiffuser
from codi_sdk.official.folder import OfficialFolder

from .official import clip_pixels, load_official_component


def spatial_size(sample_size: Any) -> tuple[int, int]:
    """A diffusers ``sample_size`` (an int, or ``[H, W]``) as ``(H, W)``."""
    if isinstance(sample_size, (list, tuple)):
        return int(sample_size[0]), int(sample_size[1])
    return int(sample_size), int(sample_size)


def load_part(folder: OfficialFolder, name: str, dtype: torch.dtype | None = None) -> nn.Module:
    """Component ``name`` of ``folder`` in eval mode (a clear error if it was not converted)."""
    folder.require(name)
    return load_official_component(folder.root, f"{folder.modality}/{name}", dtype=dtype).eval()


def _optional(folder: OfficialFolder, name: str, dtype: torch.dtype | None) -> nn.Module | None:
    return load_part(folder, name, dtype) if folder.has(name) else None


class OfficialImageDiffuser(OfficialUNet2DDiffuser):
    """Official CoDi image diffusion: VAE + UNet (+ environment encoder and joint layers).

    Latents are ``[B, 4, H/8, W/8]`` (``(4, 32, 32)`` for 256×256 images), scaled by 0.18215.
    ``denoise(z_t, t, context [B, K, 768], env [B, 1, 1280] | None)``.
    """

    modality = "image"

    def __init__(
        self,
        vae: nn.Module,
        unet: nn.Module,
        env_encoder: nn.Module | None = None,
        joint: nn.Module | None = None,
        *,
        scale_factor: float = 0.18215,
        scheduler_config: dict[str, Any] | None = None,
    ):
        from codi_sdk.official.profile import SCHEDULER_CONFIG

        super().__init__(
            latent_shape=self._latent_shape(unet),
            scale_factor=scale_factor,
            scheduler_config=scheduler_config or SCHEDULER_CONFIG,
            context_dim=unet.config.cross_attention_dim,
            env_dim=joint.config.env_dim if joint is not None else None,
        )
        self.vae = vae
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint

    def _latent_shape(self, unet) -> tuple[int, ...]:
        return (unet.config.in_channels, *spatial_size(unet.config.sample_size))

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialImageDiffuser":
        """Load from a converted root's ``image/`` folders (``vae``, ``unet``; ``env_encoder`` and
        ``joint`` when present)."""
        return cls(
            load_part(folder, "vae", dtype),
            load_part(folder, "unet", dtype),
            _optional(folder, "env_encoder", dtype),
            _optional(folder, "joint", dtype),
            scale_factor=folder.info["scale_factor"],
            scheduler_config=folder.scheduler_config,
        ).eval()

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> scaled latents (the posterior mean × 0.18215)."""
        x = batch.to(self.device, self.dtype)
        return self.vae.encode(x).latent_dist.mode() * self.latent_scale

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents -> images ``[3, H, W]`` in [-1, 1] (float32, on the CPU)."""
        x = self.vae.decode(latents.to(self.dtype) / self.latent_scale).sample
        return list(x.float().clamp(-1, 1).cpu())


class OfficialImageEncoder(Encoder):
    """CoDi's image prompt encoder: CLIP ViT-L/14 image embedding, L2-normalised.

    ``forward(images [B, 3, H, W] in [-1, 1])`` -> ``EncoderOutput(tokens [B, 1, 768], pooled [B, 768])``;
    images are resized and centre-cropped to CLIP's 224×224 and CLIP-normalised.
    """

    modality = "image"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialImageEncoder":
        """Load ``<root>/<modality>/encoder`` (CoDiCLIPVisionEncoder)."""
        return cls(load_part(folder, "encoder", dtype)).eval()

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        pixels = clip_pixels(batch, size=self.model.config.image_size).to(self.device, self.dtype)
        pooled = self.model.embed(pixels)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

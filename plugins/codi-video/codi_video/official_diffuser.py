"""The video modality on converted official CoDi weights: :class:`OfficialVideoDiffuser` and
:class:`OfficialVideoEncoder`, built from a folder written by ``codi convert-official``.

Official CoDi generates video with its image UNet plus 25 video layers (``video/temporal``); the
other video folders are the image ones. Latents are ``[B, 4, 8, H/8, W/8]`` (8 frames, 0.18215),
decoded frame by frame by the image VAE. Prompts are CLIP ViT-L/14 embeddings of the frames with
CoDi's temporal layers (``CoDiCLIPVisionEncoder.embed`` on ``[B, T, 3, H, W]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codi_image.official_diffuser import OfficialImageDiffuser, OfficialImageEncoder, load_part, spatial_size
from codi_sdk.official.folder import OfficialFolder
from codi_sdk.official.unet import unet2d_forward


class OfficialVideoDiffuser(OfficialImageDiffuser):
    """Official CoDi video diffusion: image VAE + image UNet + video layers (+ environment, joint).

    ``latent_shape`` is ``(4, num_frames, H/8, W/8)``; ``decode`` returns ``[T, 3, H, W]`` in [-1, 1].
    """

    modality = "video"

    def __init__(
        self,
        vae: nn.Module,
        unet: nn.Module,
        temporal: nn.Module,
        env_encoder: nn.Module | None = None,
        joint: nn.Module | None = None,
        *,
        num_frames: int = 8,
        scale_factor: float = 0.18215,
        scheduler_config: dict[str, Any] | None = None,
    ):
        self.num_frames = int(num_frames)
        super().__init__(vae, unet, env_encoder, joint, scale_factor=scale_factor, scheduler_config=scheduler_config)
        self.temporal = temporal

    def _latent_shape(self, unet) -> tuple[int, ...]:
        return (unet.config.in_channels, self.num_frames, *spatial_size(unet.config.sample_size))

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialVideoDiffuser":
        """Load from a converted root's ``video/`` folders (``vae``, ``unet``, ``temporal``;
        ``env_encoder`` and ``joint`` when present)."""
        return cls(
            load_part(folder, "vae", dtype),
            load_part(folder, "unet", dtype),
            load_part(folder, "temporal", dtype),
            load_part(folder, "env_encoder", dtype) if folder.has("env_encoder") else None,
            load_part(folder, "joint", dtype) if folder.has("joint") else None,
            num_frames=folder.info.get("num_frames", 8),
            scale_factor=folder.info["scale_factor"],
            scheduler_config=folder.scheduler_config,
        ).eval()

    def denoise(self, z_t: torch.Tensor, t, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        self._check(context, env)
        out = unet2d_forward(
            self.unet, z_t.to(self.dtype), t, context.to(self.dtype),
            env=env, joint=self.joint if env is not None else None, temporal=self.temporal,
        )
        return out.to(z_t.dtype)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Videos ``[B, T, 3, H, W]`` in [-1, 1] -> scaled latents ``[B, 4, T, H/8, W/8]``."""
        b, t = batch.shape[:2]
        z = super().encode(batch.flatten(0, 1))
        return z.view(b, t, *z.shape[1:]).transpose(1, 2)

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents ``[B, 4, T, h, w]`` -> videos ``[T, 3, H, W]`` in [-1, 1], frame by frame."""
        b, c, t = latents.shape[:3]
        frames = super().decode(latents.transpose(1, 2).reshape(b * t, c, *latents.shape[3:]))
        return list(torch.stack(frames).view(b, t, *frames[0].shape))


class OfficialVideoEncoder(OfficialImageEncoder):
    """CoDi's video prompt encoder: CLIP ViT-L/14 with its temporal layers over the frames.

    ``forward(videos [B, T, 3, H, W] in [-1, 1])`` -> ``EncoderOutput(tokens [B, 1, 768], pooled [B, 768])``
    (``CoDiCLIPVisionEncoder.embed`` runs the temporal layers on 5-D input).
    """

    modality = "video"

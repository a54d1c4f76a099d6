"""`SketchDiffuser`: the sketch's latent diffusion model, built from diffusers classes.

* VAE: ``AutoencoderKL``, 1×32×32 sketches <-> 4×8×8 latents;
* denoiser: ``UNet2DConditionModel`` on the latent, cross-attending to the prompt context
  ``[B, 1, 64]`` (the shared space), with joint attention (``codi_sdk.joint_attention``) onto the
  other streams' environment tokens;
* environment encoder: ``codi_sdk.env_encoder.EnvironmentEncoder`` -> ``[B, 4, 64]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from codi_sdk.diffuser import Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

#: Width of the shared conditioning space and of the environment tokens (ToyWorld contract).
DIM = 64
#: How much more an outline pixel counts than a background pixel in the VAE loss.
OUTLINE_WEIGHT = 10.0


def vae_config() -> dict:
    """1×32×32 -> 4×8×8: three levels (two downsamplings), one ResNet layer each."""
    return dict(
        in_channels=1, out_channels=1, latent_channels=4, sample_size=32, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[32, 32, 64], norm_num_groups=32,
    )


def unet_config() -> dict:
    """A small UNet on the 4×8×8 latent; cross-attention (to context and environment) at 8×8."""
    return dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[64, 64],
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=DIM, attention_head_dim=8, norm_num_groups=32,
    )


class SketchDiffuser(Diffuser):
    """VAE + denoiser with joint attention + environment encoder of the sketch modality."""

    modality = "sketch"
    latent_shape = (4, 8, 8)
    env_dim = DIM

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, env_encoder: EnvironmentEncoder, joint=None):
        super().__init__()
        self.vae, self.unet, self.env_encoder = vae, unet, env_encoder
        # zero-initialised cross-attention onto `env`: a new joint layer leaves the denoiser unchanged
        self.joint = joint if joint is not None else add_joint_attention(unet, DIM)

    @classmethod
    def toyworld(cls) -> "SketchDiffuser":
        """A new, untrained diffuser (what ``codi train`` starts from)."""
        env = EnvironmentEncoder(in_channels=4, max_tokens=64, num_tokens=4, out_dim=DIM)
        return cls(AutoencoderKL(**vae_config()), UNet2DConditionModel(**unet_config()), env)

    # -- the Diffuser interface ------------------------------------------------------------------
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Sketches ``[B, 1, 32, 32]`` -> scaled latents ``[B, 4, 8, 8]`` (posterior mean)."""
        mean = self.vae.encode(batch.to(self.device, self.dtype)).latent_dist.mean
        return mean * self.latent_scale

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents -> a list of sketches ``[1, 32, 32]`` in [-1, 1]."""
        images = self.vae.decode(latents.to(self.device, self.dtype) / self.latent_scale).sample
        return list(images.clamp(-1, 1).unbind(0))

    def denoise(self, z_t, t, context, env=None) -> torch.Tensor:
        """ε(z_t, t, context, env); ``env=None`` runs without joint attention."""
        kwargs = {"env": env.to(self.dtype)} if env is not None else None
        return self.unet(z_t, t, encoder_hidden_states=context.to(self.dtype), cross_attention_kwargs=kwargs).sample

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, 4, 8, 8]`` -> 64 tokens ``[B, 64, 4]`` for the environment encoder."""
        return z.flatten(2).transpose(1, 2)

    def vae_loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted L1 reconstruction of a sampled latent + 1e-6 × KL (the LDM recipe).

        A sketch is ~96 % background: with a plain L1 the VAE first learns an all-black picture,
        so outline pixels weigh ``OUTLINE_WEIGHT`` times more.
        """
        batch = batch.to(self.device, self.dtype)
        posterior = self.vae.encode(batch).latent_dist
        error = (self.vae.decode(posterior.sample()).sample - batch).abs()
        weight = 1 + (OUTLINE_WEIGHT - 1) * (batch > 0).to(batch.dtype)
        rec = (weight * error).sum() / weight.sum()
        kl = posterior.kl().mean() / batch[0].numel()
        return {"loss": rec + 1e-6 * kl, "rec": rec.detach(), "kl": kl.detach()}

    # -- weights: one save_pretrained folder per component ---------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``vae/``, ``unet/`` (base weights only), ``env_encoder/`` and ``joint/``."""
        root = Path(path)
        self.vae.save_pretrained(root / "vae")
        joint_processors = self.unet.attn_processors
        self.unet.set_attn_processor(AttnProcessor2_0())  # keep unet/ a plain diffusers folder
        try:
            self.unet.save_pretrained(root / "unet")
        finally:
            self.unet.set_attn_processor(joint_processors)
        self.env_encoder.save_pretrained(root / "env_encoder")
        save_joint_attention(self.joint, root / "joint", DIM)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "SketchDiffuser":
        """Load a folder written by :meth:`save_pretrained`."""
        root = Path(path)
        missing = [c for c in ("vae", "unet", "env_encoder", "joint") if not (root / c / "config.json").is_file()]
        if missing:
            raise WeightsNotFoundError(f"{root} lacks {', '.join(missing)}; a sketch diffuser folder holds vae/, unet/, env_encoder/, joint/")
        if json.loads((root / "joint" / "config.json").read_text())["env_dim"] != DIM:
            raise WeightsNotFoundError(f"{root}/joint was trained for another environment width than {DIM}")
        unet = UNet2DConditionModel.from_pretrained(root / "unet", use_safetensors=True)
        model = cls(
            AutoencoderKL.from_pretrained(root / "vae", use_safetensors=True),
            unet,
            EnvironmentEncoder.from_pretrained(root / "env_encoder", use_safetensors=True),
            joint=load_joint_attention(unet, root / "joint"),
        )
        return model.eval()

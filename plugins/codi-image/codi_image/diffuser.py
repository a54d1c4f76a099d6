"""The image diffuser: diffusers ``AutoencoderKL`` + ``UNet2DConditionModel`` + environment encoder.

Two sizes share one class:

* **ToyWorld** (:meth:`ImageDiffuser.toyworld`): 32×32×3 images <-> 4×8×8 latents, a 1.4 M-parameter
  UNet on the latent, environment tokens ``[B, 4, 64]``.
* **Real**: :meth:`ImageDiffuser.from_pretrained` on a diffusers Stable Diffusion 1.5 folder (its
  ``vae/`` and ``unet/``) — 512×512 images <-> 4×64×64 latents; joint attention is added with
  ``env_dim`` = the UNet's ``cross_attention_dim`` and a new, untrained environment encoder.

The module-level helpers (:func:`toyworld_vae_config`, :func:`toyworld_unet_config`,
:func:`vae_encode`, :func:`vae_decode`, :func:`vae_loss`, :func:`latent_tokens`) work on any
``AutoencoderKL`` / image-shaped latent, so the video plugin reuses them frame by frame.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from einops import rearrange
from torch import nn

from codi_sdk.diffuser import Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

logger = logging.getLogger(__name__)

#: Image side of the ToyWorld configuration, in pixels.
TOYWORLD_SIZE = 32
#: Shared environment / conditioning width of ToyWorld.
TOYWORLD_DIM = 64
#: Environment tokens per stream (ToyWorld contract).
ENV_TOKENS = 4
#: Most latent tokens a new environment encoder reads; larger latents are pooled (:func:`latent_tokens`).
MAX_ENV_INPUT_TOKENS = 256


# -- configs ------------------------------------------------------------------------------------
def toyworld_vae_config(size: int = TOYWORLD_SIZE, scaling_factor: float = 1.0) -> dict[str, Any]:
    """``AutoencoderKL`` config of ToyWorld: ``size``×``size``×3 -> 4×(size/4)×(size/4), 0.73 M params.

    ``scaling_factor`` is what :func:`vae_encode` multiplies the latent mean by; training sets it to
    1/std of the latents (:meth:`ImageDiffuser.calibrate_scaling_factor` or ``set_latent_scale``).
    """
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [32, 32, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": size,
        "scaling_factor": scaling_factor,
    }


def toyworld_unet_config(
    latent_size: int = TOYWORLD_SIZE // 4,
    in_channels: int = 4,
    cross_attention_dim: int = TOYWORLD_DIM,
) -> dict[str, Any]:
    """``UNet2DConditionModel`` config of ToyWorld on the 4×8×8 latent (1.4 M params).

    Two levels of 64 channels, cross-attention to the prompt context in the outer level and the
    mid block, 8 heads of 8 features (diffusers' ``attention_head_dim`` is the head count here).
    """
    return {
        "sample_size": latent_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": [64, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "layers_per_block": 1,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def toyworld_env_encoder_config(in_channels: int = 4, num_latent_tokens: int = (TOYWORLD_SIZE // 4) ** 2) -> dict[str, Any]:
    """``EnvironmentEncoder`` config of ToyWorld: 64 latent tokens of 4 channels -> ``[B, 4, 64]``.

    ``flat_hidden``: an MLP on the flattened latent beside the attention layer; without it the
    environment encoder did not learn to read *shape* from the 4×8×8 latent in stage 3 (46 % on a
    3-way probe even on clean latents; 92 % with it, after 1 500 steps), so no shape could pass
    between outputs generated together."""
    return {"in_channels": in_channels, "max_tokens": num_latent_tokens, "num_tokens": ENV_TOKENS, "out_dim": TOYWORLD_DIM,
            "flat_hidden": 256}


# -- VAE helpers (shared with the video plugin) ---------------------------------------------------
def _shift(vae: AutoencoderKL) -> float:
    return float(getattr(vae.config, "shift_factor", None) or 0.0)


def vae_latent_shape(vae: AutoencoderKL) -> tuple[int, int, int]:
    """``(C, h, w)`` of the latent of one image at the VAE's ``sample_size`` (SD 1.5: 4×64×64)."""
    size = vae.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return (vae.config.latent_channels, h // factor, w // factor)


def vae_encode(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [-1, 1] -> scaled latents: posterior mean × ``scaling_factor``."""
    images = images.to(vae.device, vae.dtype)
    mean = vae.encode(images).latent_dist.mean
    return (mean - _shift(vae)) * vae.config.scaling_factor


def vae_decode(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``[B, C, h, w]`` -> images ``[B, 3, H, W]`` clamped to [-1, 1]."""
    latents = latents.to(vae.device, vae.dtype)
    images = vae.decode(latents / vae.config.scaling_factor + _shift(vae)).sample
    return images.clamp(-1.0, 1.0)


def vae_loss(vae: AutoencoderKL, images: torch.Tensor, kl_weight: float = 1e-6, rec: str = "l1") -> dict[str, torch.Tensor]:
    """VAE training loss on images ``[B, 3, H, W]`` in [-1, 1] (a latent is *sampled*).

    ``rec`` is the per-element mean ``"l1"`` or ``"mse"``; ``kl`` is the KL to N(0, I) summed over
    a latent and divided by the number of input elements, so ``kl_weight`` means what it does in
    the LDM recipe (1e-6). Returns ``{"loss", "rec", "kl"}``.
    """
    if rec not in ("l1", "mse"):
        raise ValueError(f"rec must be 'l1' or 'mse', got {rec!r}")
    images = images.to(vae.device, vae.dtype)
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample()).sample
    rec_loss = F.l1_loss(recon, images) if rec == "l1" else F.mse_loss(recon, images)
    kl = posterior.kl().mean() / images[0].numel()
    return {"loss": rec_loss + kl_weight * kl, "rec": rec_loss.detach(), "kl": kl.detach()}


def latent_tokens(z: torch.Tensor, max_tokens: int | None = None) -> torch.Tensor:
    """Image latents ``[B, C, h, w]`` -> tokens ``[B, h·w, C]`` for the environment encoder.

    With ``max_tokens``, a larger latent is first average-pooled by the smallest integer factor
    that fits (SD 1.5's 64×64 latent -> 16×16 = 256 tokens), so attention in V stays cheap.
    """
    h, w = z.shape[-2:]
    if max_tokens is not None and h * w > max_tokens:
        factor = 2
        while math.ceil(h / factor) * math.ceil(w / factor) > max_tokens:
            factor += 1
        z = F.avg_pool2d(z, factor, ceil_mode=True)
    return rearrange(z, "b c h w -> b (h w) c")


def _default_processors(unet: nn.Module) -> dict[str, AttnProcessor2_0]:
    return {name: AttnProcessor2_0() for name in unet.attn_processors}


def save_unet_without_joint(unet: UNet2DConditionModel, path: str | os.PathLike) -> None:
    """``unet.save_pretrained(path)`` with only the base weights (joint processors left out), so the
    folder stays a plain diffusers UNet folder and joint attention is saved on its own."""
    installed = unet.attn_processors
    unet.set_attn_processor(_default_processors(unet))
    try:
        unet.save_pretrained(path, safe_serialization=True)
    finally:
        unet.set_attn_processor(installed)


# -- the diffuser ---------------------------------------------------------------------------------
class ImageDiffuser(Diffuser):
    """VAE (``AutoencoderKL``), denoiser (``UNet2DConditionModel`` with joint attention) and
    environment encoder of the image modality.

    Args:
        vae: the image autoencoder.
        unet: the denoiser on the VAE's latent; its cross-attention takes the prompt ``context``.
        env_encoder: V(z_t, t); default: a new one with ``out_dim = env_dim``.
        env_dim: feature size of the environment tokens joint attention accepts; default: the
            env encoder's ``out_dim`` if given, else the UNet's ``cross_attention_dim``.
        joint: already installed joint-attention layers (``from_pretrained`` passes them);
            default: install new, zero-initialised ones on ``unet``.
        kl_weight, rec: the VAE loss (:func:`vae_loss`).
    """

    modality = "image"

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        env_encoder: EnvironmentEncoder | None = None,
        env_dim: int | None = None,
        joint: nn.ModuleDict | None = None,
        kl_weight: float = 1e-6,
        rec: str = "l1",
    ):
        super().__init__()
        self.latent_shape = vae_latent_shape(vae)
        if unet.config.in_channels != self.latent_shape[0]:
            raise ValueError(
                f"unet.in_channels={unet.config.in_channels} does not match the VAE's latent_channels={self.latent_shape[0]}"
            )
        if env_dim is None:
            env_dim = env_encoder.config.out_dim if env_encoder is not None else cross_dim(unet)
        if env_encoder is None:
            c, h, w = self.latent_shape
            env_encoder = EnvironmentEncoder(
                in_channels=c, max_tokens=min(h * w, MAX_ENV_INPUT_TOKENS), num_tokens=ENV_TOKENS, out_dim=env_dim
            )
        elif env_encoder.config.out_dim != env_dim:
            raise ValueError(f"env_encoder.out_dim={env_encoder.config.out_dim} differs from env_dim={env_dim}")
        self.env_dim = int(env_dim)
        self.vae = vae
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint if joint is not None else add_joint_attention(unet, self.env_dim)
        self.kl_weight = kl_weight
        self.rec = rec

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def toyworld(cls) -> "ImageDiffuser":
        """A new, untrained diffuser in the ToyWorld configuration (32×32 images, 4×8×8 latents)."""
        vae = AutoencoderKL(**toyworld_vae_config())
        unet = UNet2DConditionModel(**toyworld_unet_config())
        env = EnvironmentEncoder(**toyworld_env_encoder_config())
        return cls(vae, unet, env, env_dim=TOYWORLD_DIM)

    @property
    def image_size(self) -> int:
        """Side in pixels of the images this diffuser encodes and decodes (32 in ToyWorld)."""
        size = self.vae.config.sample_size
        return size if isinstance(size, int) else size[0]

    # -- Diffuser interface ------------------------------------------------------------------------
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> scaled latents ``[B, *latent_shape]``."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(batch.shape)}")
        return vae_encode(self.vae, batch)

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents -> a list of images ``[3, H, W]`` in [-1, 1]."""
        return list(vae_decode(self.vae, latents).unbind(0))

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """ε(z_t, t, context, env): ``context`` ``[B, K, cross_attention_dim]``, ``env`` ``[B, Le, env_dim]`` or None."""
        kwargs = {"env": env.to(self.dtype)} if env is not None else None
        return self.unet(z_t, t, encoder_hidden_states=context.to(self.dtype), cross_attention_kwargs=kwargs).sample

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``b c h w -> b (h w) c``, pooled to at most the env encoder's ``max_tokens``."""
        return latent_tokens(z, self.env_encoder.config.max_tokens)

    def vae_loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return vae_loss(self.vae, batch, kl_weight=self.kl_weight, rec=self.rec)

    @torch.no_grad()
    def calibrate_scaling_factor(self, batch: torch.Tensor) -> float:
        """Set the VAE's ``scaling_factor`` to 1/std of the latent means of ``batch`` (as SD did)."""
        mean = self.vae.encode(batch.to(self.device, self.dtype)).latent_dist.mean
        factor = float(1.0 / mean.float().std().clamp_min(1e-6))
        self.set_latent_scale(factor)
        return factor

    # -- weights -----------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``vae/``, ``unet/`` (base weights only), ``env_encoder/`` and ``joint/`` under ``path``."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(root / "vae", safe_serialization=True)
        save_unet_without_joint(self.unet, root / "unet")
        self.env_encoder.save_pretrained(root / "env_encoder", safe_serialization=True)
        save_joint_attention(self.joint, root / "joint", self.env_dim)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None, variant: str | None = None) -> "ImageDiffuser":
        """Load from a folder holding ``vae/`` and ``unet/`` (and, if ours, ``env_encoder/``, ``joint/``).

        A diffusers Stable Diffusion 1.5 folder loads as is: joint attention is added with
        ``env_dim`` = the UNet's ``cross_attention_dim``, and the environment encoder is new and
        untrained (a warning says so). Only safetensors weights are read.
        """
        root = Path(path)
        for part in ("vae", "unet"):
            if not (root / part / "config.json").is_file():
                raise WeightsNotFoundError(
                    f"{root} has no {part}/config.json; an image weights folder holds vae/ and unet/ "
                    "(diffusers save_pretrained layout, e.g. Stable Diffusion 1.5), optionally env_encoder/ and joint/"
                )
        kw: dict[str, Any] = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        if variant is not None:
            kw["variant"] = variant
        vae = AutoencoderKL.from_pretrained(root / "vae", **kw)
        unet = UNet2DConditionModel.from_pretrained(root / "unet", **kw)
        joint = env_dim = None
        if (root / "joint" / "config.json").is_file():
            env_dim = json.loads((root / "joint" / "config.json").read_text())["env_dim"]
            joint = load_joint_attention(unet, root / "joint")
        env_encoder = None
        if (root / "env_encoder" / "config.json").is_file():
            env_encoder = EnvironmentEncoder.from_pretrained(root / "env_encoder", **kw)
        else:
            logger.warning("%s has no env_encoder/: the image environment encoder is new and untrained", root)
        model = cls(vae, unet, env_encoder, env_dim=env_dim, joint=joint)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()


def cross_dim(unet: UNet2DConditionModel, hint: str = "pass env_dim explicitly") -> int:
    """The UNet's single ``cross_attention_dim`` (a per-block list must hold one value)."""
    dim = unet.config.cross_attention_dim
    if isinstance(dim, (list, tuple)):
        if len(set(dim)) != 1:
            raise ValueError(f"UNet has per-block cross_attention_dim {dim}; {hint}")
        dim = dim[0]
    return int(dim)

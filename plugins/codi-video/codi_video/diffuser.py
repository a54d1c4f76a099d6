"""The video diffuser: the image VAE frame by frame, an inflated image UNet, an environment encoder.

Latent layout: one video's latent is ``[T, C, h, w]`` — frames first, each frame the image VAE's
latent (ToyWorld: ``latent_shape = (8, 4, 8, 8)``), so ``z.flatten(0, 1)`` is a batch of image
latents ordered video by video. The denoiser is a :class:`~codi_video.unet.VideoUNet`: the image
``UNet2DConditionModel`` plus temporal attention and latent shift that start as the identity.

Joint attention (codi_sdk) sits on the image UNet's spatial cross-attention layers; the
environment ``env`` ``[B, 4, 64]`` is per video and shared by its frames. The environment encoder
reads the latent average-pooled 2×2 per frame (ToyWorld: 8 × 4 × 4 = 128 tokens of 4 channels).

:meth:`VideoDiffuser.from_image_diffuser` / :meth:`VideoDiffuser.from_image_pretrained` inflate a
(trained) image diffuser: its VAE, UNet and joint-attention weights are copied unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from codi_image.diffuser import (
    ENV_TOKENS,
    ImageDiffuser,
    cross_dim,
    vae_decode,
    vae_encode,
    vae_latent_shape,
    vae_loss,
)
from diffusers import AutoencoderKL, UNet2DConditionModel
from einops import rearrange
from torch import nn

from codi_sdk.diffuser import Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

from .unet import VideoUNet

logger = logging.getLogger(__name__)

#: Frames per video in ToyWorld.
NUM_FRAMES = 8
#: Side of the average pooling applied to each frame's latent before the environment encoder.
ENV_POOL = 2
#: ToyWorld's noise prior: half of the noise variance is shared by the frames of a video.
TOYWORLD_NOISE_CORRELATION = 0.5


class VideoDiffuser(Diffuser):
    """VAE (image ``AutoencoderKL`` per frame), denoiser (:class:`VideoUNet` with joint attention)
    and environment encoder of the video modality.

    Args:
        vae: the image autoencoder, applied to each frame.
        unet: the inflated denoiser.
        env_encoder: V(z_t, t); default: new, reading ``T·(h/2)·(w/2)`` pooled latent tokens.
        env_dim: feature size of environment tokens; default: the env encoder's ``out_dim`` if
            given, else the UNet's ``cross_attention_dim``.
        joint: installed joint-attention layers (``from_pretrained`` passes them); default: new,
            zero-initialised ones on the image UNet's cross-attention layers.
        num_frames: frames per video ``T``.
        kl_weight, rec: the frame-wise VAE loss (``codi_image.diffuser.vae_loss``).
    """

    modality = "video"

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: VideoUNet,
        env_encoder: EnvironmentEncoder | None = None,
        env_dim: int | None = None,
        joint: nn.ModuleDict | None = None,
        num_frames: int = NUM_FRAMES,
        kl_weight: float = 1e-6,
        rec: str = "l1",
    ):
        super().__init__()
        c, h, w = vae_latent_shape(vae)
        if unet.config.in_channels != c:
            raise ValueError(f"unet.in_channels={unet.config.in_channels} does not match the VAE's latent_channels={c}")
        max_frames = unet.temporal.config.max_frames
        if num_frames > max_frames:
            raise ValueError(f"num_frames={num_frames} exceeds the temporal layers' max_frames={max_frames}")
        self.latent_shape = (num_frames, c, h, w)
        if env_dim is None:
            env_dim = env_encoder.config.out_dim if env_encoder is not None else cross_dim(unet.unet)
        if env_encoder is None:
            env_encoder = EnvironmentEncoder(
                in_channels=c, max_tokens=num_tokens(self.latent_shape), num_tokens=ENV_TOKENS, out_dim=env_dim
            )
        elif env_encoder.config.out_dim != env_dim:
            raise ValueError(f"env_encoder.out_dim={env_encoder.config.out_dim} differs from env_dim={env_dim}")
        self.env_dim = int(env_dim)
        self.num_frames = num_frames
        self.vae = vae
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint if joint is not None else add_joint_attention(unet.unet, self.env_dim)
        self.kl_weight = kl_weight
        self.rec = rec

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def toyworld(cls) -> "VideoDiffuser":
        """A new, untrained diffuser in the ToyWorld configuration: the image ToyWorld diffuser
        inflated (8 frames of 32×32, latents ``(8, 4, 8, 8)``), with space-time attention,
        context layouts and a correlated noise prior (ρ = 0.5)."""
        return cls.from_image_diffuser(
            ImageDiffuser.toyworld(), layout=True, spacetime=True, noise_correlation=TOYWORLD_NOISE_CORRELATION
        )

    @classmethod
    def from_image_diffuser(
        cls,
        image: Diffuser,
        num_frames: int = NUM_FRAMES,
        heads: int = 4,
        include_joint: bool = True,
        layout: bool = False,
        spacetime: bool = False,
        noise_correlation: float = 0.0,
    ) -> "VideoDiffuser":
        """Inflate an image diffuser (with ``vae``, ``unet``, ``joint``) into a new video diffuser.

        The VAE and the UNet's base weights are copied unchanged (the image diffuser is not
        modified or shared); temporal layers are new and start as the identity; with
        ``include_joint`` the image's joint-attention weights are copied too (same layer names).
        The environment encoder is new (the video latent has more tokens). ``layout``,
        ``spacetime``: options of the new temporal layers (:class:`~codi_video.unet.VideoUNet`);
        ``noise_correlation``: see :meth:`sample_noise`. All three are on in the ToyWorld
        configuration (:meth:`toyworld`).
        """
        vae = AutoencoderKL.from_config(image.vae.config)
        unet = VideoUNet(
            UNet2DConditionModel.from_config(image.unet.config),
            heads=heads,
            max_frames=num_frames,
            layout=layout,
            spacetime=spacetime,
            noise_correlation=noise_correlation,
        )
        video = cls(
            vae,
            unet,
            env_dim=image.env_dim,
            num_frames=num_frames,
            kl_weight=getattr(image, "kl_weight", 1e-6),
            rec=getattr(image, "rec", "l1"),
        )
        video._copy_from_image(image, include_joint)
        return video.to(device=image.device, dtype=image.dtype).train(image.training)

    def warm_start(self, trained: dict[str, Diffuser]) -> set[str]:
        """Initialise this diffuser in place from a trained image diffuser (``trained["image"]``):
        VAE and latent scale, the UNet's base weights and joint attention are copied; temporal
        layers and the environment encoder are kept. Returns ``{"vae"}`` (the image VAE serves
        the frames as is), or an empty set when there is no image diffuser or its configuration
        differs from this one's (a warning says which part)."""
        image = trained.get("image")
        if image is None:
            return set()
        pairs = {"vae": (self.vae.config, image.vae.config), "unet": (self.unet.unet.config, image.unet.config)}
        for part, (mine, theirs) in pairs.items():
            if _public(mine) != _public(theirs):
                logger.warning("video warm start skipped: the image %s has another configuration than the video's", part)
                return set()
        include_joint = image.env_dim == self.env_dim
        if not include_joint:
            logger.warning("video warm start: joint attention not copied (image env_dim %s, video %s)", image.env_dim, self.env_dim)
        self._copy_from_image(image, include_joint)
        return {"vae"}

    @torch.no_grad()
    def _copy_from_image(self, image: Diffuser, include_joint: bool) -> None:
        self.vae.load_state_dict(image.vae.state_dict(), strict=True)
        self.set_latent_scale(float(image.vae.config.scaling_factor))
        base = {k: v for k, v in image.unet.state_dict().items() if ".processor." not in k}
        missing, unexpected = self.unet.unet.load_state_dict(base, strict=False)
        missing = [k for k in missing if ".processor." not in k]  # our joint layers: loaded below
        if missing or unexpected:
            raise RuntimeError(f"image UNet weights do not fit the video UNet: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if include_joint:
            self.joint.load_state_dict(image.joint.state_dict(), strict=True)

    @classmethod
    def from_image_pretrained(cls, path: str | os.PathLike, num_frames: int = NUM_FRAMES, heads: int = 4) -> "VideoDiffuser":
        """Inflate an image weights folder (``vae/``, ``unet/``, optional ``joint/``; e.g. the image
        plugin's trained ToyWorld weights) into a video diffuser: see :meth:`from_image_diffuser`."""
        image = ImageDiffuser.from_pretrained(path)
        return cls.from_image_diffuser(image, num_frames=num_frames, heads=heads).eval()

    # -- Diffuser interface ------------------------------------------------------------------------
    @property
    def noise_correlation(self) -> float:
        """ρ: the share of the noise variance common to all frames of a video (temporal layers' config)."""
        return float(getattr(self.unet.temporal.config, "noise_correlation", 0.0))

    def sample_noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise ``[B, T, C, h, w]`` with a part shared by the frames: ``√ρ·shared + √(1−ρ)·own``
        (unit variance per element; ρ = :attr:`noise_correlation`, 0: plain ``torch.randn``).

        A correlated noise prior for video diffusion (Ge et al. 2023, "Preserve Your Own
        Correlation"): the random blob from which each frame's object grows is largely the same
        in every frame, so the frames commit to one object in one place (with i.i.d. noise, each
        ToyWorld frame's object sat where that frame's own noise put it). ToyWorld uses ρ = 0.5.
        """
        rho = self.noise_correlation
        if rho == 0:
            return torch.randn(shape, generator=generator, dtype=torch.float32)
        own = torch.randn(shape, generator=generator, dtype=torch.float32)
        shared = torch.randn((shape[0], 1, *shape[2:]), generator=generator, dtype=torch.float32)
        return rho**0.5 * shared + (1 - rho) ** 0.5 * own

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Videos ``[B, T, 3, H, W]`` in [-1, 1] -> scaled latents ``[B, T, C, h, w]`` (posterior mean)."""
        self._check_videos(batch)
        return vae_encode(self.vae, batch.flatten(0, 1)).unflatten(0, batch.shape[:2])

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Scaled latents ``[B, T, C, h, w]`` -> a list of videos ``[T, 3, H, W]`` in [-1, 1]."""
        if latents.ndim != 5:
            raise ValueError(f"expected video latents [B, T, C, h, w], got shape {tuple(latents.shape)}")
        return list(vae_decode(self.vae, latents.flatten(0, 1)).unflatten(0, latents.shape[:2]).unbind(0))

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """ε(z_t, t, context, env): ``z_t`` ``[B, T, C, h, w]``, ``context`` ``[B, K, D]`` and ``env``
        ``[B, Le, env_dim]`` (or None) per video."""
        kwargs = {"env": env.to(self.dtype)} if env is not None else None
        return self.unet(z_t, t, encoder_hidden_states=context.to(self.dtype), cross_attention_kwargs=kwargs)

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, T, C, h, w]`` -> 2×2-average-pooled tokens ``[B, T·(h/2)·(w/2), C]``."""
        b, t = z.shape[:2]
        pooled = F.avg_pool2d(z.flatten(0, 1), ENV_POOL)
        return rearrange(pooled, "(b t) c h w -> b (t h w) c", b=b, t=t)

    def vae_loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frame-wise VAE loss (reconstruction + small KL) on videos ``[B, T, 3, H, W]``."""
        self._check_videos(batch)
        return vae_loss(self.vae, batch.flatten(0, 1), kl_weight=self.kl_weight, rec=self.rec)

    def _check_videos(self, batch: torch.Tensor) -> None:
        if batch.ndim != 5 or batch.shape[2] != 3:
            raise ValueError(f"expected videos [B, T, 3, H, W] in [-1, 1], got shape {tuple(batch.shape)}")

    # -- weights -----------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``vae/``, ``unet/`` (image-UNet base weights + ``unet/temporal/``), ``env_encoder/``
        and ``joint/`` under ``path``."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(root / "vae", safe_serialization=True)
        self.unet.save_pretrained(root / "unet")
        self.env_encoder.save_pretrained(root / "env_encoder", safe_serialization=True)
        save_joint_attention(self.joint, root / "joint", self.env_dim)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "VideoDiffuser":
        """Load a folder written by :meth:`save_pretrained`. Only safetensors weights are read.

        The number of frames is the temporal layers' ``max_frames``. For an image folder (no
        ``unet/temporal/``) use :meth:`from_image_pretrained`.
        """
        root = Path(path)
        for part in ("vae", "unet", "unet/temporal", "env_encoder", "joint"):
            if not (root / part / "config.json").is_file():
                hint = " (an image weights folder? use VideoDiffuser.from_image_pretrained)" if part == "unet/temporal" else ""
                raise WeightsNotFoundError(
                    f"{root} has no {part}/config.json{hint}; a video weights folder holds vae/, unet/ (+ unet/temporal/), "
                    "env_encoder/ and joint/, each config.json + safetensors"
                )
        kw: dict[str, Any] = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        vae = AutoencoderKL.from_pretrained(root / "vae", **kw)
        unet = VideoUNet.from_pretrained(root / "unet", torch_dtype=torch_dtype)
        env_encoder = EnvironmentEncoder.from_pretrained(root / "env_encoder", **kw)
        env_dim = json.loads((root / "joint" / "config.json").read_text())["env_dim"]
        joint = load_joint_attention(unet.unet, root / "joint")
        model = cls(vae, unet, env_encoder, env_dim=env_dim, joint=joint, num_frames=unet.temporal.config.max_frames)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()


def num_tokens(latent_shape: tuple[int, int, int, int]) -> int:
    """Environment-encoder tokens of a video latent ``(T, C, h, w)`` after 2×2 pooling."""
    t, _, h, w = latent_shape
    return t * (h // ENV_POOL) * (w // ENV_POOL)


def _public(config: Any) -> dict[str, Any]:
    """A diffusers config without private (``_``-prefixed) entries and ``scaling_factor``, for comparison."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dict(config).items()
        if not k.startswith("_") and k != "scaling_factor"
    }

"""`TextDiffuser`: the text modality's latent diffusion model (text VAE, denoiser, environment encoder).

Samples are Python strings. Latents are the text VAE's ``[B, C, L]`` (ToyWorld: ``[B, 4, 8]``),
multiplied by the VAE's ``scaling_factor``. A weights folder holds

* ``vae/`` — :class:`~codi_text.vae.TextVAE` (with its tokenizer files);
* ``unet/`` — :class:`~codi_text.denoiser.TextDenoiser`, base weights only;
* ``env_encoder/`` — :class:`codi_sdk.env_encoder.EnvironmentEncoder` over the ``L`` latent tokens;
* ``joint/`` — the joint-attention layers (:func:`codi_sdk.joint_attention.save_joint_attention`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from einops import rearrange
from torch import nn

from codi_sdk.diffuser import Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

from .denoiser import TextDenoiser
from .encoder import collate_texts
from .vae import TextVAE

#: Feature size of environment tokens in ToyWorld (shared by every modality).
ENV_DIM = 64


class TextDiffuser(Diffuser):
    """Text VAE + 1-D denoiser + environment encoder + joint attention.

    Joint attention is always installed on the denoiser (zero-initialised when new), so
    ``denoise(..., env=None)`` and ``denoise(..., env=tokens)`` both work.

    Example:
        >>> diffuser = TextDiffuser.toyworld()
        >>> z = diffuser.encode(["a red circle moving left"])          # [1, 4, 8]
        >>> eps = diffuser.denoise(z, torch.tensor([500]), torch.randn(1, 1, 64))
        >>> diffuser.decode(z)                                         # ["..."]
    """

    modality = "text"

    def __init__(
        self,
        vae: TextVAE,
        unet: TextDenoiser,
        env_encoder: EnvironmentEncoder,
        joint: nn.ModuleDict | None = None,
        env_dim: int = ENV_DIM,
    ):
        super().__init__()
        if (unet.config.in_channels, unet.config.sample_length) != vae.latent_shape:
            raise ValueError(
                f"denoiser latent ({unet.config.in_channels}, {unet.config.sample_length}) does not match the VAE's {vae.latent_shape}"
            )
        if env_encoder.config.in_channels != vae.latent_shape[0]:
            raise ValueError(f"environment encoder takes {env_encoder.config.in_channels} channels, the latent has {vae.latent_shape[0]}")
        self.vae = vae
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint if joint is not None else add_joint_attention(unet, env_dim)
        self.latent_shape = vae.latent_shape
        self.env_dim = env_dim

    @classmethod
    def toyworld(cls, **vae_options) -> "TextDiffuser":
        """A new, untrained diffuser in the ToyWorld configuration; ``vae_options`` go to
        :class:`TextVAE` (e.g. ``encoder_pooling="tokens"``)."""
        vae = TextVAE(**vae_options)
        c, length = vae.latent_shape
        unet = TextDenoiser(in_channels=c, sample_length=length, cross_attention_dim=64)
        env = EnvironmentEncoder(in_channels=c, max_tokens=length, num_tokens=4, out_dim=ENV_DIM)
        return cls(vae, unet, env)

    # -- samples <-> latents ----------------------------------------------------------------------
    def collate(self, samples: Sequence[Any]) -> list[str]:
        """A batch of texts is a list of ``str``."""
        return collate_texts(samples, "TextDiffuser")

    def encode(self, batch: Sequence[str]) -> torch.Tensor:
        """Texts -> scaled latents ``[B, C, L]``: the posterior mean times ``scaling_factor``."""
        mean = self.vae.encode(self.collate(batch)).latent_dist.mean
        return mean * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> list[str]:
        """Scaled latents ``[B, C, L]`` -> texts (greedy decoding)."""
        return self.vae.decode(latents / self.vae.config.scaling_factor)

    def vae_loss(self, batch: Sequence[str]) -> dict[str, torch.Tensor]:
        """The text VAE's ELBO terms: ``loss``, ``rec`` (nats/text), ``kl`` (nats/text)."""
        return self.vae.loss(self.collate(batch))

    # -- denoising --------------------------------------------------------------------------------
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """ε(z_t, t, context, env): ``z_t`` ``[B, C, L]``, ``t`` ``[B]`` or scalar, ``context``
        ``[B, K, 64]``, ``env`` ``[B, Le, 64]`` or ``None`` (no joint attention)."""
        return self.unet(z_t, t, encoder_hidden_states=context, cross_attention_kwargs={"env": env}).sample

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C, L]`` -> ``[B, L, C]``: the latent is already a sequence of ``L`` tokens."""
        return rearrange(z, "b c l -> b l c")

    # -- folders ----------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``vae/``, ``unet/`` (without joint attention), ``env_encoder/`` and ``joint/``."""
        root = Path(path)
        self.vae.save_pretrained(root / "vae")
        processors = self.unet.attn_processors
        self.unet.set_attn_processor(AttnProcessor2_0())  # so unet/ holds only the base weights
        try:
            self.unet.save_pretrained(root / "unet")
        finally:
            self.unet.set_attn_processor(processors)
        self.env_encoder.save_pretrained(root / "env_encoder")
        save_joint_attention(self.joint, root / "joint", self.env_dim)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "TextDiffuser":
        """Load a folder written by :meth:`save_pretrained`. Without ``joint/`` (weights trained
        before stage 3) joint attention starts zero-initialised."""
        root = Path(path)
        missing = [c for c in ("vae", "unet", "env_encoder") if not (root / c / "config.json").is_file()]
        if missing:
            raise WeightsNotFoundError(
                f"text diffuser folder {root} lacks {', '.join(missing)}; expected vae/, unet/, env_encoder/ (and joint/), "
                "each with config.json + *.safetensors"
            )
        vae = TextVAE.from_pretrained(root / "vae")
        unet = TextDenoiser.from_pretrained(str(root / "unet"))
        env = EnvironmentEncoder.from_pretrained(str(root / "env_encoder"))
        if (root / "joint" / "config.json").is_file():
            joint = load_joint_attention(unet, root / "joint")
            env_dim = next(iter(joint.values())).to_k_env.in_features
            return cls(vae, unet, env, joint=joint, env_dim=env_dim).eval()
        return cls(vae, unet, env).eval()


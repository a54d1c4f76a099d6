"""The text denoiser ε(z_t, t, context): 1-D convolutions and cross-attention over the text latent.

The text VAE's latent ``[B, C, L]`` is a short sequence of ``L`` tokens with ``C`` channels, so the
denoiser is a 1-D network over that sequence, built from diffusers parts: per layer, a residual
block of 1-D convolutions with the timestep embedding (``ResidualTemporalBlock1D``) and a
``BasicTransformerBlock`` (self-attention over the tokens, cross-attention to the prompt context,
feed-forward). Because the cross-attention layers are diffusers ``Attention`` modules,
:func:`codi_sdk.joint_attention.add_joint_attention` installs CoDi's joint attention on them; the
environment tokens travel in ``cross_attention_kwargs={"env": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin, BasicTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResidualTemporalBlock1D
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn


@dataclass
class TextDenoiserOutput(BaseOutput):
    """``sample``: the predicted noise, ``[B, C, L]`` like the input latent."""

    sample: torch.Tensor


class TextDenoiser(ModelMixin, ConfigMixin, AttentionMixin):
    """ε-prediction network on text latents ``[B, in_channels, sample_length]``.

    Args:
        in_channels: latent channels ``C`` (the VAE's ``latent_channels``).
        sample_length: latent tokens ``L`` (the VAE's ``latent_length``); sets the positional embedding.
        width: channels inside the network.
        num_layers: residual block + transformer block pairs.
        attention_head_dim: size of each attention head (``width // attention_head_dim`` heads).
        cross_attention_dim: feature size of the prompt context (the shared space, 64 in ToyWorld).
        kernel_size: of the 1-D convolutions.

    ``width`` must be a multiple of 8 (the group norms use 8 groups).

    Example:
        >>> unet = TextDenoiser()
        >>> unet(torch.randn(2, 4, 8), 10, encoder_hidden_states=torch.randn(2, 1, 64)).sample.shape
        torch.Size([2, 4, 8])
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        sample_length: int = 8,
        width: int = 64,
        num_layers: int = 2,
        attention_head_dim: int = 16,
        cross_attention_dim: int = 64,
        kernel_size: int = 3,
    ):
        super().__init__()
        if width % attention_head_dim:
            raise ValueError(f"width {width} must be a multiple of attention_head_dim {attention_head_dim}")
        time_dim = 4 * width
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, time_dim)
        self.conv_in = nn.Conv1d(in_channels, width, kernel_size, padding=kernel_size // 2)
        self.resnets = nn.ModuleList(
            ResidualTemporalBlock1D(width, width, time_dim, kernel_size=kernel_size) for _ in range(num_layers)
        )
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                width,
                width // attention_head_dim,
                attention_head_dim,
                cross_attention_dim=cross_attention_dim,
                activation_fn="geglu",
                positional_embeddings="sinusoidal",
                num_positional_embeddings=sample_length,
            )
            for _ in range(num_layers)
        )
        self.norm_out = nn.GroupNorm(8, width)
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv1d(width, in_channels, kernel_size, padding=kernel_size // 2)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> TextDenoiserOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample`` ``[B, C, L]`` at ``timestep`` (scalar or ``[B]``) given
        the context ``encoder_hidden_states`` ``[B, K, cross_attention_dim]``. Pass the joint
        attention's environment tokens as ``cross_attention_kwargs={"env": env}``."""
        c, length = self.config.in_channels, self.config.sample_length
        if sample.ndim != 3 or sample.shape[1] != c or sample.shape[2] > length:
            raise ValueError(f"expected a latent [B, {c}, <= {length}], got {tuple(sample.shape)}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(
                f"expected a context [B, K, {self.config.cross_attention_dim}], got {tuple(encoder_hidden_states.shape)}"
            )
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t.reshape(b)
        temb = self.time_embedding(self.time_proj(t).to(sample.dtype))

        x = self.conv_in(sample)
        for resnet, block in zip(self.resnets, self.transformer_blocks):
            x = resnet(x, temb)
            h = block(
                rearrange(x, "b c l -> b l c"),
                encoder_hidden_states=encoder_hidden_states,
                cross_attention_kwargs=cross_attention_kwargs,
            )
            x = rearrange(h, "b l c -> b c l")
        out = self.conv_out(self.act_out(self.norm_out(x)))
        return TextDenoiserOutput(sample=out) if return_dict else (out,)

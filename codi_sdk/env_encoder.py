"""The environment encoder V: a noisy latent and its timestep -> environment tokens.

Hand-written because no library has it. It is generic over latent layouts: a plugin turns its
latent into a token sequence ``[B, N, C]`` (e.g. ``b c h w -> b (h w) c``) and this module maps it,
with the timestep, to ``num_tokens`` tokens of ``out_dim`` features by attention pooling. Stage 3
aligns the environment encoders of all modalities through the text bridge.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class EnvironmentEncoder(ModelMixin, ConfigMixin):
    """Latent tokens + timestep -> ``[B, num_tokens, out_dim]`` environment tokens."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        max_tokens: int = 64,
        width: int = 64,
        depth: int = 1,
        heads: int = 4,
        num_tokens: int = 4,
        out_dim: int = 64,
        flat_hidden: int = 0,
    ):
        super().__init__()
        self.proj_in = nn.Linear(in_channels, width)
        self.pos = nn.Parameter(torch.randn(1, max_tokens, width) * 0.02)
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(1, num_tokens, width) * 0.02)
        self.pool = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, out_dim)
        # optional MLP on the whole flattened latent, added to the output: it reads a small latent's
        # spatial layout (e.g. a ToyWorld shape) far faster than the one attention layer learns to
        self.flat = None
        if flat_hidden:
            self.flat = nn.Sequential(nn.Linear(in_channels * max_tokens + width, flat_hidden), nn.GELU(),
                                      nn.Linear(flat_hidden, num_tokens * out_dim))

    def forward(self, tokens: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        b, n, _ = tokens.shape
        if n > self.config.max_tokens:
            raise ValueError(f"{n} latent tokens exceed max_tokens={self.config.max_tokens}")
        t = timestep.reshape(-1).expand(b) if timestep.numel() == 1 else timestep.reshape(b)
        temb = self.time_embed(self.time_proj(t).to(tokens.dtype))
        x = self.proj_in(tokens) + self.pos[:, :n] + temb[:, None]
        x = self.blocks(x)
        pooled, _ = self.pool(self.queries.expand(b, -1, -1), x, x, need_weights=False)
        out = self.proj_out(self.norm(pooled))
        if self.flat is not None:
            flat = torch.nn.functional.pad(tokens, (0, 0, 0, self.config.max_tokens - n)).flatten(1)
            out = out + self.flat(torch.cat([flat, temb], 1)).view(b, self.config.num_tokens, -1)
        return out

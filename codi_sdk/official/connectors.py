"""The official CoDi connectors: environment encoders (``connecters_out``) and joint attention
(``input_block_connecters_in`` / ``output_block_connecters_in``).

Official joint attention differs from our ToyWorld one (:mod:`codi_sdk.joint_attention`, an extra
key/value pair inside each cross-attention layer): after every UNet block on the first three levels
it runs a whole transformer block — group norm, 1×1 projection, self-attention, cross-attention
to the environment tokens (1280 wide), GEGLU feed-forward, projection back, residual. That block is
exactly diffusers' :class:`~diffusers.Transformer2DModel`, so :class:`OfficialJointAttention` holds
one per connector slot and the UNet walkers (:mod:`codi_sdk.official.unet`, the text UNet) call it
after the matching block. The environment encoders map a noisy latent and the UNet's time
embedding to one L2-normalised token ``[B, 1, 1280]``.

Which environment a stream attends to is the caller's choice (:func:`joint_environment`):
``"cross"`` (the paper) or ``"self"`` (the released inference code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.downsampling import Downsample2D
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers import Transformer2DModel
from torch import nn


def spatial_transformer(channels: int, num_heads: int, context_dim: int) -> Transformer2DModel:
    """The official ``SpatialTransformer`` (depth 1, conv projections, GEGLU) as a diffusers block."""
    return Transformer2DModel(
        num_attention_heads=num_heads,
        attention_head_dim=channels // num_heads,
        in_channels=channels,
        num_layers=1,
        norm_num_groups=32,
        cross_attention_dim=context_dim,
        use_linear_projection=False,
        activation_fn="geglu",
        attention_bias=False,
    )


class OfficialJointAttention(ModelMixin, ConfigMixin):
    """Joint-attention layers in the official layout: one transformer block per connector slot.

    ``down[str(level)][j]`` follows down block ``level``'s ``j``-th resnet/attention pair;
    ``up[str(u)][j]`` follows up block ``u``'s ``j``-th pair (after its upsampler, for the last
    pair, as upstream). Levels without a connector have no entry.
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: list[int] = (320, 640, 1280, 1280),
        with_connector: list[bool] = (True, True, True, False),
        layers_per_block: int = 2,
        num_heads: int = 8,
        env_dim: int = 1280,
    ):
        super().__init__()
        n = len(block_out_channels)
        self.down = nn.ModuleDict(
            {
                str(level): nn.ModuleList(
                    spatial_transformer(block_out_channels[level], num_heads, env_dim) for _ in range(layers_per_block)
                )
                for level in range(n)
                if with_connector[level]
            }
        )
        self.up = nn.ModuleDict(
            {
                str(u): nn.ModuleList(
                    spatial_transformer(block_out_channels[level], num_heads, env_dim) for _ in range(layers_per_block + 1)
                )
                for u, level in enumerate(reversed(range(n)))
                if with_connector[level]
            }
        )

    def layer(self, where: str, block: int, index: int) -> Transformer2DModel | None:
        """The connector after pair ``index`` of ``where`` ("down"/"up") block ``block``, if any."""
        group = (self.down if where == "down" else self.up)
        layers = group[str(block)] if str(block) in group else None
        return None if layers is None else layers[index]

    def apply(self, where: str, block: int, index: int, hidden: torch.Tensor, env: torch.Tensor | None) -> torch.Tensor:
        """``hidden`` after the connector at that slot (unchanged without a connector or ``env``)."""
        layer = self.layer(where, block, index)
        if layer is None or env is None:
            return hidden
        if env.shape[0] != hidden.shape[0]:
            if hidden.shape[0] % env.shape[0]:
                raise ValueError(f"env batch {env.shape[0]} does not divide the hidden batch {hidden.shape[0]}")
            env = env.repeat_interleave(hidden.shape[0] // env.shape[0], dim=0)  # frames share the env
        return layer(hidden, encoder_hidden_states=env.to(hidden.dtype)).sample


def joint_environment(envs: list[torch.Tensor], index: int, mode: str = "cross") -> torch.Tensor | None:
    """The environment tokens stream ``index`` attends to, among streams generated together.

    ``"cross"`` (paper): the other streams' tokens, concatenated ``[B, n-1, D]``; ``None`` for a
    single stream. ``"self"`` (released code): the stream's own token, and only when at least two
    streams are generated together.
    """
    if mode not in ("cross", "self"):
        raise ValueError(f"joint mode must be 'cross' or 'self', got {mode!r}")
    if len(envs) < 2:
        return None
    if mode == "self":
        return envs[index]
    return torch.cat([e for i, e in enumerate(envs) if i != index], dim=1)


def _normalise(token: torch.Tensor) -> torch.Tensor:
    return token / torch.norm(token, dim=-1, keepdim=True)


class OfficialEnvironmentEncoder2D(ModelMixin, ConfigMixin):
    """``connecters_out`` of an image/audio UNet: latent + time embedding -> ``[B, 1, out_channels]``.

    A conv, one resnet per level (with a strided-conv downsampler between levels), group norm,
    SiLU, conv to ``out_channels``; then the mean over positions, L2-normalised.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        model_channels: int = 320,
        channel_mult: list[int] = (1, 2, 4),
        layers_per_level: list[int] = (1, 1, 1),
        out_channels: int = 1280,
        temb_channels: int = 1280,
        temporal_heads: int | None = None,
        temporal_dim_head_divisor: int | None = None,
    ):
        super().__init__()
        ch = model_channels // 2
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.resnets = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        self._level_of: list[int] = []
        for level, mult in enumerate(channel_mult):
            for _ in range(layers_per_level[level]):
                self.resnets.append(ResnetBlock2D(in_channels=ch, out_channels=mult * model_channels, temb_channels=temb_channels, eps=1e-5, groups=32))
                ch = mult * model_channels
                self._level_of.append(level)
            if level != len(channel_mult) - 1:
                self.downsamplers.append(Downsample2D(ch, use_conv=True, out_channels=ch, padding=1, name="op"))
        self.norm_out = nn.GroupNorm(32, ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def _after_resnet(self, index: int, hidden: torch.Tensor, num_frames: int | None) -> torch.Tensor:
        return hidden

    def forward(self, sample: torch.Tensor, temb: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """``sample``: ``[B, C, H, W]`` (video: frames folded into the batch, ``[B*T, C, H, W]``,
        with ``num_frames``); ``temb``: the UNet's time embedding ``[B, temb_channels]``."""
        if num_frames:
            temb = temb.repeat_interleave(num_frames, dim=0)
        h = self.conv_in(sample)
        level = 0
        for i, resnet in enumerate(self.resnets):
            if self._level_of[i] != level:
                h = self.downsamplers[level](h)
                level = self._level_of[i]
            h = resnet(h, temb)
            h = self._after_resnet(i, h, num_frames)
        h = self.conv_out(F.silu(self.norm_out(h)))
        token = h.mean(dim=(2, 3))
        if num_frames:
            token = token.view(-1, num_frames, token.shape[-1]).mean(1)
        return _normalise(token)[:, None, :]


class FCResBlock(nn.Module):
    """The official "0-D" residual block (``FCBlock``) on flattened features ``[B, C, 1, 1]``:
    a ResNet block whose convolutions are 1×1, with diffusers' ResnetBlock2D parameter names."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, out_second: int | None = None):
        super().__init__()
        self.out_second = out_second
        self.norm1 = nn.GroupNorm(32, in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(32, out_channels, eps=1e-5)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, C, S, 1]`` (a multi-dimensional feature) is flattened to ``[B, C*S, 1, 1]``;
        the result is shaped back to ``[B, C_out, S, 1]``."""
        shape = x.shape
        flat = x.reshape(shape[0], -1, 1, 1)
        h = self.conv1(F.silu(self.norm1(flat)))
        h = h + self.time_emb_proj(F.silu(temb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = flat if self.conv_shortcut is None else self.conv_shortcut(flat)
        return (skip + h).reshape(shape[0], -1, self.out_second or shape[2], 1)


def linear_multidim(layer: nn.Linear, x: torch.Tensor, out_second: int) -> torch.Tensor:
    """Apply ``layer`` to the flattened ``[C, S, 1]`` feature of ``x`` and view it as ``[C', out_second, 1]``."""
    y = layer(x.reshape(x.shape[0], -1))
    return y.view(x.shape[0], -1, out_second, 1)


class OfficialEnvironmentEncoder0D(ModelMixin, ConfigMixin):
    """``connecters_out`` of the text UNet: a text latent ``[B, 768]`` + time embedding -> ``[B, 1, 1280]``."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 768,
        model_channels: int = 320,
        channel_mult: list[int] = (1, 2, 4),
        second_dim: list[int] = (4, 4, 4),
        layers_per_level: list[int] = (1, 1, 1),
        out_channels: int = 1280,
        temb_channels: int = 1280,
    ):
        super().__init__()
        ch, s = model_channels // 2, second_dim[0]
        self.conv_in = nn.Linear(in_channels, ch * s)
        self.resnets = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        self._plan: list[tuple[str, int, int]] = []  # (kind, index, second dim after it)
        for level, (mult, sdim) in enumerate(zip(channel_mult, second_dim)):
            for _ in range(layers_per_level[level]):
                self._plan.append(("resnet", len(self.resnets), sdim))
                self.resnets.append(FCResBlock(ch * s, mult * model_channels * sdim, temb_channels, sdim))
                ch, s = mult * model_channels, sdim
            if level != len(channel_mult) - 1:
                self._plan.append(("down", len(self.downsamplers), s))
                self.downsamplers.append(nn.Linear(ch * s, ch * s))
        self.norm_out = nn.GroupNorm(32, ch, eps=1e-5)
        self.conv_out = nn.Linear(ch * s, out_channels)

    def forward(self, sample: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = linear_multidim(self.conv_in, sample, self.config.second_dim[0])
        for kind, i, sdim in self._plan:
            h = self.resnets[i](h, temb) if kind == "resnet" else linear_multidim(self.downsamplers[i], h, sdim)
        h = F.silu(self.norm_out(h))
        token = self.conv_out(h.reshape(h.shape[0], -1))
        return _normalise(token)[:, None, :]

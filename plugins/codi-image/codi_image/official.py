"""The ``codi-official`` profile of the image and video modalities: real-size official CoDi modules.

The official image/video UNet, without its extras, is a Stable-Diffusion-1.x-shaped diffusers
``UNet2DConditionModel`` and its VAE is diffusers' ``AutoencoderKL``; the prompt encoder is CLIP
ViT-L/14 (transformers). What no library has is written here:

* :class:`SpatioTemporalBlock` — the video layer paired with every UNet resnet: temporal attention
  across frames with a continuous (log-distance MLP) position bias and learned frame position /
  frame-rate embeddings, a GEGLU feed-forward with token shift across frames, and a frame-shift
  residual block;
* :class:`CoDiVideoTemporalLayers` — all 25 of them, as one component (like diffusers' motion
  adapter), and :class:`CoDiVideoUNet`, which runs the UNet with them;
* :class:`CoDiVideoEnvironmentEncoder` — the environment encoder with its 3 video layers;
* :class:`CLIPTemporalBlock` / :class:`CoDiCLIPVisionEncoder` — CLIP's vision tower with the 24
  temporal layers CoDi adds for video prompts.

The numerics follow the official code, including its quirks (the temporal attention's layer norm
normalises over frames; GEGLU computes in float32). Component folders are written by
``codi convert-official``; configs live in :mod:`codi_sdk.official.profile`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from codi_sdk.official.connectors import OfficialEnvironmentEncoder2D, OfficialJointAttention
from codi_sdk.official.unet import unet2d_forward


def _eps(x: torch.Tensor) -> float:
    return 1e-5 if x.dtype == torch.float32 else 1e-3


class FrameNorm(nn.Module):
    """Layer norm of the official temporal attention: statistics over dim 1 of ``[N, T, C]``
    (the frames), gain over channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * var.clamp(min=_eps(x)).rsqrt() * self.g


class ChannelNorm(nn.Module):
    """Layer norm over channels (dim 1) of a ``[B, C, ...]`` tensor with a gain shaped ``shape``."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.g = nn.Parameter(torch.ones(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        x = (x - mean) * var.clamp(min=_eps(x)).rsqrt()
        return x.to(self.g.dtype) * self.g


class GEGLU(nn.Module):
    """GELU-gated linear unit over dim 1, computed in float32 as upstream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.float().chunk(2, dim=1)
        return x * F.gelu(gate)


class ContinuousPositionBias(nn.Module):
    """Relative position bias from an MLP of the signed log distance between frames ``[heads, T, T]``."""

    def __init__(self, dim: int, heads: int, layers: int = 2):
        super().__init__()
        self.net = nn.ModuleList([nn.Sequential(nn.Linear(1, dim), nn.SiLU())])
        for _ in range(layers - 1):
            self.net.append(nn.Sequential(nn.Linear(dim, dim), nn.SiLU()))
        self.net.append(nn.Linear(dim, heads))

    def forward(self, frames: int) -> torch.Tensor:
        w = self.net[-1].weight
        pos = torch.arange(frames, device=w.device)
        rel = (pos[:, None] - pos[None, :]).to(torch.float32)[..., None]
        rel = (torch.sign(rel) * torch.log(rel.abs() + 1)).to(w.dtype)
        for layer in self.net:
            rel = layer(rel)
        return rel.permute(2, 0, 1)


class TemporalAttention(nn.Module):
    """Multi-head attention across frames of ``[N, T, C]`` tokens (one query/key/value per frame)."""

    def __init__(self, dim: int, dim_head: int, heads: int, max_frames: int = 30):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm = FrameNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.pos_embeds = nn.Parameter(torch.zeros(1, max_frames, dim))
        self.frame_rate_embeds = nn.Parameter(torch.zeros(1, max_frames, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor, framerate: int | None = None) -> torch.Tensor:
        if framerate is not None:
            x = x + self.pos_embeds[:, : x.shape[1]] + self.frame_rate_embeds[:, framerate - 1 : framerate]
        x = self.norm(x)
        q, (k, v) = self.to_q(x), self.to_kv(x).chunk(2, dim=-1)
        n, t, _ = q.shape
        q, k, v = (y.view(n, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.to_out(out.transpose(1, 2).reshape(n, t, -1))


def _shift_token(x: torch.Tensor) -> torch.Tensor:
    """Shift the second half of the channels of ``[B, C, T, H, W]`` one frame forward (zeros first)."""
    x, shifted = x.chunk(2, dim=1)
    shifted = F.pad(shifted, (0, 0, 0, 0, 1, -1))
    return torch.cat((x, shifted), dim=1)


def _frame_shift(x: torch.Tensor, groups: int = 8) -> torch.Tensor:
    """Shift channel group ``i`` of ``[B, C, T, H, W]`` by ``i`` frames (zeros first)."""
    chunks = list(x.chunk(groups, dim=1))
    for i in range(1, len(chunks)):
        chunks[i] = F.pad(chunks[i], (0, 0, 0, 0, i, -i)) if i < x.shape[2] else torch.zeros_like(chunks[i])
    return torch.cat(chunks, dim=1)


class _FeedForward3d(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = int(dim * mult * 2 / 3)
        self.proj_in = nn.Sequential(nn.Conv3d(dim, inner * 2, 1, bias=False), GEGLU())
        self.proj_out = nn.Sequential(ChannelNorm((inner, 1, 1, 1)), nn.Conv3d(inner, dim, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(_shift_token(self.proj_in(x)))


class _FrameShiftBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.out_layers = nn.Sequential(nn.GroupNorm(32, dim, eps=1e-5), nn.SiLU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, T, H, W]
        b, c, t, h, w = x.shape
        flat = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = self.out_layers(flat).view(b, t, -1, h, w).permute(0, 2, 1, 3, 4)
        return x + _frame_shift(y)


class SpatioTemporalBlock(nn.Module):
    """The official ``SpatioTemporalAttention`` video layer of the UNet (frames folded in the batch)."""

    def __init__(self, dim: int, dim_head: int, heads: int = 8, max_frames: int = 30):
        super().__init__()
        self.frameshiftblock = _FrameShiftBlock(dim)
        self.temporal_attn = TemporalAttention(dim, dim_head, heads, max_frames)
        self.temporal_rel_pos_bias = ContinuousPositionBias(dim // 2, heads)
        self.ff = _FeedForward3d(dim)

    def forward(self, hidden: torch.Tensor, num_frames: int, framerate: int = 4) -> torch.Tensor:
        """``hidden``: ``[B*T, C, H, W]`` with ``T = num_frames`` consecutive frames per sample."""
        bt, c, h, w = hidden.shape
        b = bt // num_frames
        x = hidden.view(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4)  # b c t h w
        tokens = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        bias = self.temporal_rel_pos_bias(num_frames)
        tokens = self.temporal_attn(tokens, bias, framerate) + tokens
        x = tokens.view(b, h, w, num_frames, c).permute(0, 4, 3, 1, 2)
        x = (self.ff(x) + x).to(hidden.dtype)
        x = self.frameshiftblock(x)
        return x.permute(0, 2, 1, 3, 4).reshape(bt, c, h, w)


class CoDiVideoTemporalLayers(ModelMixin, ConfigMixin):
    """The 25 video layers of the official image/video UNet, one after each resnet.

    ``down[str(level)][j]``, ``mid[i]``, ``up[str(u)][j]`` follow the diffusers block positions of
    the UNet they extend (``CoDiVideoUNet``). Images skip them.
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: list[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        heads: int = 8,
        dim_head_divisor: int = 4,
        max_frames: int = 30,
        framerate: int = 4,
    ):
        super().__init__()

        def block(ch: int) -> SpatioTemporalBlock:
            return SpatioTemporalBlock(ch, ch // dim_head_divisor, heads, max_frames)

        n = len(block_out_channels)
        self.down = nn.ModuleDict({str(i): nn.ModuleList(block(c) for _ in range(layers_per_block)) for i, c in enumerate(block_out_channels)})
        self.mid = nn.ModuleList(block(block_out_channels[-1]) for _ in range(2))
        self.up = nn.ModuleDict(
            {str(u): nn.ModuleList(block(block_out_channels[n - 1 - u]) for _ in range(layers_per_block + 1)) for u in range(n)}
        )

    # the TemporalLayers protocol of codi_sdk.official.unet
    def apply_down(self, level: int, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.down[str(level)][index](hidden, num_frames, self.config.framerate)

    def apply_mid(self, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.mid[index](hidden, num_frames, self.config.framerate)

    def apply_up(self, block: int, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.up[str(block)][index](hidden, num_frames, self.config.framerate)


class CoDiVideoUNet(nn.Module):
    """The official image/video denoiser: a ``UNet2DConditionModel`` + :class:`CoDiVideoTemporalLayers`.

    Call with ``[B, 4, H, W]`` (image: the video layers are skipped) or ``[B, 4, T, H, W]`` (video).
    """

    def __init__(self, unet, temporal: CoDiVideoTemporalLayers | None = None, joint: OfficialJointAttention | None = None):
        super().__init__()
        self.unet = unet
        self.temporal = temporal
        self.joint = joint

    def forward(self, sample, timestep, context, env=None):
        if sample.ndim == 5 and self.temporal is None:
            raise ValueError("a video latent [B, C, T, H, W] needs the temporal layers (folder video/temporal)")
        return unet2d_forward(self.unet, sample, timestep, context, env=env, joint=self.joint, temporal=self.temporal)


class CoDiVideoEnvironmentEncoder(OfficialEnvironmentEncoder2D):
    """``connecters_out`` of the image/video UNet: the 2-D environment encoder + one video layer
    after each resnet (skipped for images)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        model_channels: int = 320,
        channel_mult: list[int] = (1, 2, 4),
        layers_per_level: list[int] = (1, 1, 1),
        out_channels: int = 1280,
        temb_channels: int = 1280,
        temporal_heads: int | None = 8,
        temporal_dim_head_divisor: int | None = 4,
    ):
        # pass every argument on: the base's register_to_config would otherwise record the temporal ones as None
        super().__init__(
            in_channels, model_channels, channel_mult, layers_per_level, out_channels, temb_channels,
            temporal_heads, temporal_dim_head_divisor,
        )
        self.temporals = nn.ModuleList(
            SpatioTemporalBlock(r.out_channels, r.out_channels // temporal_dim_head_divisor, temporal_heads) for r in self.resnets
        )

    def _after_resnet(self, index: int, hidden: torch.Tensor, num_frames: int | None) -> torch.Tensor:
        return self.temporals[index](hidden, num_frames) if num_frames else hidden

    def forward(self, sample: torch.Tensor, temb: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """``sample``: ``[B, C, H, W]`` or a video ``[B, C, T, H, W]``; returns ``[B, 1, out_channels]``."""
        if sample.ndim == 5:
            b, c, t, h, w = sample.shape
            sample = sample.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            num_frames = t
        return super().forward(sample, temb, num_frames)


# -- CLIP vision with temporal layers -----------------------------------------------------------
class _CLIPFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = int(dim * mult * 2 / 3)
        self.proj_in = nn.Sequential(nn.Conv1d(dim, inner * 2, 1, bias=False), GEGLU())
        self.proj_out = nn.Sequential(ChannelNorm((1, inner, 1)), nn.Conv1d(inner, dim, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, T]
        return self.proj_out(self.proj_in(x))


class _CLIPTemporalAttention(TemporalAttention):
    def forward(self, x, bias, framerate=None):
        return torch.nan_to_num(super().forward(x, bias, framerate))


class CLIPTemporalBlock(nn.Module):
    """CoDi's temporal layer inside each CLIP vision layer: attention + feed-forward across frames
    of ``[N, T, C]`` tokens (no frame position embeddings are added at inference)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.temporal_attn = _CLIPTemporalAttention(dim, dim_head, heads)
        self.temporal_rel_pos_bias = ContinuousPositionBias(dim // 2, heads)
        self.ff = _CLIPFeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.temporal_rel_pos_bias(x.shape[1])
        x = self.temporal_attn(x, bias) + x
        return (self.ff(x.transpose(1, 2)).transpose(1, 2) + x).to(x.dtype)


class CoDiCLIPVisionEncoder(CLIPVisionModelWithProjection):
    """CLIP ViT-L/14 vision tower + projection, plus CoDi's 24 temporal layers for video prompts.

    :meth:`embed` returns the L2-normalised projected embedding ``[B, 768]`` of images
    ``[B, 3, 224, 224]`` or videos ``[B, T, 3, 224, 224]`` (CLIP-normalised pixels; see
    :func:`clip_pixels`). Videos run the temporal layers after each layer's self-attention and
    average the frames before pooling, as upstream.
    """

    def __init__(self, config: CLIPVisionConfig):
        super().__init__(config)
        if getattr(config, "temporal_layers", True):
            heads = config.num_attention_heads
            self.temporal = nn.ModuleList(
                CLIPTemporalBlock(config.hidden_size, heads, config.hidden_size // heads) for _ in range(config.num_hidden_layers)
            )
        self.post_init()

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.ndim == 4:
            return F.normalize(self(pixel_values=pixel_values).image_embeds, dim=-1)
        if pixel_values.ndim != 5:
            raise ValueError(f"expected images [B, 3, H, W] or videos [B, T, 3, H, W], got shape {tuple(pixel_values.shape)}")
        vm = self.vision_model
        b, t = pixel_values.shape[:2]
        h = vm.pre_layrnorm(vm.embeddings(pixel_values.flatten(0, 1).to(self.dtype)))  # [(b t), L, C]
        length, c = h.shape[1:]
        for layer, temporal in zip(vm.encoder.layers, self.temporal):
            residual = h
            attn, _ = layer.self_attn(hidden_states=layer.layer_norm1(h), attention_mask=None)
            h = residual + attn
            frames = h.view(b, t, length, c).permute(0, 2, 1, 3).reshape(b * length, t, c)
            h = temporal(frames).view(b, length, t, c).permute(0, 2, 1, 3).reshape(b * t, length, c)
            h = h + layer.mlp(layer.layer_norm2(h))
        last = h.view(b, t, length, c).mean(1)
        pooled = vm.post_layernorm(last[:, 0, :])
        return F.normalize(self.visual_projection(pooled), dim=-1)


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Images ``[..., 3, H, W]`` in [-1, 1] -> CLIP input: bicubic resize of the short side to
    ``size``, centre crop, CLIP mean/std normalisation (what upstream's ``CLIPProcessor`` does)."""
    lead = x.shape[:-3]
    x = ((x.reshape(-1, *x.shape[-3:]).float() + 1) / 2).clamp(0, 1)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic", antialias=True, align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
    return ((x - mean) / std).reshape(*lead, 3, size, size)


def _new_class(spec_name: str):
    return {"CoDiVideoTemporalLayers": CoDiVideoTemporalLayers, "CoDiVideoEnvironmentEncoder": CoDiVideoEnvironmentEncoder}[spec_name]


def build_official_component(target: str) -> nn.Module:
    """A new (untrained) module for one of the image/video folders of the official profile.

    Build it under ``torch.device("meta")`` (or accelerate's ``init_empty_weights``) to get the
    structure without allocating 1.8 B parameters.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from codi_sdk.official.profile import COMPONENTS

    spec = COMPONENTS[target]
    cls_name = spec.class_name.split(":")[1]
    cfg = dict(spec.config)
    if cls_name == "UNet2DConditionModel":
        return UNet2DConditionModel(**cfg)
    if cls_name == "AutoencoderKL":
        return AutoencoderKL(**cfg)
    if cls_name == "OfficialJointAttention":
        return OfficialJointAttention(**cfg)
    if cls_name == "CoDiCLIPVisionEncoder":
        return CoDiCLIPVisionEncoder(CLIPVisionConfig(**cfg))
    return _new_class(cls_name)(**cfg)


OFFICIAL_TARGETS: tuple[str, ...] = ("image/unet", "image/vae", "image/env_encoder", "image/joint", "image/encoder", "video/temporal")

__all__ = [
    "SpatioTemporalBlock",
    "CoDiVideoTemporalLayers",
    "CoDiVideoUNet",
    "CoDiVideoEnvironmentEncoder",
    "CLIPTemporalBlock",
    "CoDiCLIPVisionEncoder",
    "clip_pixels",
    "build_official_component",
    "load_official_component",
    "load_official_video_unet",
    "OFFICIAL_TARGETS",
]


def load_official_component(root, target: str, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Load folder ``target`` (e.g. ``"image/unet"``, ``"video/temporal"``) of a converted weights root."""
    from pathlib import Path

    from diffusers import AutoencoderKL, UNet2DConditionModel

    from codi_sdk.errors import WeightsNotFoundError
    from codi_sdk.official.profile import COMPONENTS

    folder = Path(root) / target
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(f"no converted component {target!r} in {root} (run `codi convert-official`)")
    canonical = {"video/unet": "image/unet", "video/vae": "image/vae", "video/env_encoder": "image/env_encoder",
                 "video/joint": "image/joint", "video/encoder": "image/encoder"}.get(target, target)
    cls = {
        "UNet2DConditionModel": UNet2DConditionModel, "AutoencoderKL": AutoencoderKL,
        "OfficialJointAttention": OfficialJointAttention, "CoDiCLIPVisionEncoder": CoDiCLIPVisionEncoder,
        "CoDiVideoTemporalLayers": CoDiVideoTemporalLayers, "CoDiVideoEnvironmentEncoder": CoDiVideoEnvironmentEncoder,
    }[COMPONENTS[canonical].class_name.split(":")[1]]
    if cls is CoDiCLIPVisionEncoder:
        return cls.from_pretrained(folder, dtype=dtype) if dtype else cls.from_pretrained(folder)
    return cls.from_pretrained(folder, torch_dtype=dtype) if dtype else cls.from_pretrained(folder)


def load_official_video_unet(root, *, dtype: torch.dtype | None = None, joint: bool = True) -> CoDiVideoUNet:
    """The official image/video denoiser from a converted root: UNet + video layers (+ joint layers)."""
    return CoDiVideoUNet(
        load_official_component(root, "video/unet", dtype=dtype),
        load_official_component(root, "video/temporal", dtype=dtype),
        load_official_component(root, "video/joint", dtype=dtype) if joint else None,
    )

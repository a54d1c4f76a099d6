"""The video denoiser: an image ``UNet2DConditionModel`` inflated with temporal layers.

:class:`VideoUNet` runs the *unchanged* image UNet on all frames of a batch at once (``B*T`` frames,
ordered video by video) and adds two kinds of temporal layers with forward hooks, so the image
UNet keeps its module tree and its state-dict key names — an image UNet folder loads into it as is:

* after every ``ResnetBlock2D``: CoDi's latent shift (:class:`~codi_video.latent_shift.LatentShift`,
  zero-gated);
* after every spatial ``Transformer2DModel``: a :class:`TemporalAttention` — diffusers ``Attention``
  over the time axis at each pixel (or, with ``spacetime``, over every frame and pixel of the
  video), with a frame position embedding and a zero-initialised output projection; with
  ``context_dim`` set, also a :class:`ContextLayout` — a bias that depends on the
  prompt context *and* on the frame and pixel, which lets the prompt say *where* the content is in
  each frame (a single context token through cross-attention is the same at every pixel and frame).

Every temporal layer starts as the identity, so before training the video UNet returns the image
UNet's output on every frame. The temporal layers live in :class:`TemporalLayers` (its own
``config.json`` + safetensors), saved in ``unet/temporal/`` next to the plain diffusers UNet folder.

The prompt ``context`` ``[B, K, D]`` and joint-attention ``env`` ``[B, Le, De]`` are per video; the
context is repeated for each frame here, ``env`` by the joint-attention processor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid, get_2d_sincos_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from einops import rearrange
from torch import nn

from codi_sdk.errors import WeightsNotFoundError

from .latent_shift import NUM_CHUNKS, LatentShift

logger = logging.getLogger(__name__)

#: Sub-folder of ``unet/`` that holds the temporal layers.
TEMPORAL_FOLDER = "temporal"


#: Frequencies of the Fourier features of (frame, row, column) that :class:`ContextLayout` reads.
LAYOUT_FREQS = 4


def _layout_features(num_frames: int, max_frames: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """``[T·H·W, 3 + 6·LAYOUT_FREQS]``: (frame, row, column), each scaled to [-1, 1] (frames by
    ``max_frames``, so a frame's features do not depend on the clip length), and their Fourier
    features ``sin/cos(π k u / 2)``, k = 1..LAYOUT_FREQS. The half is deliberate: with ``π k u``
    every feature would have period 2, so the first and last frame (u = ∓1) would share all their
    cosines and sines and the layout would put the object in the same place in both."""
    axes = [
        torch.arange(num_frames, device=device, dtype=torch.float32) / max(max_frames - 1, 1) * 2 - 1,
        (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1,
        (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1,
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    k = torch.arange(1, LAYOUT_FREQS + 1, device=device, dtype=torch.float32) * (torch.pi / 2)
    angles = (grid[:, :, None] * k).flatten(1)
    return torch.cat([grid, angles.sin(), angles.cos()], dim=1).to(dtype)


class ContextLayout(nn.Module):
    """A residual bias ``f(context, frame, row, column)`` ``[B*T, C, H, W]``, zero at start.

    An MLP over the prompt context (projected once per video) plus Fourier features of each latent
    pixel's frame and position. It gives the prompt a direct, position-dependent path into the
    video: e.g. "moving left" puts the object on the right in the first frame and on the left in
    the last. The output layer is initialised to zero, so a new layout is the identity.
    """

    def __init__(self, channels: int, context_dim: int, hidden: int = 128):
        super().__init__()
        self.context = nn.Linear(context_dim, hidden)
        self.position = nn.Linear(3 + 6 * LAYOUT_FREQS, hidden, bias=False)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, context: torch.Tensor, num_frames: int, max_frames: int, height: int, width: int) -> torch.Tensor:
        """``context`` ``[B, K, D]`` (the K tokens are averaged) -> ``[B*T, C, H, W]``."""
        pos = _layout_features(num_frames, max_frames, height, width, context.device, self.position.weight.dtype)
        x = self.context(context.mean(dim=1).to(self.position.weight.dtype))[:, None] + self.position(pos)[None]
        x = self.out(x)  # [B, T*H*W, C]
        return rearrange(x, "b (t h w) c -> (b t) c h w", t=num_frames, h=height, w=width)


class TemporalAttention(nn.Module):
    """Self-attention over the frames of each pixel, residual, starting as the identity.

    ``h`` ``[B*T, C, H, W]`` -> LayerNorm + frame position embedding -> diffusers ``Attention``
    over ``T`` -> added to ``h``. With ``spacetime``, the attention runs over all ``T·H·W`` latent
    pixels of a video at once (a 2-D sin-cos position embedding is added too), so a frame can see
    where the content is in the other frames — what keeps a moving object on one path; affordable
    on small latents (ToyWorld: 8 × 8 × 8 = 512 tokens). The attention's output projection (``attn.to_out[0]``) is
    initialised to zero. Being a diffusers ``Attention``, its processor can be replaced
    (``VideoUNet.set_attn_processor``). With ``context_dim``, a :class:`ContextLayout` adds a
    prompt- and position-dependent bias (applied only when a context is passed).
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        max_frames: int = 8,
        context_dim: int | None = None,
        layout_hidden: int = 128,
        spacetime: bool = False,
    ):
        super().__init__()
        if channels % heads:
            raise ValueError(f"temporal attention: {channels} channels not divisible by {heads} heads")
        self.norm = nn.LayerNorm(channels)
        pos = get_1d_sincos_pos_embed_from_grid(channels, torch.arange(max_frames), output_type="pt")
        self.pos_embed = nn.Parameter(pos.float()[None])  # [1, max_frames, C], learned from a sinusoid
        self.attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)
        self.layout = ContextLayout(channels, context_dim, layout_hidden) if context_dim else None
        self.spacetime = spacetime

    def forward(self, h: torch.Tensor, num_frames: int, context: torch.Tensor | None = None) -> torch.Tensor:
        if num_frames > self.pos_embed.shape[1]:
            raise ValueError(f"{num_frames} frames exceed the temporal layers' max_frames={self.pos_embed.shape[1]}")
        _, channels, height, width = h.shape
        if self.spacetime:
            x = rearrange(h, "(b t) c h w -> b t (h w) c", t=num_frames)
            space = get_2d_sincos_pos_embed(channels, (height, width), base_size=height, device=h.device, output_type="pt")
            x = self.norm(x) + self.pos_embed[:, :num_frames, None].to(x.dtype) + space[None, None].to(x.dtype)
            x = self.attn(x.flatten(1, 2))
            out = h + rearrange(x, "b (t h w) c -> (b t) c h w", t=num_frames, h=height, w=width)
        else:
            x = rearrange(h, "(b t) c h w -> (b h w) t c", t=num_frames)
            x = self.norm(x) + self.pos_embed[:, :num_frames].to(x.dtype)
            x = self.attn(x)
            out = h + rearrange(x, "(b h w) t c -> (b t) c h w", h=height, w=width)
        if self.layout is not None and context is not None:
            out = out + self.layout(context, num_frames, self.pos_embed.shape[1], height, width).to(out.dtype)
        return out


def _key(module_name: str) -> str:
    return module_name.replace(".", "__")


def _temporal_sites(unet: UNet2DConditionModel) -> tuple[dict[str, int], dict[str, int]]:
    """The UNet's residual blocks and spatial transformers (name -> channels), in module order."""
    shifts: dict[str, int] = {}
    attentions: dict[str, int] = {}
    for name, module in unet.named_modules():
        if not name.startswith(("down_blocks.", "mid_block.", "up_blocks.")):
            continue
        if isinstance(module, ResnetBlock2D):
            shifts[name] = module.out_channels
        elif isinstance(module, Transformer2DModel):
            attentions[name] = module.config.in_channels
    return shifts, attentions


class TemporalLayers(ModelMixin, ConfigMixin):
    """All temporal layers of a :class:`VideoUNet`, keyed by the image-UNet module they follow.

    Args:
        shift_channels: ``{resnet module name: channels}`` — one :class:`LatentShift` each.
        attention_channels: ``{transformer module name: channels}`` — one :class:`TemporalAttention` each.
        heads: heads of every temporal attention.
        max_frames: length of the frame position embedding (the most frames a video may have).
        num_chunks: chunks of the latent shift.
        context_dim: feature size of the prompt context; set, every temporal attention gets a
            :class:`ContextLayout` (None: no layout — the layers of folders saved before it existed).
        layout_hidden: hidden width of the layouts.
        spacetime: the temporal attentions attend over all frames *and* pixels of a video
            (False: over the frames of each pixel — the layers of folders saved before the option).
        noise_correlation: the share ρ of the noise variance that the frames of a video have in
            common, in training and sampling (``VideoDiffuser.sample_noise``); 0: i.i.d. noise.
    """

    @register_to_config
    def __init__(
        self,
        shift_channels: dict[str, int] | None = None,
        attention_channels: dict[str, int] | None = None,
        heads: int = 4,
        max_frames: int = 8,
        num_chunks: int = NUM_CHUNKS,
        context_dim: int | None = None,
        layout_hidden: int = 128,
        spacetime: bool = False,
        noise_correlation: float = 0.0,
    ):
        super().__init__()
        if not 0 <= noise_correlation < 1:
            raise ValueError(f"noise_correlation must be in [0, 1), got {noise_correlation}")
        self.shifts = nn.ModuleDict({_key(n): LatentShift(c, num_chunks) for n, c in (shift_channels or {}).items()})
        self.attentions = nn.ModuleDict(
            {
                _key(n): TemporalAttention(c, heads, max_frames, context_dim, layout_hidden, spacetime)
                for n, c in (attention_channels or {}).items()
            }
        )

    @classmethod
    def for_unet(
        cls,
        unet: UNet2DConditionModel,
        heads: int = 4,
        max_frames: int = 8,
        num_chunks: int = NUM_CHUNKS,
        layout: bool = False,
        spacetime: bool = False,
        noise_correlation: float = 0.0,
    ) -> "TemporalLayers":
        """New identity-initialised temporal layers for every residual block and transformer of
        ``unet``; with ``layout``, context layouts reading the UNet's ``cross_attention_dim``;
        with ``spacetime``, attention over all frames and pixels of a video."""
        shifts, attentions = _temporal_sites(unet)
        from codi_image.diffuser import cross_dim

        context_dim = cross_dim(unet, "context layouts need one") if layout else None
        return cls(
            shift_channels=shifts,
            attention_channels=attentions,
            heads=heads,
            max_frames=max_frames,
            num_chunks=num_chunks,
            context_dim=context_dim,
            spacetime=spacetime,
            noise_correlation=noise_correlation,
        )


class VideoUNet(nn.Module, AttentionMixin):
    """ε(z_t, t, context, env) on video latents ``[B, T, C, h, w]``: an image UNet + temporal layers.

    Args:
        unet: the image denoiser; its weights are used unchanged (not copied).
        temporal: temporal layers matching ``unet`` (default: new ones, identity at start).
        heads, max_frames: for new temporal layers.
        layout: new temporal layers get context layouts (:class:`ContextLayout`).
        spacetime: new temporal attentions attend over all frames and pixels (see :class:`TemporalAttention`).
        noise_correlation: of new temporal layers (see :class:`TemporalLayers`).

    Calling the inner ``self.unet`` directly (outside :meth:`forward`) skips the temporal layers,
    i.e. it is exactly the image denoiser.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        temporal: TemporalLayers | None = None,
        heads: int = 4,
        max_frames: int = 8,
        layout: bool = False,
        spacetime: bool = False,
        noise_correlation: float = 0.0,
    ):
        super().__init__()
        self.unet = unet
        if temporal is None:
            temporal = TemporalLayers.for_unet(
                unet, heads=heads, max_frames=max_frames, layout=layout, spacetime=spacetime, noise_correlation=noise_correlation
            )
        self.temporal = temporal
        shifts, attentions = _temporal_sites(unet)
        expected = ({_key(n) for n in shifts}, {_key(n) for n in attentions})
        found = (set(self.temporal.shifts.keys()), set(self.temporal.attentions.keys()))
        if expected != found:
            raise ValueError(
                "temporal layers do not match this UNet's residual blocks/transformers "
                f"(missing {sorted((expected[0] - found[0]) | (expected[1] - found[1]))}, "
                f"extra {sorted((found[0] - expected[0]) | (found[1] - expected[1]))})"
            )
        self._num_frames: int | None = None
        self._context: torch.Tensor | None = None
        modules = dict(unet.named_modules())
        for name in shifts:
            modules[name].register_forward_hook(_TemporalHook(self, "shifts", _key(name)))
        for name in attentions:
            modules[name].register_forward_hook(_TemporalHook(self, "attentions", _key(name)))

    @property
    def config(self):
        """The inner image UNet's config (``in_channels``, ``cross_attention_dim``, ...)."""
        return self.unet.config

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """Predict the noise of video latents.

        Args:
            sample: ``[B, T, C, h, w]`` noisy latents.
            timestep: scalar or ``[B]`` (one timestep per video).
            encoder_hidden_states: prompt context ``[B, K, D]``, shared by the frames of a video.
            cross_attention_kwargs: passed to the image UNet's attention processors, e.g.
                ``{"env": [B, Le, De]}`` for joint attention.

        Returns:
            ``[B, T, C, h, w]``.
        """
        if sample.ndim != 5:
            raise ValueError(f"video UNet expects latents [B, T, C, h, w], got shape {tuple(sample.shape)}")
        b, t = sample.shape[:2]
        if encoder_hidden_states.shape[0] != b:
            raise ValueError(f"context batch {encoder_hidden_states.shape[0]} differs from the latent batch {b}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        timestep = timestep.reshape(-1).expand(b) if timestep.numel() == 1 else timestep.reshape(b)
        frames = sample.flatten(0, 1)
        self._num_frames = t
        self._context = encoder_hidden_states
        try:
            out = self.unet(
                frames,
                timestep.repeat_interleave(t),
                encoder_hidden_states=encoder_hidden_states.repeat_interleave(t, dim=0),
                cross_attention_kwargs=cross_attention_kwargs,
            ).sample
        finally:
            self._num_frames = None
            self._context = None
        return out.unflatten(0, (b, t))

    # -- weights -------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the image UNet (base weights, no joint processors) as a diffusers UNet folder at
        ``path`` and the temporal layers at ``path/temporal``."""
        from codi_image.diffuser import save_unet_without_joint

        save_unet_without_joint(self.unet, path)
        self.temporal.save_pretrained(Path(path) / TEMPORAL_FOLDER, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **temporal_kwargs) -> "VideoUNet":
        """Load a folder written by :meth:`save_pretrained`, or inflate a plain diffusers image UNet
        folder (no ``temporal/``: new identity temporal layers, built with ``temporal_kwargs``)."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"{folder} has no config.json; a video unet folder is a diffusers UNet2DConditionModel folder (+ temporal/)")
        kw = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        unet = UNet2DConditionModel.from_pretrained(folder, **kw)
        temporal = None
        if (folder / TEMPORAL_FOLDER / "config.json").is_file():
            temporal = TemporalLayers.from_pretrained(folder / TEMPORAL_FOLDER, **kw)
        else:
            logger.info("%s has no temporal/: inflating the image UNet with new identity temporal layers", folder)
        return cls(unet, temporal, **temporal_kwargs)


class _TemporalHook:
    """A forward hook that applies ``owner.temporal.<kind>[key]`` to a module's output while
    ``owner`` runs a video (``owner._num_frames`` set); otherwise it passes the output through.

    The layer is looked up at call time, so copies of the model (``copy.deepcopy``) stay consistent.
    """

    def __init__(self, owner: VideoUNet, kind: str, key: str):
        self.owner = owner
        self.kind = kind
        self.key = key

    def __call__(self, module, args, output):
        t = self.owner._num_frames
        if t is None:
            return output
        layer = getattr(self.owner.temporal, self.kind)[self.key]
        extra = (self.owner._context,) if self.kind == "attentions" else ()  # the layouts read the prompt

        def apply(h):
            return layer(h, t, *extra)

        if isinstance(output, tuple):  # Transformer2DModel(..., return_dict=False) -> (sample,)
            return (apply(output[0]), *output[1:])
        if hasattr(output, "sample"):
            output.sample = apply(output.sample)
            return output
        return apply(output)
